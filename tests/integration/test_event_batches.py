"""Events in batches (motcua.runtime.inbox.EventConsumer), against real PostgreSQL and RabbitMQ:
what waits on a queue is handled together in one transaction, a single event goes at once, a
poison message is dead-lettered alone, and a batch redelivered after a crash changes nothing."""
import json
import time
import uuid

import eventlet
import pytest
from kombu import Queue
from sqlalchemy import func, select

from motcua.contracts.events import new_event
from motcua.runtime import broker, inbox
from tests.conftest import dead_letters
from tests.integration import platform_service as ps
from tests.integration.test_platform import publish_raw


@pytest.fixture
def batches():
    ps.BATCHES.clear()
    ps.ATTEMPTS.clear()
    return ps.BATCHES


def declare_queue(amqp_uri):
    """The consumer's own queue, declared as it declares it, so that events wait on it before it starts."""
    with broker.confirmed_connection(amqp_uri) as connection:
        channel = connection.default_channel
        broker.declare_topology(channel)
        Queue("platform_test.on_noted", exchange=broker.events_exchange, routing_key="test.noted",
              durable=True)(channel).declare()


def notes(engine, prefix):
    with engine.connect() as connection:
        rows = connection.execute(select(ps.effects.c.note, func.count()).where(
            ps.effects.c.note.like(f"handled:{prefix}%")).group_by(ps.effects.c.note)).all()
    return dict(rows)


def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        eventlet.sleep(0.05)
    return predicate()


def only_the_marker_is_dead_lettered(amqp_uri):
    """Nothing more was dead-lettered: a poison marker published now reaches the dead-letter queue
    first (its queue hands it over after everything before it), instead of waiting a while for
    nothing to come."""
    marker = new_event("test.noted", {"note": f"poison-marker-{uuid.uuid4()}"}, ps.UNIT)
    publish_raw(amqp_uri, marker.to_json(), "test.noted")
    dead = dead_letters(amqp_uri, timeout=15)
    assert [json.loads(d.body)["id"] for d in dead] == [marker.id], [d.headers.get("x-dead-letter-reason")
                                                                      for d in dead]


def duplicates_recognised():
    return inbox.DUPLICATES.labels("platform_test", "test.noted")._value.get()


def test_a_single_event_at_low_load_goes_at_once_alone(container_factory, service_config, platform_schema,
                                                       batches):
    container = container_factory(ps.PlatformTestService, service_config)
    container.start()
    note = f"alone-{uuid.uuid4()}"
    publish_raw(service_config["AMQP_URI"], new_event("test.noted", {"note": note}, ps.UNIT).to_json(), "test.noted")
    assert wait_until(lambda: notes(platform_schema, note) == {f"handled:{note}": 1})
    # Alone in its batch: no waiting for a batch to fill (how fast: bench/timings.py single_event).
    assert batches == [1]


def test_what_waits_on_the_queue_is_handled_in_batches_each_once(container_factory, service_config,
                                                                 platform_schema, batches):
    declare_queue(service_config["AMQP_URI"])
    run = uuid.uuid4().hex[:8]
    for n in range(120):
        publish_raw(service_config["AMQP_URI"],
                    new_event("test.noted", {"note": f"backlog-{run}-{n:03}"}, ps.UNIT).to_json(), "test.noted")
    container = container_factory(ps.PlatformTestService, {**service_config, "EVENT_BATCH_SIZE": 50})
    container.start()
    assert wait_until(lambda: len(notes(platform_schema, f"backlog-{run}")) == 120)
    assert set(notes(platform_schema, f"backlog-{run}").values()) == {1}
    assert sum(batches) == 120
    assert max(batches) > 1 and max(batches) <= 50, batches
    assert len(batches) < 120 / 2


