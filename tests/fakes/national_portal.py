"""A fake national public-service portal for tests: a real HTTP server that records the status
changes it receives, can fail for a while, refuse connections for a while, throttle, and forget.

    python -m tests.fakes.national_portal --port P --out FILE [--fail-first N]
                                                                  (prints "ready"; SIGTERM stops it)

or in a test's own process: ``FakePortal().start()`` … ``.stop()``.

* ``POST /api/DongBoHoSoMC`` (the path of services/portal/data/portal-fields.yml): 503 to the first
  N sends (``--fail-first``), then as follows. Every attempt is
  appended to FILE as a JSON line ``{"at", "answer", "key", "record"}``; accepted records are held,
  deduplicated by the ``Idempotency-Key`` header (a repeat answers 200, ``duplicate``, held once).
* ``GET /api/TraCuuHoSo?TuNgay=yyyyMMdd&DenNgay=yyyyMMdd``: ``{"data": [held records whose
  ThoiDiemXuLy falls in those days]}``.
* ``POST /_control`` with any of: ``{"fail_for": s, "status": 503}`` (answer that status for s
  seconds), ``{"down_for": s}`` (close the listening socket: connections refused for s seconds),
  ``{"throttle_next": n, "retry_after": s}`` (429 with Retry-After to the next n sends),
  ``{"forget": key}`` (drop a held record: the portal lost it).
* ``GET /_held``: the held records in the order accepted.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

SEND_PATH, QUERY_PATH = "/api/DongBoHoSoMC", "/api/TraCuuHoSo"


class PortalState:
    def __init__(self, out: Path | None = None, fail_first: int = 0):
        self.out, self.fail_first = out, fail_first
        self.lock = threading.Lock()
        self.held: dict[str, dict] = {}          # key -> record, in the order accepted
        self.attempts: list[dict] = []
        self.fail_until, self.fail_status = 0.0, 503
        self.throttle_next, self.retry_after = 0, 1.0

    def _log(self, entry: dict) -> None:
        self.attempts.append(entry)
        if self.out:
            with self.out.open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def send(self, key: str | None, body) -> tuple[int, dict, dict]:
        record = (body or {}).get("data", [None])[0] if isinstance(body, dict) else None
        with self.lock:
            entry = {"at": time.time(), "key": key, "record": record}
            if self.fail_first > 0 or time.monotonic() < self.fail_until:
                self.fail_first = max(self.fail_first - 1, 0)
                self._log({**entry, "answer": self.fail_status})
                return self.fail_status, {"error_code": "-1", "message": "tạm thời không phục vụ"}, {}
            if self.throttle_next > 0:
                self.throttle_next -= 1
                self._log({**entry, "answer": 429})
                return 429, {"error_code": "429", "message": "quá nhiều yêu cầu"}, \
                    {"Retry-After": f"{self.retry_after:g}"}
            if not key or not isinstance(record, dict):
                self._log({**entry, "answer": 400})
                return 400, {"error_code": "400", "message": "thiếu khóa hoặc dữ liệu"}, {}
            duplicate = key in self.held
            if not duplicate:
                self.held[key] = record
            self._log({**entry, "answer": 200, "duplicate": duplicate})
            return 200, {"error_code": "0", "message": "thành công", "duplicate": duplicate}, {}

    def query(self, first: str, last: str) -> list[dict]:
        with self.lock:
            return [r for r in self.held.values() if first <= str(r.get("ThoiDiemXuLy", ""))[:8] <= last]

    def control(self, body: dict) -> None:
        with self.lock:
            if "fail_for" in body:
                self.fail_until = time.monotonic() + float(body["fail_for"])
                self.fail_status = int(body.get("status", 503))
            if "throttle_next" in body:
                self.throttle_next = int(body["throttle_next"])
                self.retry_after = float(body.get("retry_after", 1))
            if "forget" in body:
                self.held.pop(body["forget"], None)


def make_handler(portal: FakePortal) -> type[BaseHTTPRequestHandler]:
    state = portal.state

    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeNationalPortal/1"

        def log_message(self, *args):   # quiet
            pass

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw.decode("utf-8")) if raw else None

        def answer(self, status: int, body, headers: dict | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            path = urlsplit(self.path).path
            try:
                body = self._body()
            except (UnicodeDecodeError, ValueError):
                return self.answer(400, {"error_code": "400", "message": "not JSON"})
            if path == "/_control":
                if "down_for" in body:
                    self.answer(200, {"ok": True})
                    threading.Thread(target=portal.go_down, args=(float(body["down_for"]),), daemon=True).start()
                    return None
                state.control(body)
                return self.answer(200, {"ok": True})
            if path == SEND_PATH:
                status, answer, headers = state.send(self.headers.get("Idempotency-Key"), body)
                return self.answer(status, answer, headers)
            return self.answer(404, {"error_code": "404", "message": "no such path"})

        def do_GET(self):
            parts = urlsplit(self.path)
            if parts.path == "/_held":
                with state.lock:
                    return self.answer(200, {"data": list(state.held.values())})
            if parts.path == QUERY_PATH:
                query = parse_qs(parts.query)
                return self.answer(200, {"data": state.query(query.get("TuNgay", [""])[0],
                                                             query.get("DenNgay", ["99999999"])[0])})
            return self.answer(404, {"error_code": "404", "message": "no such path"})

    return Handler


class FakePortal:
    def __init__(self, port: int = 0, out: Path | None = None, fail_first: int = 0):
        self.state = PortalState(out, fail_first)
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakePortal:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), make_handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def _close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def go_down(self, seconds: float) -> None:
        """Nobody listening for a while: connections are refused, as when the portal is away."""
        time.sleep(0.2)                  # the control request's answer goes out first
        self._close()
        time.sleep(seconds)
        if not self.stopped:
            ThreadingHTTPServer.allow_reuse_address = True
            self.start()

    def stop(self) -> None:
        self.stopped = True
        self._close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    portal = FakePortal(args.port, Path(args.out), args.fail_first).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    portal.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
