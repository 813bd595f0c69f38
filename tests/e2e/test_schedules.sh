#!/usr/bin/env bash
# `schedule:` in workflow files and `flow schedules`: the keys are validated
# (gcc-form errors naming the field), and the next ticks listed are those of
# the expression in its time zone.
set -u
. "$(dirname "$0")/lib.sh"
expect() { if [ "$1" = "$2" ]; then pass "$3"; else fail "$3: got '$1', expected '$2'"; fi; }
cd "$T" || exit 1
mkdir flows
cat > flows/hourly.yaml <<'Y'
name: hourly
schedule: "@every 1h"
tasks:
  a: {shell: echo 1}
Y
cat > flows/newyear.yaml <<'Y'
name: newyear
schedule: {cron: "0 0 1 1 *", timezone: America/New_York, catchup: true, inputs: {greeting: hi}}
tasks:
  a: {shell: echo 1}
Y
printf 'name: plain\ntasks:\n  a: {shell: echo}\n' > flows/plain.yaml

"$FLOW" schedules --flows flows --json -n 2 > out.json 2> err
rc=$?
check "flow schedules --json lists the scheduled flows only" [ "$rc" = 0 ]
got=$(python3 - <<'PY'
import json, time, datetime, zoneinfo
j = json.load(open("out.json"))
now = time.time()
by = {f["flow"]: f for f in j}
h = by["hourly"]["next"]
ts = [datetime.datetime.strptime(x, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp() for x in h]
ok_h = all(t % 3600 == 0 for t in ts) and 0 < ts[0] - now <= 3600 and ts[1] - ts[0] == 3600
ny = zoneinfo.ZoneInfo("America/New_York")
year = datetime.datetime.now(ny).year + 1
want = datetime.datetime(year, 1, 1, tzinfo=ny).astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
n = by["newyear"]
print(sorted(by), ok_h, n["next"][0] == want, n["timezone"], n["catchup"], n["inputs"])
PY
)
expect_json "\"$got\"" "\"['hourly', 'newyear'] True True America/New_York True {'greeting': 'hi'}\"" "next ticks: @every on the hour, New Year at midnight in New York"

"$FLOW" schedules --flows flows > table 2> err
check "the table names each flow, its schedule and zone" \
    sh -c "grep -q '^hourly  *@every 1h  *UTC' table && grep -q '^newyear  *0 0 1 1 \*  *America/New_York' table && ! grep -q plain table"

cat > bad.yaml <<'Y'
name: bad
schedule: "0 25 * * *"
timezone: Mars/Base
catchup: sometimes
tasks:
  a: {shell: echo 1}
Y
"$FLOW" validate bad.yaml 2> err
rc=$?
check "a bad schedule is invalid (exit 2)" [ "$rc" = 2 ]
check "each error names its field and place" \
    sh -c "grep -q \"bad.yaml:2:11: error: bad schedule '0 25 \* \* \*': hour field '25' is out of range (0-23)\" err && grep -q \"bad.yaml:3:11: error: unknown time zone 'Mars/Base'\" err && grep -q 'bad.yaml:4:10: error:' err"
printf 'name: x\ntimezone: UTC\ntasks:\n  a: {shell: echo}\n' > lone.yaml
"$FLOW" validate lone.yaml 2> err
check "timezone without a schedule is an error" grep -q "lone.yaml:2:11: error: 'timezone' is for scheduled runs" err
cp bad.yaml flows/
"$FLOW" schedules --flows flows > /dev/null 2> err
check "flow schedules reports a file that does not load (exit 2)" sh -c "[ $? = 2 ] && grep -q 'bad.yaml' err"
"$FLOW" schedules --flows nosuch 2> err
check "a missing directory is a usage error" [ $? = 2 ]
# --- flow serve starts the ticks: once each, even with two serves --------
mkdir tick
cat > tick/tick.yaml <<'Y'
name: tick
schedule: "@every 2s"
inputs: {n: 7}
tasks:
  a: {run: [sh, -c, 'echo "{\"n\": $(sed "s/[^0-9]//g" "$FLOW_INPUT")}"']}
Y
cat > tick/catch.yaml <<'Y'
name: catch
schedule: {cron: "@every 2s", catchup: true}
tasks:
  a: {run: [echo, '{}']}
Y
export FLOW_STORE=sqlite:$T/ticks.db
"$FLOW" serve --listen 127.0.0.1:0 --flows tick 2> a.log &
a=$!
"$FLOW" serve --listen 127.0.0.1:0 --flows tick 2> b.log &
b=$!
wait_until 20 sh -c "[ \$(\"$FLOW\" status --all --json --flow tick --status completed | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') -ge 4 ]"
kill -TERM $a $b; wait $a; wait $b
# ticks of each serve's log, and the store's runs
ticks() { "$FLOW" status --all --json --flow "$1" | python3 -c '
import json, sys, datetime
runs = json.load(sys.stdin)
ts = sorted(int(datetime.datetime.strptime(r["id"].split("@")[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()) for r in runs)
print(len(ts), all(b - a == 2 for a, b in zip(ts, ts[1:])), all(r["id"].startswith(sys.argv[1] + "@") for r in runs))' "$1"; }
got=$(ticks tick)
check "two serves: every tick started once, none missed ($got)" sh -c "case '$got' in *' True True') true ;; *) false ;; esac"
started=$(cat a.log b.log | grep -c "started run 'tick@")
expect "$started" "$(echo "$got" | cut -d' ' -f1)" "the two serves together started each tick once"
"$FLOW" status --all --json --flow tick | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["status"]=="completed"][0])' > one
expect_json "$("$FLOW" status "$(cat one)" --json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["result"]))')" '{"n": 7}' "a tick's run has the schedule's inputs"
# catchup: a serve that was down starts the ticks it missed (catch), not
# those of a flow without catchup (tick)
sleep 5
"$FLOW" serve --listen 127.0.0.1:0 --flows tick 2> c.log &
c=$!
wait_until 15 grep -q "started run 'catch@" c.log
wait_until 15 grep -q "started run 'tick@" c.log
kill -TERM $c; wait $c
got=$(ticks catch)
check "catchup: the missed ticks were started ($got)" sh -c "case '$got' in *' True True') true ;; *) false ;; esac"
got=$(ticks tick)
check "no catchup: the missed ticks were not ($got)" sh -c "case '$got' in *' False True') true ;; *) false ;; esac"

finish