def test_a_poison_message_in_a_batch_is_dead_lettered_alone(container_factory, service_config, platform_schema,
                                                            batches):
    declare_queue(service_config["AMQP_URI"])
    run = uuid.uuid4().hex[:8]
    events = [new_event("test.noted", {"note": f"mix-{run}-{n:02}"}, ps.UNIT) for n in range(30)]
    poison = new_event("test.noted", {"note": f"poison-{run}"}, ps.UNIT)
    events.insert(15, poison)
    for event in events:
        publish_raw(service_config["AMQP_URI"], event.to_json(), "test.noted")
    container = container_factory(ps.PlatformTestService, service_config)
    container.start()

    (dead,) = dead_letters(service_config["AMQP_URI"], timeout=15)
    assert json.loads(dead.body)["id"] == poison.id
    assert dead.headers["x-dead-letter-category"] == "handler_error"
    assert f"poison-{run}" in dead.headers["x-dead-letter-reason"]
    assert wait_until(lambda: len(notes(platform_schema, f"mix-{run}")) == 30)
    assert set(notes(platform_schema, f"mix-{run}").values()) == {1}
    assert notes(platform_schema, "poison") == {}
    # The poison came in a batch with others; that batch rolled back, then each of it went alone.
    (with_poison,) = [notes_ for notes_ in ps.ATTEMPTS if f"poison-{run}" in notes_ and len(notes_) > 1]
    alone = [notes_[0] for notes_ in ps.ATTEMPTS if len(notes_) == 1]
    assert set(with_poison) <= set(alone)
    assert sum(batches) == 30
    only_the_marker_is_dead_lettered(service_config["AMQP_URI"])


def test_an_event_that_must_wait_is_held_alone_and_the_rest_of_its_batch_goes_on(
        container_factory, service_config, platform_schema, batches):
    declare_queue(service_config["AMQP_URI"])
    run = uuid.uuid4().hex[:8]
    with platform_schema.begin() as connection:
        connection.execute(ps.effects.delete().where(ps.effects.c.note == "handled:ready"))
    events = [new_event("test.noted", {"note": f"wait-{run}-{n:02}"}, ps.UNIT) for n in range(10)]
    later = new_event("test.noted", {"note": f"later-{run}"}, ps.UNIT)
    events.insert(5, later)
    for event in events:
        publish_raw(service_config["AMQP_URI"], event.to_json(), "test.noted")
    container = container_factory(ps.PlatformTestService, {**service_config, "EVENT_WAIT_SECONDS": 20})
    container.start()
    assert wait_until(lambda: len(notes(platform_schema, f"wait-{run}")) == 10)
    assert notes(platform_schema, f"later-{run}") == {}
    (with_later,) = [notes_ for notes_ in ps.ATTEMPTS if f"later-{run}" in notes_ and len(notes_) > 1]
    # The rest of its batch went again together, not one by one.
    assert sorted(n for n in with_later if n != f"later-{run}") in [sorted(a) for a in ps.ATTEMPTS]
    assert not any(len(a) == 1 and a[0] in with_later and a[0] != f"later-{run}" for a in ps.ATTEMPTS)
    publish_raw(service_config["AMQP_URI"], new_event("test.noted", {"note": "ready"}, ps.UNIT).to_json(),
                "test.noted")
    assert wait_until(lambda: notes(platform_schema, f"later-{run}") == {f"handled:later-{run}": 1})
    assert [f"later-{run}"] in ps.ATTEMPTS                 # held, then tried alone
    assert set(notes(platform_schema, f"wait-{run}").values()) == {1}
    only_the_marker_is_dead_lettered(service_config["AMQP_URI"])


def test_a_batch_redelivered_after_a_crash_between_commit_and_acknowledgement_changes_nothing(
        container_factory, service_config, platform_schema, batches, monkeypatch):
    declare_queue(service_config["AMQP_URI"])
    run = uuid.uuid4().hex[:8]
    for n in range(40):
        publish_raw(service_config["AMQP_URI"],
                    new_event("test.noted", {"note": f"crash-{run}-{n:02}"}, ps.UNIT).to_json(), "test.noted")

    # The first process commits its batches but dies before any acknowledgement reaches the broker.
    monkeypatch.setattr(inbox.EventQueueConsumer, "ack_message", lambda self, message: None)
    first = container_factory(ps.PlatformTestService, service_config)
    first.start()
    assert wait_until(lambda: len(notes(platform_schema, f"crash-{run}")) == 40)
    committed = list(batches)
    assert max(committed) > 1
    first.kill()                       # its connection goes: the broker gives the 40 messages back
    monkeypatch.undo()

    before = duplicates_recognised()
    second = container_factory(ps.PlatformTestService, service_config)
    second.start()
    assert wait_until(lambda: duplicates_recognised() - before == 40), duplicates_recognised() - before
    assert set(notes(platform_schema, f"crash-{run}").values()) == {1}
    assert len(notes(platform_schema, f"crash-{run}")) == 40
    only_the_marker_is_dead_lettered(service_config["AMQP_URI"])
