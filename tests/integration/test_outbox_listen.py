"""The outbox relay woken by other writers' commits (LISTEN/NOTIFY), against real PostgreSQL and
RabbitMQ: a command-line tool's rows go out at once although the poll is 30 s away, the LISTEN
connection comes back after it is killed, and nothing goes out twice: not a relay's own commits
(never announced), not announced rows with two replicas listening."""
import time
import uuid
from collections import Counter

import eventlet
import psycopg2
import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from motcua.contracts.events import new_event
from motcua.runtime import outbox
from motcua.runtime.db import libpq_dsn, make_engine
from motcua.runtime.outbox import GRACE_SECONDS, notify_channel
from tests.integration import platform_service as ps

LISTENER = "platform_test-outbox-listen"      # the LISTEN connection's application_name


@pytest.fixture
def slow_poll_config(service_config):
    """The poll 30 s away: only a notification (or the relay's own commits) can publish in time."""
    return {**service_config, "OUTBOX_POLL_SECONDS": 30}


@pytest.fixture
def cli_engine(database_url):
    """Another engine, as a command-line tool has: no relay in its "process"."""
    engine = make_engine(database_url, pool_size=1)
    yield engine
    engine.dispose()


def listeners(engine) -> list[int]:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = :name "
            "AND query LIKE 'LISTEN %' ORDER BY pid"), {"name": LISTENER}).scalars().all()


def wait_for_listeners(engine, count: int, timeout: float = 10.0, other_than=()) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [pid for pid in listeners(engine) if pid not in other_than]
        if len(pids) == count:
            return pids
        eventlet.sleep(0.05)
    raise AssertionError(f"{count} LISTEN connection(s) expected, found {listeners(engine)}")


def start(container_factory, config, replicas: int = 1):
    containers = [container_factory(ps.PlatformTestService, config) for _ in range(replicas)]
    for container in containers:
        container.start()
    return containers


def write_as_cli(engine, notes: list[str]) -> list[str]:
    """What ``motcua catalog load`` does: ``outbox.add`` in a transaction of its own engine."""
    events = [new_event("test.noted", {"note": note}, ps.UNIT) for note in notes]
    with Session(engine) as session, session.begin():
        for event in events:
            outbox.add(session, ps.outbox, event)
    return [event.id for event in events]


def write_as_sql(database_url, note: str, notify: str | None) -> str:
    """A plain SQL transaction (psql, another language's tool): the row, then ``notify``."""
    event = new_event("test.noted", {"note": note}, ps.UNIT)
    connection = psycopg2.connect(libpq_dsn(database_url))
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("INSERT INTO platform_test.outbox (id, type, envelope) VALUES (%s, %s, %s::jsonb)",
                           (event.id, event.type, event.to_json()))
            if notify is not None:
                cursor.execute(notify)
    finally:
        connection.close()
    return event.id


def unpublished(engine, ids) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(ps.outbox).where(
            ps.outbox.c.id.in_([uuid.UUID(i) for i in ids]), ps.outbox.c.published_at.is_(None))).scalar_one()


def test_a_command_line_tools_rows_go_out_at_once_not_after_the_grace(
        container_factory, slow_poll_config, platform_schema, cli_engine, database_url, event_tap):
    start(container_factory, slow_poll_config)
    wait_for_listeners(platform_schema, 1)
    tap = event_tap("test.noted")
    ids = write_as_cli(cli_engine, ["cli-1", "cli-2", "cli-3"])
    # Within the grace (the drain stops there), with the poll 30 s away: only the notification
    # can have published them.
    got = tap.drain(expect=3, timeout=GRACE_SECONDS, settle=0.3)
    assert [m["id"] for m in got] == ids                         # in order, each once
    # Plain SQL announcing its transaction as the module's docstring says.
    sql_id = write_as_sql(database_url, "sql-1", "SELECT pg_notify('motcua_outbox_platform_test', "
                                                  "(txid_current() % 4294967296)::text)")
    got = tap.drain(expect=1, timeout=GRACE_SECONDS, settle=0.3)
    assert [m["id"] for m in got] == [sql_id]
    assert unpublished(platform_schema, ids + [sql_id]) == 0    # marked in the read's transaction


def test_the_listen_connection_killed_comes_back_and_works(
        container_factory, slow_poll_config, platform_schema, cli_engine, event_tap):
    start(container_factory, slow_poll_config)
    [pid] = wait_for_listeners(platform_schema, 1)
    with platform_schema.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    wait_for_listeners(platform_schema, 1, other_than={pid})
    tap = event_tap("test.noted")
    ids = write_as_cli(cli_engine, ["after-kill"])
    assert [m["id"] for m in tap.drain(expect=1, timeout=GRACE_SECONDS, settle=0.3)] == ids


