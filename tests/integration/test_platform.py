"""The mechanisms of every service, against real PostgreSQL and RabbitMQ (foundation §2)."""
import json
import time
import uuid

import eventlet
import pytest
import requests
from kombu import Producer
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_waiter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from motcua.runtime import broker
from motcua.contracts.codes import next_dossier_code, parse_dossier_code
from motcua.contracts.events import new_event
from tests.conftest import dead_letters
from tests.integration import platform_service as ps


@pytest.fixture
def container(container_factory, service_config, platform_schema):
    container = container_factory(ps.PlatformTestService, service_config)
    container.start()
    return container


def publish_raw(amqp_uri, body, routing_key, content_type="application/json"):
    with broker.confirmed_connection(amqp_uri) as connection:
        channel = connection.default_channel
        broker.declare_topology(channel)
        Producer(channel, exchange=broker.events_exchange).publish(
            body, routing_key=routing_key, content_type=content_type, content_encoding="utf-8")


def count(engine, note):
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(ps.effects)
                                  .where(ps.effects.c.note == note)).scalar_one()


# --- the outbox ----------------------------------------------------------------------------

def test_event_of_a_rolled_back_transaction_is_never_published(container, service_config, event_tap, engine):
    tap = event_tap("test.noted")
    with ServiceRpcProxy("platform_test", service_config) as proxy:
        with pytest.raises(Exception, match="rolled back on purpose"):
            proxy.note("ghost", fail=True)
        proxy.note("real")  # the control: a committed change is published
    published = tap.drain(expect=1, settle=1.5)
    assert [message["payload"]["note"] for message in published] == ["real"]
    assert count(engine, "ghost") == 0
    with engine.connect() as connection:
        rows = connection.execute(select(ps.outbox.c.envelope["payload"]["note"].astext, ps.outbox.c.published_at)
                                  .where(ps.outbox.c.envelope["payload"]["note"].astext.in_(["ghost", "real"]))).all()
    assert [(note, published_at is not None) for note, published_at in rows] == [("real", True)]


def test_relay_publishes_rows_left_behind_by_a_crash(container, platform_schema, event_tap):
    """A row committed but never published (the process died before the relay ran) goes out."""
    tap = event_tap("test.noted")
    event = new_event("test.noted", {"note": "left-behind"}, ps.UNIT)
    with Session(platform_schema) as session, session.begin():
        session.execute(ps.outbox.insert().values(id=uuid.UUID(event.id), type=event.type,
                                                  envelope=event.to_dict()))
    published = tap.drain(expect=1)
    assert [message["id"] for message in published] == [event.id]
    assert published[0]["correlation_id"] == event.correlation_id


def test_a_backlog_goes_out_in_batches_in_order_each_once(container, platform_schema, event_tap):
    """450 rows left behind: the relay publishes them in batches (one wait for the broker's
    confirms per batch), in the order they were written, each once, and marks every one sent."""
    tap = event_tap("test.noted")
    events = [new_event("test.noted", {"note": f"backlog-{n}"}, ps.UNIT) for n in range(450)]
    with Session(platform_schema) as session, session.begin():
        session.execute(ps.outbox.insert(), [{"id": uuid.UUID(e.id), "type": e.type, "envelope": e.to_dict()}
                                             for e in events])
    published = tap.drain(expect=450, timeout=20)
    assert [m["id"] for m in published if m["payload"]["note"].startswith("backlog-")] == [e.id for e in events]
    with platform_schema.connect() as connection:
        unsent = connection.execute(select(func.count()).select_from(ps.outbox).where(
            ps.outbox.c.id.in_([uuid.UUID(e.id) for e in events]), ps.outbox.c.published_at.is_(None))).scalar_one()
    assert unsent == 0


def test_published_envelope_carries_the_callers_correlation_id(container, service_config, event_tap):
    tap = event_tap("test.noted")
    with ServiceRpcProxy("platform_test", service_config,
                         context_data={"correlation_id": "corr-42"}) as proxy:
        proxy.note("correlated")
    (message,) = tap.drain(expect=1)
    assert message["correlation_id"] == "corr-42"
    assert message["type"] == "test.noted" and message["unit"] == ps.UNIT


# --- consuming -----------------------------------------------------------------------------

def test_an_event_delivered_twice_has_one_effect(container, service_config, engine):
    event = new_event("test.noted", {"note": "twice"}, ps.UNIT)
    for _ in range(2):
        with entrypoint_waiter(container, "on_noted"):
            publish_raw(service_config["AMQP_URI"], event.to_json(), "test.noted")
    assert count(engine, "handled:twice") == 1


def test_concurrent_duplicates_have_one_effect(container, service_config, engine):
    from motcua.runtime.inbox import CONSUMED
    handled = CONSUMED.labels("platform_test", "test.noted", "handled")
    before = handled._value.get()
    event = new_event("test.noted", {"note": "burst"}, ps.UNIT)
    for _ in range(5):
        publish_raw(service_config["AMQP_URI"], event.to_json(), "test.noted")
    other = new_event("test.noted", {"note": "after-burst"}, ps.UNIT)
    with entrypoint_waiter(container, "on_noted", callback=lambda worker_ctx, result, exc_info:
                           any(e.id == other.id for e in worker_ctx.args[0]), timeout=10):
        publish_raw(service_config["AMQP_URI"], other.to_json(), "test.noted")
    # Every one of the six deliveries committed (a duplicate racing the first is retried, then
    # handled as a duplicate): then, and not after a pause, the effect is counted.
    deadline = time.monotonic() + 10
    while handled._value.get() < before + 6 and time.monotonic() < deadline:
        eventlet.sleep(0.02)
    assert handled._value.get() - before >= 6
    assert count(engine, "handled:burst") == 1


