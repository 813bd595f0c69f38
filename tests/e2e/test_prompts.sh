#!/usr/bin/env bash
# test_prompts.sh -- prompt files from the command line: `flow prompts list|show|render`
# (text, --json, errors and exit statuses), `prompt:` tasks in `flow run` with prompts/
# beside the file, --prompts DIR and $FLOW_PROMPTS, `flow validate` naming the line that asks
# for a prompt that is not there, the version journaled and shown by `flow status`, and a
# retried run keeping the version its completed prompt task used while the rest takes the
# prompt file as it is now.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
STORE="sqlite:$T/flow.db"
mkdir prompts other

cat >prompts/summarize.yaml <<'EOF'
- label: production
  version: 1
  template: |
    Summarize the following text in {{max_words}} words or less:

    {{text}}
- label: [development, staging]
  version: 2
  template: "[DEV] Summarize: {{ text }}"
EOF
cat >other/summarize.yaml <<'EOF'
- label: production
  version: 9
  template: "other: {{ text }}"
EOF

# ---- flow prompts ------------------------------------------------------------------------
rc=0; "$FLOW" prompts list >out 2>err || rc=$?
check "prompts list exits 0 ($rc)" [ "$rc" = 0 ]
check "... one line per version with labels and variables" \
    bash -c 'grep -Eq "^summarize +1 +production +max_words, text$" out &&
             grep -Eq "^summarize +2 +development, staging +text$" out'
rc=0; "$FLOW" prompts list --json --prompts other >out 2>err || rc=$?
expect_json "$(python3 -c 'import json; d = json.load(open("out")); print(json.dumps([d[0]["name"], d[0]["versions"][0]["version"]]))')" \
    '["summarize", 9]' "prompts list --prompts DIR --json"
rc=0; "$FLOW" prompts show summarize --label staging >out 2>err || rc=$?
check "prompts show --label: the template as written" bash -c '[ "$(cat out)" = "[DEV] Summarize: {{ text }}" ]'
rc=0; "$FLOW" prompts render summarize --var text="a b" --var max_words:=5 >out 2>err || rc=$?
check "prompts render (exit $rc)" bash -c '[ "$1" = 0 ] && grep -qx "Summarize the following text in 5 words or less:" out && grep -qx "a b" out' _ "$rc"
echo '{"text": "from file", "max_words": 3}' >vars.json
rc=0; "$FLOW" prompts render summarize --vars vars.json --var text=over --json >out 2>err || rc=$?
expect_json "$(cat out)" '{"text": "Summarize the following text in 3 words or less:\n\nover\n", "name": "summarize", "version": 1, "label": "production"}' \
    "prompts render --vars FILE --var (--var wins) --json"
rc=0; "$FLOW" prompts render summarize --var text=x >out 2>err || rc=$?
check "render without a variable the prompt uses: exit 2 naming it" \
    bash -c '[ "$1" = 2 ] && grep -q "uses variable '"'"'max_words'"'"', which was not given" err' _ "$rc"
rc=0; "$FLOW" prompts show summarize --version 3 >out 2>err || rc=$?
check "show an unknown version: exit 2, listing the versions" \
    bash -c '[ "$1" = 2 ] && grep -q "has no version 3 (it has 1 (production), 2 (development, staging)" err' _ "$rc"
rc=0; "$FLOW" prompts show nope >out 2>err || rc=$?
check "show an unknown prompt: exit 2" bash -c '[ "$1" = 2 ] && grep -q "no prompt '"'"'nope'"'"'" err' _ "$rc"
printf -- '- version: 1\n  template: "{{ x"\n' >prompts/broken.yaml
rc=0; "$FLOW" prompts list >out 2>err || rc=$?
check "list with a broken file: the others listed, the file named at its line, exit 1" \
    bash -c '[ "$1" = 1 ] && grep -q "^summarize" out && grep -q "prompts/broken.yaml:2:13" err' _ "$rc"
rm prompts/broken.yaml
rc=0; "$FLOW" prompts render >out 2>err || rc=$?
check "render without a NAME: usage error" [ "$rc" = 2 ]
rc=0; "$FLOW" prompts list --prompts nowhere >out 2>err || rc=$?
check "a prompt directory that is not there: exit 2" [ "$rc" = 2 ]

# ---- prompt: tasks -----------------------------------------------------------------------
cat >flow.yaml <<'EOF'
name: prompted
tasks:
  draft:
    prompt: {name: summarize, vars: {text: "{{ inputs.text }}", max_words: 10}}
  review:
    after: draft
    prompt:
      name: summarize
      label: staging
      vars: {text: "{{ tasks.draft.output.text }}"}
  publish:
    after: review
    shell: |
      if [ ! -e "$MARK" ]; then : > "$MARK"; echo "not yet" >&2; exit 1; fi
      echo '"published"'
    env: {MARK: "{{ inputs.mark }}"}
EOF
rc=0; "$FLOW" run flow.yaml --store "$STORE" --id p1 --input text=hello --input mark="$T/mark" \
    --json --quiet >out 2>err || rc=$?
