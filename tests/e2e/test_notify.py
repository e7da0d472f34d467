"""Notifications end to end: catalog, intake and notify as real processes, a real local SMTP
server and a real local SMS gateway (HTTP) as the providers (issue 5, done when)."""
import json
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from nameko.testing.utils import find_free_port
from sqlalchemy import text

from motcua.contracts.events import new_event
from tests.conftest import ROOT, EventTap, dead_letters
from tests.e2e.conftest import amqp, ServiceProcess
from tests.e2e.test_intake_desk import APPLICANT, DOCUMENTS, MARITAL_STATUS, publish, wait_for

WARD_5, TAX = "000.05.20.H29", "000.42.20.H29"
DESK = {"X-Official": quote("Trần Văn Bình"), "X-Unit": WARD_5}


class Fake:
    """A fake provider (tests/fakes) as a real server in its own process."""

    def __init__(self, module: str, out: Path, *args: str):
        self.port, self.out = find_free_port(), out
        self.process = subprocess.Popen([sys.executable, "-m", module, "--port", str(self.port), "--out", str(out),
                                         *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.out.read_text().splitlines()] if self.out.exists() else []

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("providers")
    smtp = Fake("tests.fakes.smtp_server", folder / "mail.jsonl")
    sms = Fake("tests.fakes.http_gateway", folder / "sms.jsonl", "--fail-first", "2")
    broken = Fake("tests.fakes.http_gateway", folder / "webhook.jsonl", "--fail-always")
    yield {"smtp": smtp, "sms": sms, "broken": broken, "folder": folder}
    for fake in (smtp, sms, broken):
        fake.stop()


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, providers, tmp_path_factory):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE notify.dossiers, notify.messages, notify.templates, notify.digests, "
                                "notify.outbox, notify.processed_events"))
    officials = providers["folder"] / "officials.yml"
    officials.write_text(f'units:\n  "{TAX}":\n    webhook: "http://127.0.0.1:{providers["broken"].port}/hook"\n')
    logs = tmp_path_factory.mktemp("notify-stack")
    clock("2026-03-02T09:00:00+07:00")
    intake = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)}, logs).start()
    notify_env = {**process_env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(providers["smtp"].port),
                  "SMS_GATEWAY_URL": f"http://127.0.0.1:{providers['sms'].port}/sms", "OFFICIALS_FILE": str(officials),
                  "NOTIFY_BACKOFF_SECONDS": "0.5", "NOTIFY_MAX_ATTEMPTS": "3", "QUIET_HOURS": "00:00-00:00"}
    notify = ServiceProcess("notify", notify_env, logs).start()
    yield {"intake": intake, "notify": notify, "env": notify_env, "logs": logs}
    notify.stop()
    intake.stop()


def receive(stack, **overrides):
    answer = requests.post(stack["intake"].url + "/api/v1/dossiers", headers=DESK, timeout=10, json={
        "procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "documents": DOCUMENTS,
        "notifications": {"channels": ["sms", "email"], "optional": True}, **overrides})
    assert answer.status_code == 201, answer.text
    return answer.json()


def history(stack, code):
    answer = requests.get(f"{stack['notify'].url}/api/v1/dossiers/{code}/messages", headers=DESK, timeout=5)
    return answer.json()["messages"] if answer.status_code == 200 else []


def test_a_received_dossier_gives_one_email_and_one_sms_even_when_the_sms_gateway_fails_twice(stack, providers):
    dossier = receive(stack)
    code = dossier["code"]
    mails = wait_for(lambda: [m for m in providers["smtp"].lines() if code in m["body"]], timeout=20)
    sms = wait_for(lambda: [m for m in providers["sms"].lines() if code in m["json"]["text"]], timeout=30)
    assert len(mails) == 1 and len(sms) == 1
    assert mails[0]["to"] == APPLICANT["email"]
    appointment = "/".join(reversed(dossier["appointment_date"].split("-")))
    assert appointment in mails[0]["body"] and appointment in sms[0]["json"]["text"]
    assert dossier["secret"] in mails[0]["body"]
    assert sms[0]["json"]["to"] == APPLICANT["phone"]
    assert sms[0]["json"]["text"].isascii()             # tiếng Việt không dấu
    wait_for(lambda: len([m for m in history(stack, code) if m["state"] == "sent"]) == 2, timeout=20)
    by_channel = {m["channel"]: m for m in history(stack, code)}
    assert by_channel["sms"]["attempts"] == 3 and by_channel["email"]["attempts"] == 1
    assert APPLICANT["phone"] not in json.dumps(history(stack, code))   # officials see masked addresses