@pytest.mark.parametrize("body, content_type, reason", [
    ("{not json", "application/json", "undecodable"),
    ("plain words", "text/plain", "undecodable"),
    (json.dumps({"type": "test.noted"}), "application/json", "id: is required"),
    (json.dumps({**json.loads(new_event("test.noted", {"note": "x"}, ps.UNIT).to_json()),
                 "payload": {"note": 5}}), "application/json", "payload.note: must be a non-empty string"),
    (json.dumps({**json.loads(new_event("test.noted", {"note": "x"}, ps.UNIT).to_json()),
                 "unit": "ward 7"}), "application/json", "unit: must be a unit code"),
])
def test_malformed_event_is_dead_lettered_and_the_consumer_goes_on(container, service_config, engine, body,
                                                                    content_type, reason):
    publish_raw(service_config["AMQP_URI"], body, "test.noted", content_type=content_type)
    (dead,) = dead_letters(service_config["AMQP_URI"])
    assert reason in dead.headers["x-dead-letter-reason"]
    assert dead.headers["x-dead-letter-service"] == "platform_test"
    assert dead.body == body.encode()
    # The consumer is still there: a good event after the bad one is handled.
    note = f"after-bad-{uuid.uuid4()}"
    good = new_event("test.noted", {"note": note}, ps.UNIT)
    with entrypoint_waiter(container, "on_noted"):
        publish_raw(service_config["AMQP_URI"], good.to_json(), "test.noted")
    assert count(engine, "handled:" + note) == 1


def test_a_failing_handler_dead_letters_the_event_with_the_reason(container, service_config):
    event = new_event("test.explode", {"note": "boom"}, ps.UNIT)
    publish_raw(service_config["AMQP_URI"], event.to_json(), "test.explode")
    (dead,) = dead_letters(service_config["AMQP_URI"])
    assert dead.headers["x-dead-letter-category"] == "handler_error"
    assert "KeyError" in dead.headers["x-dead-letter-reason"]
    assert json.loads(dead.body)["id"] == event.id


# --- dossier codes -------------------------------------------------------------------------

def test_fifty_concurrent_code_requests_get_fifty_consecutive_numbers(platform_schema):
    from datetime import date
    day, unit = date(2026, 3, 2), "000.05.20.H29"

    def allocate(_):
        with Session(platform_schema) as session, session.begin():
            code = next_dossier_code(session, ps.counters, unit, day)
            eventlet.sleep(0.01)  # hold the transaction open so that the callers really overlap
            return code

    pool = eventlet.GreenPool(50)
    codes = list(pool.imap(allocate, range(50)))
    numbers = sorted(parse_dossier_code(code).seq for code in codes)
    assert numbers == list(range(1, 51))
    assert all(code.startswith(f"{unit}-260302-") for code in codes)


def test_a_rolled_back_code_is_given_again(platform_schema):
    from datetime import date
    day, unit = date(2026, 3, 3), "000.06.20.H29"
    with Session(platform_schema) as session, session.begin():
        assert next_dossier_code(session, ps.counters, unit, day).endswith("-0001")
    with Session(platform_schema) as session:
        with session.begin():
            assert next_dossier_code(session, ps.counters, unit, day).endswith("-0002")
            session.rollback()
    with Session(platform_schema) as session, session.begin():
        assert next_dossier_code(session, ps.counters, unit, day).endswith("-0002")
        # another unit and another day count on their own
        assert next_dossier_code(session, ps.counters, "000.07.20.H29", day).endswith("-0001")
        assert next_dossier_code(session, ps.counters, unit, date(2026, 3, 4)).endswith("-0001")


# --- metrics, health, correlation ----------------------------------------------------------

def test_metrics_time_every_entrypoint_and_health_checks_both_sides(container, service_config):
    base = "http://" + service_config["WEB_SERVER_ADDRESS"]
    with ServiceRpcProxy("platform_test", service_config) as proxy:
        proxy.note("measured")
        with pytest.raises(Exception):
            proxy.note("measured-fail", fail=True)
    metrics = requests.get(base + "/metrics", timeout=5).text
    assert 'motcua_entrypoint_duration_seconds_count{entrypoint="note",kind="rpc",service="platform_test"}' in metrics
    assert 'motcua_entrypoint_calls_total{entrypoint="note",kind="rpc",outcome="error",service="platform_test"}' in metrics
    assert "motcua_outbox_pending" in metrics
    health = requests.get(base + "/health", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "service": "platform_test", "database": "ok", "broker": "ok"}


def test_health_reports_an_unreachable_broker(container_factory, service_config, platform_schema):
    config = {**service_config}
    container = container_factory(ps.PlatformTestService, config)
    container.start()
    # Point the health check at a port where no broker listens (the container keeps its own connection).
    container.config["AMQP_URI"] = "amqp://guest:guest@127.0.0.1:1//"
    health = requests.get("http://" + config["WEB_SERVER_ADDRESS"] + "/health", timeout=15)
    assert health.status_code == 503
    assert health.json()["broker"].startswith("error")
    assert health.json()["database"] == "ok"
