"""Stand-ins for the outside world notify talks to: an SMS gateway and the officials' webhooks,
served in this process, so that every message of the simulation is sent (and counted) rather
than dead-lettered for want of a configured channel."""
from __future__ import annotations

import itertools
import json
from collections import Counter

import eventlet
from eventlet import wsgi


class Providers:
    def __init__(self):
        self.received: Counter = Counter()
        self._ids = itertools.count(1)
        self._server = None
        self.port = None

    def app(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"].read(length)
        kind = "sms" if path.startswith("/sms") else "webhook" if path.startswith("/webhook") else None
        if environ.get("REQUEST_METHOD") != "POST" or kind is None:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "not found"}']
        self.received[kind] += 1
        body = json.dumps({"id": f"demo-{kind}-{next(self._ids)}"}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def start(self) -> str:
        listener = eventlet.listen(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self._server = eventlet.spawn(wsgi.server, listener, self.app, log_output=False)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.kill()
            self._server = None


def officials_file(units, base_url: str) -> str:
    """An officials file (notify's OFFICIALS_FILE) giving every unit a webhook to ``base_url``."""
    lines = ["units:"]
    for code in units:
        lines += [f'  "{code}":', f'    webhook: "{base_url}/webhook/{code}"']
    return "\n".join(lines) + "\n"
