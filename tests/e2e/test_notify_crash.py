"""notify killed between sending a message and recording it sends it again with the same
idempotency key: the provider recognises it and the citizen gets one SMS (issue 5).

In a module of its own: no other notify process may take the message meanwhile."""
import time
from urllib.parse import quote

import requests

from tests.e2e.conftest import ServiceProcess
from tests.e2e.test_intake_desk import APPLICANT, DOCUMENTS, MARITAL_STATUS, wait_for
from tests.e2e.test_notify import Fake

WARD_5 = "000.05.20.H29"
DESK = {"X-Official": quote("Trần Văn Bình"), "X-Unit": WARD_5}


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