def test_a_relays_own_commits_are_not_announced_and_go_out_once(
        container_factory, slow_poll_config, platform_schema, database_url, event_tap):
    """The normal path: the service's commits are published from memory, once, and no
    notification is sent (another replica woken by one could only publish the rows again)."""
    start(container_factory, slow_poll_config)
    wait_for_listeners(platform_schema, 1)
    tap = event_tap("test.noted")
    spy = psycopg2.connect(libpq_dsn(database_url))
    spy.autocommit = True
    try:
        spy.cursor().execute(f'LISTEN "{notify_channel(ps.outbox)}"')
        with ClusterRpcProxy(slow_poll_config) as cluster:
            for n in range(20):
                cluster.platform_test.note(f"own-{n}")
        got = tap.drain(expect=20, timeout=10, settle=1.5)
        spy.poll()
        assert spy.notifies == []
    finally:
        spy.close()
    counts = Counter(m["payload"]["note"] for m in got)
    assert counts == {f"own-{n}": 1 for n in range(20)}


def test_two_replicas_listening_publish_each_announced_row_once(
        container_factory, slow_poll_config, platform_schema, cli_engine, event_tap):
    start(container_factory, slow_poll_config, replicas=2)
    wait_for_listeners(platform_schema, 2)
    tap = event_tap("test.noted")
    batches = [write_as_cli(cli_engine, [f"two-{batch}-{n}" for n in range(10)]) for batch in range(10)]
    ids = [i for batch in batches for i in batch]
    with ClusterRpcProxy(slow_poll_config) as cluster:      # and the replicas' own commits meanwhile
        for n in range(10):
            cluster.platform_test.note(f"replica-{n}")
    got = tap.drain(expect=110, timeout=GRACE_SECONDS * 2, settle=1.5)
    counts = Counter(m["id"] for m in got)
    assert len(counts) == 110 and set(counts.values()) == {1}
    order = [m["id"] for m in got]
    for batch in batches:                               # a transaction's rows in the order written
        assert sorted(batch, key=order.index) == batch
    assert unpublished(platform_schema, ids) == 0


def test_a_round_the_broker_refuses_half_way_marks_what_it_confirmed_and_sends_the_rest_later(
        container_factory, service_config, platform_schema, cli_engine, event_tap, rabbit_config):
    """A queue that takes two messages and refuses more (``reject-publish``): the broker confirms
    the first two of the round and nacks the rest. The two are marked and never sent again; the
    rest stay pending and go out, in order, once the queue is gone."""
    from kombu import Connection, Queue
    from motcua.runtime import broker
    start(container_factory, service_config)
    wait_for_listeners(platform_schema, 1)
    tap = event_tap("test.noted")
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        limited = Queue("limited", exchange=broker.events_exchange, routing_key="test.noted", durable=True,
                        queue_arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
        limited(connection.default_channel).declare()
        ids = write_as_cli(cli_engine, [f"limited-{n}" for n in range(5)])
        deadline = time.monotonic() + 10
        while unpublished(platform_schema, ids[:2]) and time.monotonic() < deadline:
            eventlet.sleep(0.05)
        assert unpublished(platform_schema, ids[:2]) == 0
        # The marker of "refused again, and the two not sent again": the tap (which the exchange
        # feeds whatever the limited queue does) has had the third row of two more rounds.
        got = []
        while sum(m["id"] == ids[2] for m in got) < 3 and time.monotonic() < deadline + 10:
            got += tap.drain(settle=0)
            eventlet.sleep(0.05)
        assert sum(m["id"] == ids[2] for m in got) >= 3
        assert unpublished(platform_schema, ids[2:]) == 3
        limited(connection.default_channel).delete()
    while unpublished(platform_schema, ids) and time.monotonic() < deadline + 30:
        eventlet.sleep(0.05)
    got += tap.drain(settle=0.3)              # a row is marked once confirmed: its copy is in the tap
    counts = Counter(m["id"] for m in got)
    assert [counts[i] for i in ids[:2]] == [1, 1]               # confirmed once: not sent again
    assert all(counts[i] >= 1 for i in ids[2:])                 # the tap had them at each refusal too
    assert unpublished(platform_schema, ids) == 0
    last = {m["id"]: n for n, m in enumerate(got)}
    assert sorted(ids[2:], key=last.get) == ids[2:]             # the last copies in order


def test_a_notified_transactions_rows_are_taken_whole_by_one_relay(platform_schema, cli_engine, rabbit_config):
    """Two replicas notified of the same transaction: the first to claim its id takes all its
    rows; the second, reading while the first still holds them, gets none of them (with row
    locks alone it could skip the first row and take the rest, out of order)."""
    from motcua.runtime.outbox import Relay
    write_as_cli(cli_engine, ["whole-1", "whole-2", "whole-3"])
    with platform_schema.connect() as connection:
        [xid] = connection.execute(text(
            "SELECT DISTINCT xmin::text FROM platform_test.outbox WHERE published_at IS NULL")).scalars().all()
    first, second = (Relay(platform_schema, ps.outbox, rabbit_config["AMQP_URI"], "platform_test")
                     for _ in range(2))
    with Session(platform_schema) as holding, holding.begin():
        assert first._claim(holding, [xid, "12345"]) == [xid, "12345"]
        assert second.publish_batch(xids=[xid]) == []            # claimed: none of its rows
        assert unpublished_count(platform_schema) == 3
    assert len(second.publish_batch(xids=[xid])) == 3              # released at the end of that transaction
    assert unpublished_count(platform_schema) == 0


def unpublished_count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(ps.outbox)
                                  .where(ps.outbox.c.published_at.is_(None))).scalar_one()
