"""The desk works while RabbitMQ is unreachable: intake (a real process) receives, refuses and returns
dossiers from its own copy of the catalogue and its own tables, and every event it wrote meanwhile is
published once the broker is back.

RabbitMQ here is a node of the test's own (its name, ports, folders and Erlang cookie), stopped
mid-test and started again; the machine's node on 5672 is never touched."""
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests
from kombu import Connection, Queue
from sqlalchemy import text

from motcua.contracts.events import new_event
from motcua.runtime import broker
from tests.conftest import PII_SETTINGS, ROOT
from tests.e2e.conftest import ServiceProcess, run_cli
from tests.e2e.rabbit import RabbitNode
from tests.fakes import oidc_provider
from tests.e2e.test_intake_desk import APPLICANT, DESK_5, DOCUMENTS, MARITAL_STATUS, WARD_5

pytestmark = pytest.mark.skipif(shutil.which("rabbitmq-server") is None, reason="needs rabbitmq-server")


@pytest.fixture(scope="module")
def node():
    # Not under pytest's tmp folders: those are root's only, and the node may run as rabbitmq.
    folder = Path(tempfile.mkdtemp(prefix="motcua-rabbit-"))
    folder.chmod(0o755)
    rabbit = RabbitNode(folder)
    try:
        rabbit.start()
        yield rabbit
    finally:
        rabbit.stop()
        rabbit.log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def env(node, database_url, tmp_path_factory):
    clock = tmp_path_factory.mktemp("clock") / "now"
    clock.write_text("2026-03-02T09:00:00+07:00")
    return {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT),
            "AMQP_URI": node.uri, "EVENT_WAIT_SECONDS": "2", "CLOCK_FILE": str(clock), **PII_SETTINGS,
            **oidc_provider.provider().settings()}      # officials signed in (tests/fakes/officials.py)


@pytest.fixture(scope="module")
def desk(env, engine, tmp_path_factory):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE catalog.units, catalog.procedure_versions, catalog.outbox"))
        connection.execute(text(
            "TRUNCATE intake.dossiers, intake.dossier_history, intake.tracking_book_counters, "
            "intake.dossier_code_counters, intake.outbox, intake.processed_events, "
            "intake.catalogue_procedures, intake.catalogue_units CASCADE"))
    run_cli(["catalog", "load"], env)
    logs = tmp_path_factory.mktemp("logs")
    catalog = ServiceProcess("catalog", env, logs).start()
    intake = ServiceProcess("intake", env, logs).start()     # its copy is empty: filled over RPC
    try:
        yield intake
    finally:
        intake.stop()
        catalog.stop()


def publish(uri, event):
    with broker.confirmed_connection(uri) as connection:
        channel = connection.default_channel
        broker.declare_topology(channel)
        from kombu import Producer
        Producer(channel, exchange=broker.events_exchange).publish(
            event.to_json(), routing_key=event.type, content_type="application/json", content_encoding="utf-8",
            delivery_mode=2)


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def dossier(intake, code):
    return requests.get(f"{intake.url}/api/v1/dossiers/{code}", headers=DESK_5, timeout=10).json()


def receive(intake, name="Nguyễn Thị Lan", id_number="079203001234"):
    return requests.post(intake.url + "/api/v1/dossiers", headers=DESK_5, timeout=10, json={
        "procedure_code": MARITAL_STATUS, "applicant": {**APPLICANT, "name": name, "id_number": id_number},
        "channel": "in_person", "documents": DOCUMENTS, "sets": 1})


def unpublished(engine):
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT id::text, type FROM intake.outbox WHERE published_at IS NULL ORDER BY seq")).all()


def test_the_desk_receives_refuses_and_returns_while_the_broker_is_down(node, desk, engine):
    # Before: a dossier processed and paid for, ready to be returned.
    ready = receive(desk)
    assert ready.status_code == 201, ready.text
    code = ready.json()["code"]
    publish(node.uri, new_event("dossier.step_started", {"code": code, "agency": WARD_5, "step": 1,
                                                         "started_at": "2026-03-02T09:10:00+07:00"}, WARD_5))
    wait_for(lambda: dossier(desk, code)["status"] == 4)
    publish(node.uri, new_event("fees.charged", {"code": code, "amount": 10000,
                                                 "charged_at": "2026-03-02T09:01:00+07:00"}, WARD_5))
    publish(node.uri, new_event("dossier.processed", {"code": code, "agency": WARD_5, "result": "done",
                                                      "processed_at": "2026-03-02T10:00:00+07:00"}, WARD_5))
    publish(node.uri, new_event("fees.paid", {"code": code, "amount": 10000, "method": "cash",
                                              "paid_at": "2026-03-02T10:05:00+07:00"}, WARD_5))
    publish(node.uri, new_event("fees.settled", {"code": code, "settled_at": "2026-03-02T10:05:00+07:00"},
                                WARD_5))
    wait_for(lambda: (d := dossier(desk, code))["status"] == 9 and d["fees"]["settled"])
    wait_for(lambda: unpublished(engine) == [])

    # A durable queue of the test's, so what is published after the restart waits for it.
    with Connection(node.uri) as connection:
        channel = connection.default_channel
        broker.declare_topology(channel)
        Queue("broker-down-tap", exchange=broker.events_exchange, routing_key="dossier.#",
              durable=True)(channel).declare()

    node.stop()
    try:
        started = time.monotonic()
        received = receive(desk, name="Võ Minh Tuấn", id_number="079203009999")
        assert received.status_code == 201, received.text
        online = requests.post(desk.url + "/api/v1/online-submissions", timeout=10, json={
            "unit": WARD_5, "procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "documents": DOCUMENTS})
        assert online.status_code in (200, 201), online.text
        refused = requests.post(f"{desk.url}/api/v1/dossiers/{online.json()['code']}/refusal", headers=DESK_5,
                                timeout=10, json={"reason": "Người yêu cầu không cư trú tại Phường 5"})
        assert refused.status_code == 200 and refused.json()["status"] == 3, refused.text
        returned = requests.post(f"{desk.url}/api/v1/dossiers/{code}/return", headers=DESK_5, timeout=10,
                                 json={"collected_by": "Nguyễn Thị Lan"})
        assert returned.status_code == 200 and returned.json()["status"] == 10, returned.text
        assert time.monotonic() - started < 20          # no look-up waited on the broker
        assert desk.process.poll() is None               # the container lives on without its broker
        waiting = unpublished(engine)
        assert {kind for _, kind in waiting} >= {"dossier.received", "dossier.submitted_online",
                                                 "dossier.refused", "dossier.returned"}
    finally:
        node.start()

    # Back: every event written meanwhile is published, once the relay reconnects.
    wait_for(lambda: unpublished(engine) == [], timeout=90)
    got = []
    with Connection(node.uri) as connection:
        queue = Queue("broker-down-tap", exchange=broker.events_exchange, routing_key="dossier.#",
                      durable=True)(connection.default_channel)

        def drained():
            while (message := queue.get(no_ack=True)) is not None:
                got.append(message.decode())
            return {event["id"] for event in got} >= {event_id for event_id, _ in waiting}

        wait_for(drained, timeout=30)
    assert desk.process.poll() is None
    wait_for(lambda: requests.get(desk.url + "/health", timeout=5).status_code == 200, timeout=60)