def test_a_redelivered_event_produces_nothing_new(stack, providers):
    tap = EventTap(amqp(), "dossier.received")
    try:
        code = receive(stack)["code"]
        (event,) = [e for e in tap.drain(expect=1) if e["payload"]["code"] == code]
    finally:
        tap.close()
    wait_for(lambda: len([m for m in history(stack, code) if m["state"] == "sent"]) == 2, timeout=30)
    from kombu import Producer
    from motcua.runtime import broker
    with broker.confirmed_connection(amqp()) as connection:
        Producer(connection.default_channel, exchange=broker.events_exchange).publish(
            json.dumps(event), routing_key="dossier.received", content_type="application/json",
            content_encoding="utf-8")
    # Once a dossier received after it (the marker, on the same queue) has its e-mail, the
    # redelivered event has been handled: it sent nothing and recorded no message.
    marker = receive(stack)["code"]
    wait_for(lambda: [m for m in providers["smtp"].lines() if marker in m["body"]], timeout=30)
    assert len([m for m in providers["smtp"].lines() if code in m["body"]]) == 1
    assert len([m for m in providers["sms"].lines() if code in m["json"]["text"]]) == 1
    assert len(history(stack, code)) == 2


def test_an_overdue_dossiers_apology_reaches_the_citizen_with_the_new_date(stack, providers):
    code = receive(stack, notifications={"channels": ["sms", "email"], "optional": False})["code"]
    publish(new_event("dossier.apology_issued", {
        "code": code, "agency": WARD_5, "reason": "Chờ xác minh hộ tịch", "original_due_date": "2026-03-05",
        "new_date": "2026-03-10", "issued_at": "2026-03-06T09:00:00+07:00", "official": "Phạm Văn Cường"}, WARD_5))
    mails = wait_for(lambda: [m for m in providers["smtp"].lines() if code in m["body"]], timeout=20)
    sms = wait_for(lambda: [m for m in providers["sms"].lines() if code in m["json"]["text"]], timeout=20)
    # The citizen opted out of optional messages: only the apology (legally required) came.
    assert len(mails) == 1 and len(sms) == 1
    assert "10/03/2026" in mails[0]["body"] and "Chờ xác minh hộ tịch" in mails[0]["body"]
    assert "10/03/2026" in sms[0]["json"]["text"]


def test_a_provider_that_keeps_failing_ends_in_the_dead_letter_with_the_reason(stack, providers):
    from kombu import Connection
    from motcua.runtime import broker
    with Connection(amqp()) as connection:
        broker.declare_topology(connection.default_channel)
        broker.dead_letter_queue(connection.default_channel).purge()
    code = receive(stack)["code"]
    publish(new_event("dossier.at_risk", {"code": code, "agency": TAX, "step": 1, "due_date": "2026-03-05",
                                          "detected_at": "2026-03-04T08:00:00+07:00"}, WARD_5))
    dead = [d for d in dead_letters(amqp(), timeout=30) if d.headers["x-dead-letter-service"] == "notify"]
    assert dead and "not delivered after 3 attempt(s)" in dead[0].headers["x-dead-letter-reason"]
    assert "503" in dead[0].headers["x-dead-letter-reason"]
    failed = wait_for(lambda: [m for m in history(stack, code) if m["state"] == "failed"], timeout=10)
    assert failed[0]["channel"] == "webhook" and failed[0]["attempts"] == 3