check "a run whose last task fails once: exit 1" [ "$rc" = 1 ]
expect_json "$(python3 -c 'import json; d = json.load(open("out")); print(json.dumps([t.get("info", {}).get("prompt", {}).get("version") for t in d["tasks"]]))' 2>/dev/null || echo null)" \
    '[1, 2, null]' "run --json: info.prompt of each activation"
"$FLOW" status p1 --store "$STORE" >status.txt 2>err
check "flow status shows the version each prompt task used" \
    bash -c 'grep -Eq "draft .*prompt summarize v1 \(production\)" status.txt &&
             grep -Eq "review .*prompt summarize v2 \(staging\)" status.txt'
"$FLOW" status p1 --store "$STORE" --json >st.json
expect_json "$(python3 -c 'import json; d = json.load(open("st.json")); print(json.dumps([t.get("info") for t in d["tasks"] if t["task"] != "publish"]))')" \
    '[{"prompt": {"name": "summarize", "version": 1, "label": "production"}}, {"prompt": {"name": "summarize", "version": 2, "label": "staging"}}]' \
    "status --json: info.prompt of each activation"
# The prompt file changes; the retry keeps what completed (and its journaled version).
cat >prompts/summarize.yaml <<'EOF'
- label: production
  version: 3
  template: "NEW {{ text }} {{ max_words }}"
- label: staging
  version: 4
  template: "NEW [DEV] {{ text }}"
EOF
rc=0; "$FLOW" retry p1 --store "$STORE" --json --quiet >out 2>err || rc=$?
check "the retry completes (exit $rc)" [ "$rc" = 0 ]
"$FLOW" status p1 --store "$STORE" --json >out
expect_json "$(python3 -c 'import json; d = json.load(open("out")); print(json.dumps([t["info"]["prompt"]["version"] for t in d["tasks"] if t["task"] != "publish"]))' 2>/dev/null || echo null)" \
    '[1, 2]' "the retry did not run the completed prompt tasks again: versions 1 and 2 stay"
rc=0; "$FLOW" run flow.yaml --store "$STORE" --input text=hi --input mark="$T/mark" --json --quiet >out 2>err || rc=$?
expect_json "$(python3 -c 'import json; d = json.load(open("out")); print(json.dumps([t["output"]["text"] for t in d["tasks"] if t["task"] != "publish"]))' 2>/dev/null || echo null)" \
    '["NEW hi 10", "NEW [DEV] NEW hi 10"]' "a new run takes the prompt file as it is now"

# --prompts DIR and $FLOW_PROMPTS over prompts/ beside the file
printf 'name: one\ntasks:\n  s:\n    prompt: {name: summarize, vars: {text: x}}\n' >one.yaml
rc=0; "$FLOW" run one.yaml --store memory: --prompts other --quiet >out 2>err || rc=$?
expect_json "$(cat out)" '{"text": "other: x", "name": "summarize", "version": 9, "label": "production"}' \
    "run --prompts DIR"
rc=0; FLOW_PROMPTS=other "$FLOW" run one.yaml --store memory: --quiet >out 2>err || rc=$?
check "\$FLOW_PROMPTS (exit $rc)" grep -q '"other: x"' out
rc=0; "$FLOW" run one.yaml --store memory: --prompts missing-dir >out 2>err || rc=$?
check "--prompts that is not a directory: exit 2" bash -c '[ "$1" = 2 ] && grep -q "is not a directory" err' _ "$rc"

# validate: what is wrong, at the line that asks for it
printf 'name: v\ntasks:\n  s:\n    prompt:\n      name: summarize\n      version: 7\n' >bad.yaml
rc=0; "$FLOW" validate bad.yaml >out 2>err || rc=$?
check "validate: an unknown version at its line (bad.yaml:6:16)" \
    bash -c '[ "$1" = 2 ] && grep -q "^bad.yaml:6:16: error: .*has no version 7" err' _ "$rc"
printf 'name: v\ntasks:\n  s:\n    prompt: {name: summarize, vars: {text: x}}\n' >bad.yaml
rc=0; "$FLOW" validate bad.yaml >out 2>err || rc=$?
check "validate: a variable the vars do not give" \
    bash -c '[ "$1" = 2 ] && grep -q "^bad.yaml:4:37: error: .*uses variable '"'"'max_words'"'"'" err' _ "$rc"
rc=0; "$FLOW" validate bad.yaml --prompts other >out 2>err || rc=$?
check "validate --prompts DIR: valid there" [ "$rc" = 0 ]

# a variable only known at run time fails the attempt, naming it (no crash, exit 1)
printf 'name: late\ntasks:\n  s:\n    prompt: {name: summarize, vars: "{{ inputs.v }}"}\n' >late.yaml
rc=0; "$FLOW" run late.yaml --store memory: --input 'v:={"text": "x"}' --quiet >out 2>err || rc=$?
check "vars known at run time without max_words: exit 1 naming it" \
    bash -c '[ "$1" = 1 ] && grep -q "max_words" err' _ "$rc"
rc=0; "$FLOW" run late.yaml --store memory: --input 'v:=[1]' --quiet >out 2>err || rc=$?
check "vars that render to a list: exit 1, saying so" \
    bash -c '[ "$1" = 1 ] && grep -q "must render to a mapping" err' _ "$rc"

finish
