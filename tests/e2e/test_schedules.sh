#!/usr/bin/env bash
# `schedule:` in workflow files and `flow schedules`: the keys are validated
# (gcc-form errors naming the field), and the next ticks listed are those of
# the expression in its time zone.
set -u
. "$(dirname "$0")/lib.sh"
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
finish
