#!/usr/bin/env python3
"""serve_load.py -- the load test of `flow serve` (bench/serve_load.sh runs it).

CLIENTS threads poll the API (the runs list, a run, its journal, the metrics)
as fast as they get answers while RUNS runs of a three-task flow are started
through the API, SUBMITTERS at a time. Prints the latency of the polls and of
the starts (p50, p99, max), the polls per second, and then checks that
nothing was lost: every run started is in the store, completed, with every
task's output right.
"""
import json
import os
import sys
import threading
import time
import urllib.request

BASE = sys.argv[1]
RUNS = int(os.environ.get("RUNS", "500"))
CLIENTS = int(os.environ.get("CLIENTS", "50"))
SUBMITTERS = int(os.environ.get("SUBMITTERS", "4"))


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            payload = r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        payload = e.read()
        code = e.code
    return code, payload, time.perf_counter() - t0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


stop = threading.Event()
poll_lat = [[] for _ in range(CLIENTS)]
errors = []
started = []
start_lat = []
lock = threading.Lock()


def poller(i):
    n = 0
    while not stop.is_set():
        k = n % 4
        if k == 0:
            path = "/api/v1/runs?limit=20"
        elif k == 1 and started:
            path = "/api/v1/runs/" + started[(i * 7 + n) % len(started)]
        elif k == 2 and started:
            path = "/api/v1/runs/" + started[(i * 3 + n) % len(started)] + "/journal?limit=50"
        else:
            path = "/metrics"
        code, _, dt = call("GET", path)
        if code != 200:
            errors.append((path, code))
        poll_lat[i].append(dt)
        n += 1


def submitter(j):
    for k in range(j, RUNS, SUBMITTERS):
        rid = "load-%05d" % k
        code, body, dt = call("POST", "/api/v1/runs",
                              {"flow": "load", "id": rid, "inputs": {"k": k}})
        with lock:
            start_lat.append(dt)
            if code == 201:
                started.append(rid)
            else:
                errors.append(("POST " + rid, code, body[:200]))


pollers = [threading.Thread(target=poller, args=(i,)) for i in range(CLIENTS)]
subs = [threading.Thread(target=submitter, args=(j,)) for j in range(SUBMITTERS)]
t0 = time.perf_counter()
for t in pollers + subs:
    t.start()
for t in subs:
    t.join()
# until every run ended
deadline = time.time() + 600
while time.time() < deadline:
    code, body, _ = call("GET", "/api/v1/runs?flow=load&status=completed,failed,cancelled&limit=1000")
    if code == 200 and len(json.loads(body)["runs"]) >= len(started):
        break
    time.sleep(0.2)
elapsed = time.perf_counter() - t0
stop.set()
for t in pollers:
    t.join()

lat = [x for xs in poll_lat for x in xs]
lost = []
for rid in started:
    code, body, _ = call("GET", "/api/v1/runs/" + rid)
    run = json.loads(body) if code == 200 else {}
    k = int(rid.split("-")[1])
    outs = {t["task"]: t.get("output") for t in run.get("tasks", [])}
    if run.get("status") != "completed" or outs.get("c") != {"k": k, "step": 3}:
        lost.append((rid, run.get("status"), outs))

print("serve load: %d runs started through the API by %d submitters while %d clients polled, %.1f s"
      % (len(started), SUBMITTERS, CLIENTS, elapsed))
print("serve load: polls %d (%.0f/s): p50 %.1f ms, p99 %.1f ms, max %.1f ms"
      % (len(lat), len(lat) / elapsed, pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3, max(lat) * 1e3))
print("serve load: starts (POST /runs): p50 %.1f ms, p99 %.1f ms, max %.1f ms"
      % (pct(start_lat, 0.5) * 1e3, pct(start_lat, 0.99) * 1e3, max(start_lat) * 1e3))
print("serve load: errors %d, runs not completed or with a wrong output %d (of %d)"
      % (len(errors), len(lost), RUNS))
for e in errors[:5]:
    print("  error:", e)
for l in lost[:5]:
    print("  lost:", l)
sys.exit(1 if errors or lost or len(started) != RUNS else 0)
