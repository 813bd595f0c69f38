#!/bin/bash
# The default store is found as git finds .git (docs/cli.md, "Stores"): the
# .flow/flow.db of the nearest directory, the current one or one above it,
# that has a .flow; a nearer one wins; none anywhere: the current directory.
# Messages name the path found; the checks of the default store (a link,
# writable by others) hold for one found above; $FLOW_STORE and --store
# still override it.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE
export FLOW_BIN=$FLOW
P=$(pwd -P) # the path the program sees (getcwd)

cat >ok.yaml <<'EOF'
name: ok
tasks:
  a: {shell: "echo a"}
EOF
mkdir -p proj/src/lib
(cd proj && "$FLOW" run ../ok.yaml --id top >/dev/null 2>&1)
check "a run in proj/ makes proj/.flow" test -e proj/.flow/flow.db

cd proj/src/lib || exit 1
"$FLOW" status >out 2>err
check "flow status two levels down lists the run of proj/" grep -q "^top " out
"$FLOW" logs top >out 2>err
check "... flow logs reads it" grep -q "run_ended" out
"$FLOW" run ../../../ok.yaml --id deep >/dev/null 2>&1
check "a run started down there goes to proj/.flow" test ! -e .flow -a ! -e ../.flow
check "... where flow status in proj/ sees it" grep -q "^deep " <(cd ../.. && "$FLOW" status)
"$FLOW" logs nosuch >out 2>err
check "messages name the store found, by its path" grep -qx "flow: no run 'nosuch' in store '$P/proj/.flow/flow.db'" err

# A nearer .flow wins.
mkdir -m 700 ../.flow
"$FLOW" status >out 2>err
check "a nearer .flow wins (no store in it yet)" grep -qx "no runs (there is no store at sqlite:$P/proj/src/.flow/flow.db yet)" out
"$FLOW" logs top >out 2>err
rc=$?
check "... and other commands say where they looked (exit 2)" test "$rc" = 2
check "... naming it" grep -q "no store '$P/proj/src/.flow/flow.db': nothing has run here" err
"$FLOW" run ../../../ok.yaml --id near >/dev/null 2>&1
check "... a run goes there" test -e ../.flow/flow.db
check "... and not to proj/.flow" test -z "$(cd ../.. && "$FLOW" status | grep '^near ')"

# The checks of the default store hold for one found above.
chmod 777 ../.flow
"$FLOW" status >out 2>err
rc=$?
check "a .flow above writable by others is refused (exit 2)" test "$rc" = 2
check "... naming it" grep -q "store directory '$P/proj/src/.flow' is writable by others (mode 0777): run 'chmod go-w $P/proj/src/.flow'" err
"$FLOW" run ../../../ok.yaml >/dev/null 2>err
check "... by flow run too" test "$?" = 2
chmod 700 ../.flow
mv ../.flow ../flow.real
ln -s flow.real ../.flow
"$FLOW" status >out 2>err
rc=$?
check "a .flow above that is a symbolic link is refused (exit 2)" test "$rc" = 2
check "... naming it" grep -q "store directory '$P/proj/src/.flow' is a symbolic link, which is never followed" err
rm ../.flow

# $FLOW_STORE and --store override what was found.
FLOW_STORE="sqlite:$T/elsewhere.db" "$FLOW" status >out 2>err
check "\$FLOW_STORE overrides it" grep -qx "no runs (there is no store at sqlite:$T/elsewhere.db yet)" out
"$FLOW" status --store "sqlite:$T/elsewhere.db" >out 2>err
check "--store overrides it" grep -qx "no runs (there is no store at sqlite:$T/elsewhere.db yet)" out

# None anywhere above: the current directory.
nothing=$(mktemp -d)
if ( cd "$nothing" && until [ "$PWD" = / ]; do cd ..; [ -e .flow ] && exit 1; done; exit 0 ); then
    (cd "$nothing" && "$FLOW" status >"$T/out" 2>&1)
    check "no .flow anywhere: the current directory's" grep -qx "no runs (there is no store at sqlite:.flow/flow.db yet)" "$T/out"
    (cd "$nothing" && "$FLOW" run "$T/ok.yaml" >/dev/null 2>&1)
    check "... where flow run makes it" test -e "$nothing/.flow/flow.db"
else
    echo "skip: a directory above $nothing has a .flow"
fi
rm -rf "$nothing"

finish
