#!/usr/bin/env bash
# test_completion.sh -- `flow completion bash|zsh`: bash sources the script and
# its completion function, called as bash calls it (COMP_WORDS, COMP_CWORD),
# offers the commands, each command's options (every one its help lists),
# the choices of an option, workflow files, the run ids of the store (also
# of --store URL) and the tasks of a run. The zsh script is checked when zsh
# is installed: its syntax, and the helpers that read the store.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"
export FLOW_STORE="sqlite:$T/flow.db"
FLOWDIR=$(dirname "$FLOW")
PATH="$FLOWDIR:$PATH"

"$FLOW" completion bash > flow.bash 2>err
check "flow completion bash exits 0" [ -s flow.bash ]
rc=0; "$FLOW" completion >out 2>err || rc=$?
check "no shell: exit 2 ($rc)" [ "$rc" = 2 ]
rc=0; "$FLOW" completion fish >out 2>err || rc=$?
check "an unknown shell: exit 2, naming it ($rc)" [ "$rc" = 2 ] && grep -q "unknown shell 'fish'" err

# complete WORD...: what the completion function offers for the command line
# WORD... (the last word is the one being completed), one a line, sorted.
complete_words() {
    bash -c 'source ./flow.bash || exit 9
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        _flow; printf "%s\n" "${COMPREPLY[@]}"' _ "$@" | sed '/^$/d' | sort
}
# expect WHAT EXPECTED WORD...: the offered words, space-separated, are EXPECTED
expect() {
    local what=$1 want=$2
    shift 2
    local got
    got=$(complete_words "$@" | tr '\n' ' ' | sed 's/ $//')
    if [ "$got" = "$want" ]; then pass "$what"; else fail "$what: got '$got', expected '$want'"; fi
}

# ---- commands and options ------------------------------------------------------
cmds=$("$FLOW" --help | awk '/^Commands:/ {f = 1; next} f && /^  [a-z]/ {print $1} f && /^$/ {exit}' | sort)
got=$(complete_words flow "")
check "every command of flow --help is offered ($(echo $cmds))" \
    bash -c '[ -z "$(comm -23 <(echo "$1") <(echo "$2"))" ]' _ "$cmds" "$got"
expect "a command from its first letters" "status" flow st
expect "commands after a global option" "validate" flow --help val
expect "options of flow run" "--id --input --inputs --inputs-each" flow run --i
expect "the choices of --format" "dot json mermaid svg" flow graph x.yaml --format ""
expect "the choices of -f too" "json" flow graph -f j
expect "the shells of flow completion" "bash zsh" flow completion ""
expect "flow help COMMAND" "worker workers" flow help work
expect "ctl's subcommands" "next-iteration next-task" flow ctl next
bad=""
for c in $cmds; do
    offered=" $(complete_words flow "$c" - | tr '\n' ' ') "
    for o in $("$FLOW" "$c" --help | grep -oE '^ {2,6}(-[a-zA-Z], )?--[a-z][a-z0-9-]*' |
        grep -oE -- '--[a-z][a-z0-9-]*'); do
        [[ $offered == *" $o "* ]] || bad="$bad $c:$o"
    done
done
check "every option of every command's help is offered (missing:$bad)" [ -z "$bad" ]

# ---- files, runs, tasks ------------------------------------------------------------
mkdir sub
touch a.yaml b.json c.yml notes.txt
expect "workflow files and directories" "a.yaml b.json c.yml sub" flow run ""
expect "workflow files of validate" "a.yaml" flow validate a
cat > two.yaml <<'Y'
name: two
tasks:
  first:
    run: [echo, "1"]
  second:
    after: first
    run: [echo, "2"]
Y
"$FLOW" run two.yaml --id alpha-run -q >/dev/null 2>err
"$FLOW" run two.yaml --id beta-run -q >/dev/null 2>err
"$FLOW" run two.yaml --id other-run -q --store "sqlite:$T/other.db" >/dev/null 2>err
expect "run ids of the store" "alpha-run beta-run" flow status ""
expect "run ids from their first letters" "beta-run" flow logs b
expect "run ids of --store URL" "other-run" flow logs --store "sqlite:$T/other.db" ""
expect "run ids of --store=URL" "other-run" flow resume "--store=sqlite:$T/other.db" o
expect "the tasks of a run" "first second" flow logs alpha-run ""
expect "the tasks of a run, after an option with a value" "second" \
    flow logs --store "$FLOW_STORE" alpha-run s
expect "no run id where the store has none" "" flow status --store "sqlite:$T/none.db" ""
check "completing created no store" [ ! -e "$T/none.db" ]
"$FLOW" __complete runs > runs.txt 2>err
check "flow __complete runs lists the ids" grep -qx alpha-run runs.txt
"$FLOW" __complete tasks nothing-such > none.txt 2>err
check "flow __complete tasks of an unknown run: nothing, silently" \
    bash -c '[ ! -s none.txt ] && [ ! -s err ]'

# ---- zsh -----------------------------------------------------------------------------
if command -v zsh >/dev/null; then
    "$FLOW" completion zsh > _flow 2>err
    check "the zsh script starts with #compdef flow" grep -qx '#compdef flow' <(head -1 _flow)
    check "the zsh script parses (zsh -n)" zsh -n _flow
    zsh -f -c '
        _describe() { local arr=$4; print -rl -- ${(P)arr}; }
        eval "$(sed "\$d" _flow)"
        _flow_prog=$1
        words=(logs ""); _flow_runs; print -- --
        line=(alpha-run); words=(logs alpha-run ""); _flow_tasks; print -- --
        words=(ctl ""); _flow_words; print -- --
        _flow_commands' _ "$FLOW" > zsh.out 2>zsh.err
    check "zsh: the run ids" grep -qx alpha-run zsh.out
    check "zsh: the tasks of a run" grep -qx second zsh.out
    check "zsh: ctl's subcommands" grep -qx next-task zsh.out
    check "zsh: the commands with their summaries" grep -q '^status:list runs' zsh.out
    check "zsh: no error" [ ! -s zsh.err ]
    mkdir zfunc && cp _flow zfunc/
    check "zsh: compinit takes it from \$fpath" zsh -f -c \
        'fpath=(zfunc $fpath); autoload -U compinit; compinit -u -D; [[ $_comps[flow] == _flow ]]'
else
    echo "skip: zsh is not installed (the zsh script is not checked)"
fi

finish
