"""notify killed between sending a message and recording it sends it again with the same
idempotency key: the provider recognises it and the citizen gets one SMS (issue 5); and since
each message is recorded before its sender sends the next, a crash sends again at most the one
message each sender had in flight.

In a module of its own: no other notify process may take the messages meanwhile."""
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import requests
from sqlalchemy import insert, select

from motcua.contracts.pii import RECIPIENT
from motcua.runtime.pii import keyring
from services.notify import models
from tests.conftest import PII_SETTINGS
from tests.e2e.conftest import ServiceProcess
from tests.e2e.test_intake_desk import APPLICANT, DOCUMENTS, MARITAL_STATUS, wait_for
from tests.e2e.test_notify import Fake
from tests.fakes.officials import official_headers

WARD_5 = "000.05.20.H29"
DESK = official_headers("Trần Văn Bình", WARD_5)
VN = timezone(timedelta(hours=7))
PII = keyring(PII_SETTINGS)          # notify stores every recipient sealed


def test_a_crash_between_sending_and_recording_sends_nothing_twice(process_env, catalog_process, clock, tmp_path):
    clock("2026-03-02T09:00:00+07:00")
    gateway = Fake("tests.fakes.http_gateway", tmp_path / "sms.jsonl", "--answer-delay", "4")
    intake = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)}, tmp_path).start()
    # The lease is on the services' clock, which the test moves (this sandbox's wall clock may jump).
    env = {**process_env, "SMS_GATEWAY_URL": f"http://127.0.0.1:{gateway.port}/sms", "QUIET_HOURS": "00:00-00:00",
           "NOTIFY_LEASE_SECONDS": "60", "CLOCK_FILE": str(clock.path)}
    notify = ServiceProcess("notify", env, tmp_path)
    try:
        notify.start()
        code = requests.post(intake.url + "/api/v1/dossiers", headers=DESK, timeout=10, json={
            "procedure_code": MARITAL_STATUS, "applicant": {**APPLICANT, "email": None},
            "documents": DOCUMENTS}).json()["code"]
        wait_for(lambda: [m for m in gateway.lines() if code in m["json"]["text"]], timeout=20)
        notify.crash()               # the provider has it; notify never heard back
        notify.start()
        time.sleep(2)
        assert len([m for m in gateway.lines() if code in m["json"]["text"]]) == 1   # leased: not sent again yet
        clock("2026-03-02T09:02:00+07:00")   # the lease of the dead sender runs out
        history = f"{notify.url}/api/v1/dossiers/{code}/messages"
        sent = wait_for(lambda: (m := requests.get(history, headers=DESK, timeout=5).json()["messages"])
                        and m[0]["state"] == "sent" and m, timeout=30)
        time.sleep(1)
        assert sent[0]["attempts"] == 2
        assert len([m for m in gateway.lines() if code in m["json"]["text"]]) == 1
    finally:
        notify.stop()
        intake.stop()
        gateway.stop()


SENDERS, CRASHES = 3, 3


def test_crashes_mid_round_send_again_at_most_the_message_each_sender_had_in_flight(
        process_env, catalog_process, engine, clock, tmp_path):
    """notify killed (SIGKILL) three times while it sends e-mails to six recipients with three
    senders: each message is recorded as sent before its sender sends the next, so a crash leaves
    at most one message per sender accepted by the relay and not recorded; only those go out
    twice, and every message is recorded as sent."""
    relay = Fake("tests.fakes.smtp_server", tmp_path / "mail.jsonl", "--delay", "0.3")   # slow to answer
    start = datetime(2026, 3, 3, 9, 0, tzinfo=VN)
    clock(start.isoformat())
    recipients = [f"cong.dan.{n}@example.vn" for n in range(6)]
    rows = [{"idempotency_key": f"crash-e2e:{turn}:{n}", "code": f"{WARD_5}-260303-{turn * 10 + n:04d}",
             "unit": WARD_5, "template": "received", "channel": "email", "audience": "citizen",
             "recipient": PII.seal(recipient, RECIPIENT), "subject": "Thử nghiệm khởi động lại",
             "text": f"Thư {turn} gửi {recipient}",
             "state": "queued", "next_attempt_at": start, "created_at": start}
            for turn in range(8) for n, recipient in enumerate(recipients)]
    keys = {row["idempotency_key"] for row in rows}
    with engine.begin() as connection:
        connection.execute(insert(models.messages), rows)
    env = {**process_env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(relay.port), "NOTIFY_SENDERS": str(SENDERS),
           "NOTIFY_LEASE_SECONDS": "60", "CLOCK_FILE": str(clock.path), "NOTIFY_POLL_SECONDS": "0.2"}
    notify = ServiceProcess("notify", env, tmp_path)

    def received() -> list[str]:
        return [r["idempotency_key"] for r in relay.lines() if r["idempotency_key"] in keys]

    def recorded() -> set[str]:
        with engine.connect() as connection:
            return set(connection.execute(select(models.messages.c.idempotency_key).where(
                models.messages.c.idempotency_key.in_(keys), models.messages.c.state == "sent")).scalars())

    in_flight = []     # per crash: sent by the process that died (received since the previous crash), unrecorded
    try:
        notify.start()
        before = Counter()
        for crash in range(1, CRASHES + 1):
            wait_for(lambda: len(set(received())) >= crash * len(keys) // (CRASHES + 1), timeout=60)
            notify.crash()
            time.sleep(0.5)          # a message whose DATA was complete reaches the relay's file even so
            now, done = Counter(received()), recorded()
            in_flight.append(len({key for key in now if now[key] > before[key] and key not in done}))
            before = now
            clock((start + timedelta(minutes=2 * crash)).isoformat())   # the dead process's leases run out
            notify.start()
        wait_for(lambda: recorded() == keys, timeout=120)
        time.sleep(1)
        copies = Counter(received())
        assert set(copies) == keys
        assert all(count <= SENDERS for count in in_flight), in_flight
        assert 0 < sum(in_flight), "no crash caught a message in flight: the test proved nothing"
        assert sum(copies.values()) - len(keys) == sum(in_flight) <= CRASHES * SENDERS
    finally:
        notify.stop()
        relay.stop()
