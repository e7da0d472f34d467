"""A fake SMS gateway / webhook receiver for tests:
``python -m tests.fakes.http_gateway --port P --out FILE [--fail-first N] [--fail-always]``.

A real HTTP server (``ThreadingHTTPServer``) on 127.0.0.1. Every POST:

* ``/status/<code>``: answers that status with {"error": ..., "echo": <the request JSON>} (a
  provider that repeats the recipient in its error), records nothing;
* ``/delay/<seconds>/...``: waits that long, then is handled as below;
* otherwise: 503 to the first N requests (``--fail-first``) or to all (``--fail-always``), then
  200 with {"id": "sms-<n>"}, the request appended to FILE as a JSON line {"path", "headers",
  "json"}. Requests are deduplicated by their ``Idempotency-Key`` header, like a provider that
  honours idempotency: a repeated key answers 200 with the first id and is recorded only once.

Prints "ready" when listening; stops cleanly on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from tests.fakes.serving import serve_until_stopped

_STATUS = re.compile(r"^/status/([1-5][0-9][0-9])/?$")
_DELAY = re.compile(r"^/delay/([0-9]+(?:\.[0-9]+)?)(?:/.*)?$")


class Gateway:
    def __init__(self, out: str, fail_first: int, fail_always: bool):
        self.out = Path(out)
        self.fail_first = fail_first
        self.fail_always = fail_always
        self.answer_delay = 0.0
        self.lock = threading.Lock()
        self.requests = 0
        self.sent = 0
        self.ids: dict[str, str] = {}

    def handle(self, path: str, headers: dict, body) -> tuple[int, dict]:
        with self.lock:
            self.requests += 1
            if self.fail_always or self.requests <= self.fail_first:
                return 503, {"error": "service unavailable, try again later"}
            key = headers.get("Idempotency-Key")
            if key and key in self.ids:
                return 200, {"id": self.ids[key], "duplicate": True}
            self.sent += 1
            message_id = f"sms-{self.sent}"
            with self.out.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"path": path, "headers": headers, "json": body}, ensure_ascii=False) + "\n")
            if key:
                self.ids[key] = message_id
            return 200, {"id": message_id}


def make_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeGateway/1"

        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, ValueError):
                return self.answer(400, {"error": "the body is not JSON"})
            path = urlsplit(self.path).path
            status = _STATUS.match(path)
            if status:
                code = int(status.group(1))
                return self.answer(code, {"error": f"status {code} as asked", "echo": body})
            delay = _DELAY.match(path)
            if delay:
                time.sleep(float(delay.group(1)))
            code, answer = gateway.handle(self.path, dict(self.headers.items()), body)
            if gateway.answer_delay:   # taken and recorded, but slow to say so: a sender may die waiting
                time.sleep(gateway.answer_delay)
            return self.answer(code, answer)

        def answer(self, code: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if code in (429, 503):
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - quiet: the JSON lines are the log
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake SMS gateway / webhook receiver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail-first", type=int, default=0, metavar="N")
    parser.add_argument("--fail-always", action="store_true")
    parser.add_argument("--answer-delay", type=float, default=0.0, metavar="SECONDS",
                        help="record a message at once but answer only after this long")
    args = parser.parse_args(argv)

    gateway = Gateway(args.out, args.fail_first, args.fail_always)
    gateway.answer_delay = args.answer_delay
    return serve_until_stopped(args.port, make_handler(gateway))


if __name__ == "__main__":
    sys.exit(main())
