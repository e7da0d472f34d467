"""A fake SMTP relay for tests: ``python -m tests.fakes.smtp_server --port P --out FILE``.

A real SMTP server (aiosmtpd's Controller) on 127.0.0.1 that appends every message it accepts to
FILE as a JSON line: {"to", "from", "subject", "body", "message_id", "idempotency_key",
"connection"}, decoded to text; "connection" numbers the SMTP connection it came on (1, 2, ...), so
that a test sees whether connections are reused. ``--delay SECONDS`` answers each accepted
message only after that long (it is recorded at once: a sender may die waiting for the answer);
``--timeout SECONDS`` closes a connection idle that long (as a relay does, after 300 s by default). ``--reject TEXT`` answers 550 to a recipient containing TEXT, ``--defer TEXT`` 451
(both repeatable). Prints "ready" when listening; stops cleanly on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, path: str):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.count = 0
        self.connections = 0

    def connection(self) -> int:
        with self.lock:
            self.connections += 1
            return self.connections

    def write(self, record: dict) -> int:
        with self.lock:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.count += 1
            return self.count


class Handler:
    def __init__(self, recorder: Recorder, reject: list[str], defer: list[str], delay: float = 0.0):
        self.recorder = recorder
        self.reject = reject
        self.defer = defer
        self.delay = delay

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.number = self.recorder.connection()     # one EHLO per connection
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.number = self.recorder.connection()
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if any(text in address for text in self.reject):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if any(text in address for text in self.defer):
            return f"451 4.2.1 <{address}>: Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        mail = message_from_bytes(raw if isinstance(raw, bytes) else raw.encode("utf-8"), policy=policy.default)
        part = mail.get_body(preferencelist=("plain",))
        record = {
            "to": ", ".join(envelope.rcpt_tos),
            "from": envelope.mail_from,
            "subject": str(mail.get("Subject", "")),
            "body": part.get_content().replace("\r\n", "\n") if part is not None else "",
            "message_id": str(mail.get("Message-ID", "")).strip(),
            "idempotency_key": str(mail.get("X-Idempotency-Key", "")).strip(),
            "connection": getattr(session, "number", 0),
        }
        number = self.recorder.write(record)
        if self.delay:
            await asyncio.sleep(self.delay)
        return f"250 2.0.0 Ok: queued as FAKE{number:06d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reject", action="append", default=[], metavar="TEXT")
    parser.add_argument("--defer", action="append", default=[], metavar="TEXT")
    parser.add_argument("--delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller = Controller(Handler(Recorder(args.out), args.reject, args.defer, args.delay),
                            hostname="127.0.0.1", port=args.port, enable_SMTPUTF8=True,
                            timeout=args.timeout)
    controller.start()
    print("ready", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
