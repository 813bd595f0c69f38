#!/usr/bin/env python3
"""http_standin.py -- a test stand-in for the HTTP services and the model
provider that `http:` and `llm:` tasks call (tests/e2e/test_http.sh,
test_llm.sh, examples/http/). It is not a real provider: it answers on
127.0.0.1 only, derives its answers from the requests so that tests can
check them, and counts what it was asked.

    python3 http_standin.py --ports FILE [--cert PEM --key PEM] [--api-key KEY]

It listens on free ports of 127.0.0.1 and writes {"http": PORT, "https":
PORT} to FILE once it listens (https only with --cert and --key).

Paths (any method unless said):

  /json                      {"hello": "world", "n": 1} as application/json
  /text                      "plain text" as text/plain
  /status/NNN                status NNN, body "status NNN: nothing here"
  /flaky/NAME?fail=N&status=S&retry_after=R
                             the first N requests for NAME get status S (503)
                             with Retry-After: R when given; then 200
                             {"name": NAME, "attempts": K}
  /count/NAME                {"count": K, "times": [epoch seconds...]} of /flaky/NAME
  /slow?seconds=S            answers {"slept": S} after S seconds
  /big?bytes=N               N bytes of "x" (text/plain)
  /echo                      the request as JSON: {method, path, query, headers,
                             body (text), json (the body parsed, or null)}
  POST /chat/completions     (also under /v1/) the OpenAI chat-completions
                             protocol; with --api-key, any other Bearer key is
                             refused with 401. The model chooses the answer:
                               echo        "echo: " + the last message's content
                               json-echo   JSON text {"model", "messages": count,
                                           "last": content, "format": response_format type}
                               fenced      the same JSON in a ```json fence
                               not-json    "this is not JSON" (always)
                               flaky-json  not JSON on odd calls, JSON on even ones
                               busy        429 with Retry-After: 1 on odd calls
                             usage: prompt_tokens = words of all messages,
                             completion_tokens = words of the answer.
  /calls/MODEL               {"count": K} chat completions asked of MODEL
"""
import argparse
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
FLAKY = {}   # name -> [times]
CALLS = {}   # model -> count
API_KEY = None


def words(s):
    return len(str(s).split())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def send(self, status, body, ctype="application/json", headers=None):
        if not isinstance(body, (bytes, bytearray)):
            body = (json.dumps(body) if ctype == "application/json" else str(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        u = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        body = self.read_body()
        path = u.path
        if path.startswith("/v1/"):
            path = path[3:]
        if path == "/json":
            return self.send(200, {"hello": "world", "n": 1})
        if path == "/text":
            return self.send(200, "plain text", "text/plain")
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            return self.send(code, "status %d: nothing here" % code, "text/plain")
        if path.startswith("/flaky/"):
            name = path.split("/")[2]
            with LOCK:
                FLAKY.setdefault(name, []).append(time.time())
                k = len(FLAKY[name])
            if k <= int(q.get("fail", "1")):
                h = {"Retry-After": q["retry_after"]} if "retry_after" in q else {}
                return self.send(int(q.get("status", "503")), {"error": "busy", "attempt": k},
                                 headers=h)
            return self.send(200, {"name": name, "attempts": k})
        if path.startswith("/count/"):
            with LOCK:
                times = list(FLAKY.get(path.split("/")[2], []))
            return self.send(200, {"count": len(times), "times": times})
        if path == "/slow":
            s = float(q.get("seconds", "5"))
            time.sleep(s)
            return self.send(200, {"slept": s})
        if path == "/redirect":  # 302 to ?to= (a path here, or a URL)
            return self.send(302, "see " + q.get("to", "/json"), "text/plain",
                             headers={"Location": q.get("to", "/json")})
        if path == "/big":
            return self.send(200, b"x" * int(q.get("bytes", "1000")), "text/plain")
        if path == "/echo":
            text = body.decode("utf-8", "replace")
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
            return self.send(200, {"method": self.command, "path": u.path, "query": q,
                                   "headers": {k.lower(): v for k, v in self.headers.items()},
                                   "body": text, "json": parsed})
        if path == "/chat/completions" and self.command == "POST":
            return self.chat(body)
        if path.startswith("/calls/"):
            with LOCK:
                return self.send(200, {"count": CALLS.get(path.split("/")[2], 0)})
        return self.send(404, {"error": "no such path: " + u.path})

    def chat(self, body):
        if API_KEY is not None and self.headers.get("Authorization") != "Bearer " + API_KEY:
            return self.send(401, {"error": {"message": "invalid api key",
                                             "type": "invalid_request_error"}})
        try:
            req = json.loads(body)
            msgs = req["messages"]
            model = req["model"]
        except (ValueError, KeyError, TypeError):
            return self.send(400, {"error": {"message": "bad request"}})
        with LOCK:
            CALLS[model] = CALLS.get(model, 0) + 1
            n = CALLS[model]
        last = msgs[-1]["content"] if msgs else ""
        info = {"model": model, "messages": len(msgs), "last": last,
                "format": (req.get("response_format") or {}).get("type"),
                "temperature": req.get("temperature"), "max_tokens": req.get("max_tokens")}
        if model == "busy" and n % 2 == 1:
            return self.send(429, {"error": {"message": "rate limited"}},
                             headers={"Retry-After": "1"})
        if model == "echo":
            content = "echo: " + last
        elif model in ("json-echo", "busy"):
            content = json.dumps(info)
        elif model == "fenced":
            content = "```json\n" + json.dumps(info) + "\n```"
        elif model == "not-json":
            content = "this is not JSON"
        elif model == "flaky-json":
            content = "Sure! Here it is" if n % 2 == 1 else json.dumps(info)
        else:
            return self.send(404, {"error": {"message": "model '%s' not found" % model}})
        p = sum(words(m.get("content", "")) for m in msgs)
        c = words(content)
        return self.send(200, {
            "id": "chatcmpl-standin-%d" % n, "object": "chat.completion",
            "created": int(time.time()), "model": model + "-standin",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


def serve(server):
    server.serve_forever(poll_interval=0.2)


def main():
    global API_KEY
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--api-key")
    a = ap.parse_args()
    API_KEY = a.api_key
    ThreadingHTTPServer.daemon_threads = True
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ports = {"http": plain.server_address[1]}
    servers = [plain]
    if a.cert and a.key:
        tls = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        ports["https"] = tls.server_address[1]
        servers.append(tls)
    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    tmp = a.ports + ".tmp"
    with open(tmp, "w") as f:
        json.dump(ports, f)
    os.rename(tmp, a.ports)
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
