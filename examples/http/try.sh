#!/bin/sh
# Runs api.yaml against the stand-in server of the tests (an HTTP API and an
# OpenAI-compatible model endpoint on 127.0.0.1), in a temporary store:
#
#   sh examples/http/try.sh            (FLOW=path/to/flow to choose the binary)
#
# `fetch` gets a 503 with Retry-After: 1 first and is retried a second later;
# `missing` gets a 404, not retried (on_error: ignore); `title` is the
# stand-in model's answer, its token usage shown by `flow status`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
FLOW=${FLOW:-$here/../../build/flow}
dir=$(mktemp -d)
python3 "$here/../../tests/support/http_standin.py" --ports "$dir/ports" --api-key sk-example &
server=$!
trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
while [ ! -s "$dir/ports" ]; do sleep 0.1; done
port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/ports")
export FLOW_STORE="sqlite:$dir/flow.db"    # instead of ./.flow/flow.db
export API_TOKEN=tok-example-1234          # a secret of the flow: redacted everywhere
export FLOW_LLM_URL="http://127.0.0.1:$port/v1" FLOW_LLM_KEY=sk-example FLOW_LLM_MODEL=echo
export NO_PROXY=127.0.0.1 no_proxy=127.0.0.1
echo "== flow run api.yaml (the stand-in on port $port)"
"$FLOW" run "$here/api.yaml" --id example --input "base=http://127.0.0.1:$port" --input id=42
echo "== flow status example"
"$FLOW" status example