def test_an_online_submission_refused_before_receipt_is_not_an_error(stack):
    from kombu import Connection
    from motcua.runtime import broker
    with Connection(amqp()) as connection:
        broker.declare_topology(connection.default_channel)
        broker.dead_letter_queue(connection.default_channel).purge()
    code = "000.05.20.H29-260302-8100"
    publish(new_event("dossier.refused", {"code": code, "reason": "Hồ sơ không hợp lệ", "official": "Trần Văn Bình",
                                          "refused_at": "2026-03-02T09:00:00+07:00", "received": False},
                      "000.05.20.H29"))
    # The marker: a refusal of a received dossier notify never heard of, an error, on the same queue;
    # the first dead letter is the marker's, not the online submission's.
    marker = new_event("dossier.refused", {"code": "000.05.20.H29-260302-8101", "reason": "Hồ sơ không hợp lệ",
                                           "official": "Trần Văn Bình", "refused_at": "2026-03-02T09:00:00+07:00",
                                           "received": True}, "000.05.20.H29")
    publish(marker)
    dead = dead_letters(amqp(), timeout=30)
    assert [json.loads(d.body)["id"] for d in dead] == [marker.id], [d.headers["x-dead-letter-reason"] for d in dead]


def test_templates_are_validated_when_saved(stack):
    base = stack["notify"].url + "/api/v1/templates"
    broken = requests.put(f"{base}/received/sms", headers=DESK, timeout=5,
                          json={"body": "Ho so {{ code } da nhan"})
    assert broken.status_code == 400 and broken.json()["field"] == "body"
    unknown = requests.put(f"{base}/received/sms", headers=DESK, timeout=5, json={"body": "Ho so {{ nothing_here }}"})
    assert unknown.status_code == 400
    too_long = requests.put(f"{base}/received/sms", headers=DESK, timeout=5, json={"body": "{{ code }} " + "x" * 400})
    assert too_long.status_code == 400 and "306" in too_long.json()["error"]
    saved = requests.put(f"{base}/returned/sms", headers=DESK, timeout=5,
                         json={"body": "Ho so {{ code }} da tra ket qua. Cam on {{ name }}."})
    assert saved.status_code == 200 and saved.json()["preview"]["text"].startswith("Ho so ")
    listed = {(t["key"], t["channel"]): t for t in requests.get(base, timeout=5).json()["templates"]}
    assert listed[("returned", "sms")]["version"] == 1 and listed[("received", "sms")]["version"] == 0


def test_no_phone_or_email_in_logs_or_metrics(stack):
    log = (stack["logs"] / "notify.log").read_text()
    metrics = requests.get(stack["notify"].url + "/metrics", timeout=5).text
    for secret in (APPLICANT["phone"], APPLICANT["email"]):
        assert secret not in log and secret not in metrics
    assert 'motcua_notify_messages_total{channel="sms",state="sent",template="received"}' in metrics
    assert 'motcua_notify_retries_total{channel="sms"} 2.0' in metrics


def test_a_malformed_delivery_report_is_refused_naming_the_field_and_changes_nothing(stack):
    code = receive(stack)["code"]
    wait_for(lambda: len([m for m in history(stack, code) if m["state"] == "sent"]) == 2, timeout=30)
    before = history(stack, code)
    url = stack["notify"].url + "/api/v1/delivery-reports"
    for body, field in (("[1, 2, 3]", "body"), ("42", "body"), ('{"id": 5, "status": "delivered"}', "id"),
                        ('{"id": ["x"], "status": "delivered"}', "id"), ('{"id": "x", "status": 3}', "status"),
                        ('{"id": "x", "status": ["delivered"]}', "status"), ("{not json", "body")):
        answer = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
        assert answer.status_code == 400, (body, answer.status_code, answer.text)
        assert answer.json()["field"] == field, (body, answer.json())
    unknown = requests.post(url, json={"id": "no-such-id", "status": "delivered"}, timeout=5)
    assert unknown.status_code == 404 and unknown.json()["field"] == "id"
    assert history(stack, code) == before
