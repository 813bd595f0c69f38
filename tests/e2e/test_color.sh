#!/bin/bash
# Colour (docs/cli.md, Conventions): status words and the prefixes of errors
# coloured on a terminal (a real pseudo-terminal, through script(1)), none
# when piped, with NO_COLOR set or TERM=dumb; --color always|never|auto
# before the command or among its options; JSON never coloured.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
export FLOW_STORE="sqlite:$T/flow.db"
export FLOW_BIN=$FLOW
export TERM=xterm
unset NO_COLOR

ESC=$(printf '\033')
cat >ok.yaml <<'EOF'
name: ok
tasks:
  a: {shell: "echo a"}
EOF
cat >bad.yaml <<'EOF'
name: bad
tasks:
  a: {shell: "exit 3"}
EOF
cat >invalid.yaml <<'EOF'
name: invalid
tasks:
  a: {after: nosuch, shell: "echo a"}
EOF
"$FLOW" run ok.yaml --id o1 >/dev/null 2>&1
"$FLOW" run bad.yaml --id b1 >/dev/null 2>&1

coloured() { grep -q "$ESC\[" "$1"; }
plain() { ! grep -q "$ESC" "$1"; }
# on_tty CMD...: run CMD with stdout and stderr on a terminal; its output in ./tty
on_tty() { script -qec "$*" /dev/null >tty 2>&1 </dev/null; }

# --- the switch -------------------------------------------------------------
"$FLOW" --color always status >out
check "flow --color always status: green completed" grep -q "${ESC}\[32mcompleted${ESC}\[0m" out
check "... red failed" grep -q "${ESC}\[31mfailed${ESC}\[0m" out
check "... the columns still line up (padding after the colour)" \
    grep -Eq "^o1 +ok +${ESC}\[32mcompleted${ESC}\[0m  [0-9-]+ " out
"$FLOW" --color=always status >out
check "flow --color=always status" coloured out
"$FLOW" status --color=always >out
check "flow status --color=always" coloured out
"$FLOW" status --color always >out
check "flow status --color always" coloured out
"$FLOW" status >out
check "piped: no colour" plain out
"$FLOW" status --color auto >out
check "piped with --color auto: no colour" plain out
"$FLOW" status --json --color always >out
check "--json is never coloured" plain out

"$FLOW" status --color sometimes >out 2>err
check "--color sometimes: usage error" test "$?" = 2
check "... naming the words" grep -q "option '--color' of 'status' needs auto, always or never, not 'sometimes'" err
"$FLOW" --color >out 2>err
check "flow --color without a value: usage error" test "$?" = 2

# --- on a terminal ----------------------------------------------------------
on_tty "'$FLOW' status"
check "a terminal: coloured" grep -q "${ESC}\[32mcompleted" tty
on_tty "NO_COLOR=1 '$FLOW' status"
check "... but not with NO_COLOR=1" plain tty
on_tty "NO_COLOR= '$FLOW' status"
check "... an empty NO_COLOR does not count" coloured tty
on_tty "TERM=dumb '$FLOW' status"
check "... nor with TERM=dumb" plain tty
on_tty "'$FLOW' status --color never"
check "... nor with --color never" plain tty
on_tty "NO_COLOR=1 '$FLOW' --color always status"
check "--color always wins over NO_COLOR" coloured tty

# --- errors, diagnostics, progress, logs ---------------------------------------
"$FLOW" --color always status nosuch >out 2>err
check "an error: a red 'flow:'" grep -q "^${ESC}\[1;31mflow:${ESC}\[0m no run 'nosuch'" err
"$FLOW" status nosuch >out 2>err
check "... plain when piped" grep -q "^flow: no run 'nosuch'" err
"$FLOW" validate invalid.yaml --color always >out 2>err
check "a diagnostic: a red 'error:'" grep -q "${ESC}\[1;31merror:${ESC}\[0m unknown task 'nosuch'" err
"$FLOW" run ok.yaml --id o2 --color always >out 2>err
check "progress: completed in green" grep -q "${ESC}\[32mcompleted${ESC}\[0m a " err
check "... started in cyan" grep -q "${ESC}\[36mstarted${ESC}\[0m   a " err
check "... the summary's first word" grep -q "^${ESC}\[32mcompleted${ESC}\[0m in " err
check "... the result on stdout plain" plain out
"$FLOW" run bad.yaml --id b2 >out 2>err
check "progress piped: no colour" plain err
"$FLOW" logs b1 --color always >out
check "logs: the record types coloured" grep -q "${ESC}\[31mact_failed${ESC}\[0m" out
check "... run_ended as its status" grep -q "${ESC}\[31mrun_ended${ESC}\[0m" out
"$FLOW" status b1 --color always >out
check "status RUN: the run's and the activations' status" \
    test "$(grep -c "${ESC}\[31mfailed${ESC}\[0m" out)" = 2

finish
