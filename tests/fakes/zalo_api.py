"""A fake Zalo ZNS API for tests:
``python -m tests.fakes.zalo_api --port P --out FILE [--token T] [--fail-first N] [--error CODE]``.

A real HTTP server (``ThreadingHTTPServer``) on 127.0.0.1 answering as ZNS's template-message
endpoint does: HTTP 200 and a JSON body whose ``error`` is 0 on success. Every POST:

* a missing or wrong access token (``access_token`` header, when ``--token`` is given): error -124;
* the first N requests (``--fail-first``): error -100 ("unknown error, try again later");
* ``--error CODE``: that error code, every time;
* a body without phone, template_id, template_data (an object) or tracking_id: error -112;
* otherwise: ``{"error": 0, "message": "Success", "data": {"msg_id": "zns-<n>", ...}}``, the
  request appended to FILE as a JSON line {"path", "headers", "json"}.

Unlike the SMS gateway it does NOT deduplicate (by tracking_id or otherwise): every accepted
request is a message a citizen would see, so a test counts what notify really sent.
Prints "ready" when listening; stops cleanly on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.fakes.serving import serve_until_stopped


class Zns:
    def __init__(self, out: str, token: str | None, fail_first: int, error: int | None):
        self.out = Path(out)
        self.token, self.fail_first, self.error = token, fail_first, error
        self.lock = threading.Lock()
        self.requests = 0
        self.sent = 0

    def handle(self, path: str, headers: dict, body) -> dict:
        with self.lock:
            self.requests += 1
            if self.token is not None and headers.get("access_token") != self.token:
                return {"error": -124, "message": "Access token invalid"}
            if self.requests <= self.fail_first:
                return {"error": -100, "message": "Unknown error"}
            if self.error is not None:
                phone = body.get("phone") if isinstance(body, dict) else None
                return {"error": self.error, "message": f"error {self.error} as asked for {phone}"}   # repeats the phone
            if not isinstance(body, dict) or not all(body.get(k) for k in ("phone", "template_id", "tracking_id")) \
                    or not isinstance(body.get("template_data"), dict):
                return {"error": -112, "message": "Template data invalid"}
            self.sent += 1
            with self.out.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"path": path, "headers": headers, "json": body}, ensure_ascii=False) + "\n")
            return {"error": 0, "message": "Success",
                    "data": {"msg_id": f"zns-{self.sent}", "sent_time": "1767225600000",
                             "quota": {"dailyQuota": "500", "remainingQuota": str(500 - self.sent)}}}


def make_handler(zns: Zns) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeZns/1"

        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, ValueError):
                body = None
            answer = zns.handle(self.path, dict(self.headers.items()), body)
            data = json.dumps(answer, ensure_ascii=False).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - quiet: the JSON lines are the log
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake Zalo ZNS API")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--token", default=None)
    parser.add_argument("--fail-first", type=int, default=0, metavar="N")
    parser.add_argument("--error", type=int, default=None, metavar="CODE")
    args = parser.parse_args(argv)

    return serve_until_stopped(args.port, make_handler(Zns(args.out, args.token, args.fail_first, args.error)))


if __name__ == "__main__":
    sys.exit(main())
