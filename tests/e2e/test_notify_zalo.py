"""Zalo end to end (issue 18): catalog, intake and notify as real processes with real RabbitMQ and
PostgreSQL, and a fake ZNS API (tests/fakes/zalo_api.py, a real local HTTP server that does NOT
deduplicate) whose first answer is an error. A citizen who chose Zalo gets the receipt message
once, through a transient failure and a redelivered event; one who chose SMS gets nothing on Zalo."""
import json

import pytest
import requests
from sqlalchemy import text

from tests.conftest import EventTap
from tests.e2e.conftest import ServiceProcess, amqp
from tests.e2e.test_intake_desk import APPLICANT, DOCUMENTS, MARITAL_STATUS, wait_for
from tests.e2e.test_notify import DESK, Fake, history, receive

TOKEN = "oa-token-e2e"


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zalo-providers")
    zns = Fake("tests.fakes.zalo_api", folder / "zns.jsonl", "--token", TOKEN, "--fail-first", "1")
    sms = Fake("tests.fakes.http_gateway", folder / "sms.jsonl")
    yield {"zns": zns, "sms": sms}
    for fake in (zns, sms):
        fake.stop()


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, providers, tmp_path_factory):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE notify.dossiers, notify.messages, notify.templates, notify.digests, "
                                "notify.outbox, notify.processed_events"))
    logs = tmp_path_factory.mktemp("notify-zalo-stack")
    clock("2026-03-02T09:00:00+07:00")
    intake = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)}, logs).start()
    notify_env = {**process_env, "ZALO_API_URL": f"http://127.0.0.1:{providers['zns'].port}/message/template",
                  "ZALO_ACCESS_TOKEN": TOKEN, "SMS_GATEWAY_URL": f"http://127.0.0.1:{providers['sms'].port}/sms",
                  "NOTIFY_BACKOFF_SECONDS": "0.5", "NOTIFY_MAX_ATTEMPTS": "3", "QUIET_HOURS": "00:00-00:00"}
    notify = ServiceProcess("notify", notify_env, logs).start()
    yield {"intake": intake, "notify": notify, "logs": logs}
    notify.stop()
    intake.stop()


def zns_for(providers, code):
    return [m for m in providers["zns"].lines() if m["json"]["template_data"].get("dossier_code") == code]


def test_a_citizen_who_chose_zalo_gets_the_receipt_once_through_a_failure_and_a_redelivery(stack, providers):
    tap = EventTap(amqp(), "dossier.received")
    try:
        dossier = receive(stack, notifications={"channels": ["zalo"], "optional": True})
        code = dossier["code"]
        (event,) = [e for e in tap.drain(expect=1) if e["payload"]["code"] == code]
    finally:
        tap.close()
    assert event["payload"]["notifications"]["channels"] == ["zalo"]
    sent = wait_for(lambda: zns_for(providers, code), timeout=30)
    wait_for(lambda: [m for m in history(stack, code) if m["state"] == "sent"], timeout=20)
    (message,) = history(stack, code)
    assert message["channel"] == "zalo" and message["attempts"] == 2      # -100 first, then accepted
    body = sent[0]["json"]
    assert body["phone"] == "84" + APPLICANT["phone"].lstrip("0").replace(" ", "")
    assert body["template_data"]["appointment_date"] == "/".join(reversed(dossier["appointment_date"].split("-")))
    assert body["template_data"]["secret"] == dossier["secret"]
    assert body["tracking_id"] == str(message["id"])

    from kombu import Producer
    from motcua.runtime import broker
    with broker.confirmed_connection(amqp()) as connection:              # the broker delivers it again
        Producer(connection.default_channel, exchange=broker.events_exchange).publish(
            json.dumps(event), routing_key="dossier.received", content_type="application/json",
            content_encoding="utf-8")
    # Once a dossier received after it (the marker, same queue) has its ZNS, the redelivered event
    # has been handled: nothing sent again, no message recorded.
    marker = receive(stack, notifications={"channels": ["zalo"]})["code"]
    wait_for(lambda: zns_for(providers, marker), timeout=30)
    assert len(zns_for(providers, code)) == 1 and len(history(stack, code)) == 1
    assert not [m for m in providers["sms"].lines() if code in m["json"]["text"]]   # only the chosen channel


def test_zalo_and_sms_together_and_sms_alone(stack, providers):
    both = receive(stack, notifications={"channels": ["zalo", "sms"]})["code"]
    sms_only = receive(stack, notifications={"channels": ["sms"]})["code"]
    wait_for(lambda: len([m for m in history(stack, both) if m["state"] == "sent"]) == 2, timeout=30)
    wait_for(lambda: [m for m in history(stack, sms_only) if m["state"] == "sent"], timeout=30)
    assert sorted(m["channel"] for m in history(stack, both)) == ["sms", "zalo"]
    assert [m["channel"] for m in history(stack, sms_only)] == ["sms"]
    assert len(zns_for(providers, both)) == 1 and zns_for(providers, sms_only) == []


def test_an_unknown_channel_is_refused_by_the_desk_naming_the_field(stack):
    answer = requests.post(stack["intake"].url + "/api/v1/dossiers", headers=DESK, timeout=10, json={
        "procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "documents": DOCUMENTS,
        "notifications": {"channels": ["zalo", "viber"]}})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "notifications.channels" and "zalo" in answer.json()["error"]


def test_no_phone_in_logs_or_metrics_and_zalo_counted(stack):
    log = (stack["logs"] / "notify.log").read_text()
    metrics = requests.get(stack["notify"].url + "/metrics", timeout=5).text
    digits = APPLICANT["phone"].replace(" ", "")
    for secret in (APPLICANT["phone"], digits, "84" + digits.lstrip("0"), TOKEN):
        assert secret not in log and secret not in metrics
    assert 'motcua_notify_messages_total{channel="zalo",state="sent",template="received"}' in metrics
    assert 'motcua_notify_retries_total{channel="zalo"} 1.0' in metrics
    assert 'motcua_notify_queue_depth{channel="zalo"}' in metrics
