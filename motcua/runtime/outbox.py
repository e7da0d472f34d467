"""The transactional outbox: an event is a row written in the same transaction as the change.

nameko's own dispatcher publishes at once, outside any transaction, so a rollback could
leave an event for a change that never happened (or a crash lose one). Here the row commits
with the change or not at all; a relay then publishes it with publisher confirms and marks
it sent. A crash between publishing and marking publishes it again: consumers are
idempotent (``motcua.runtime.inbox``), so at-least-once is enough.
"""
from __future__ import annotations

import time
import uuid
from collections import deque
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import eventlet
from eventlet.event import Event
import structlog
from kombu import Connection, Producer
from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Gauge
from sqlalchemy import event as sa_event
from sqlalchemy import (BigInteger, Column, DateTime, Identity, Index, Integer, MetaData, Table, Text,
                        func, select, update)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from motcua.runtime import broker
from motcua.runtime.db import Database, autocommit
from motcua.contracts.events import Envelope, validate

log = structlog.get_logger("motcua.runtime.outbox")

PUBLISHED = Counter("motcua_outbox_published_total", "Events the outbox relay published.",
                    ["service"])
PUBLISH_FAILURES = Counter("motcua_outbox_publish_failures_total",
                           "Relay rounds that failed to publish (broker or database down).", ["service"])
PENDING = Gauge("motcua_outbox_pending", "Events written but not yet published (read from the database, "
                "the same on every replica: aggregate with max).", ["service"])
OLDEST_AGE = Gauge("motcua_outbox_oldest_pending_age_seconds",
                   "Age of the oldest unpublished event (0 when none).", ["service"])


def outbox_table(metadata: MetaData) -> Table:
    table = Table(
        "outbox", metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("seq", BigInteger, Identity(), nullable=False, unique=True),
        Column("type", Text, nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default="0"),
    )
    Index("ix_outbox_pending", table.c.seq, postgresql_where=table.c.published_at.is_(None))
    return table


@lru_cache(maxsize=None)
def _insert_statement(table: Table):
    # Built once per table: SQLAlchemy then also keeps its cache key (computed per event otherwise).
    return table.insert()


_PENDING = "outbox_pending"    # session.info key: {table: rows added, inserted at commit}
_COMMITTED = "outbox_rows"     # session.info key: {table name: rows inserted in the transaction}
GRACE_SECONDS = 3.0            # a poll leaves younger rows to the process that wrote them


def add(session: Session, table: Table, envelope: Envelope) -> None:
    """Write an event in the caller's transaction. The rows a transaction adds go in with one
    INSERT when it commits (``_insert_pending``), and stay remembered on the session, so that
    once it has committed the service's relay publishes them from memory
    (``OutboxRelay.committed``) instead of reading them back."""
    validate(envelope)
    if session.in_nested_transaction():
        # A savepoint could roll back a row that the session would still insert and publish.
        raise RuntimeError("an outbox row is written in the transaction itself, not in a savepoint")
    row = {"id": uuid.UUID(envelope.id), "type": envelope.type, "envelope": envelope.to_dict()}
    session.info.setdefault(_PENDING, {}).setdefault(table, []).append(row)
    session.info["wake_outbox"] = True


@sa_event.listens_for(Session, "before_commit")
def _insert_pending(session: Session) -> None:
    """The transaction's outbox rows, one INSERT … VALUES per table, in the order they were added."""
    if session.in_nested_transaction():
        return
    for table, rows in session.info.pop(_PENDING, {}).items():
        session.execute(_insert_statement(table), rows)
        session.info.setdefault(_COMMITTED, {}).setdefault(table.fullname, []).extend(rows)


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_pending(session: Session, previous_transaction) -> None:
    if not previous_transaction.nested:        # the transaction's rows are gone with it
        session.info.pop(_PENDING, None)
        session.info.pop(_COMMITTED, None)


class Relay:
    """Publishes pending outbox rows in order, with confirms; safe with several replicas."""

    def __init__(self, engine: Engine, table: Table, amqp_uri: str, service: str, batch: int = 200,
                 confirm_timeout: float = 30.0):
        self.engine, self.table, self.service, self.batch = engine, table, service, batch
        # Confirms are handled here, a whole batch at a time (``_wait_for_confirms``): not kombu's
        # ``confirm_publish``, which waits for each message before sending the next.
        self.connection = Connection(amqp_uri, connect_timeout=5)
        self.confirm_timeout = confirm_timeout
        self._declared = False
        self._channel = None
        self._sent = 0            # messages published on the channel since confirm.select: the last tag
        self._acked = 0           # every tag up to this one is confirmed
        self._nacked: list[int] = []
        self._pending_single: set[int] = set()   # confirmed tags above an unconfirmed one

    def _producer(self) -> Producer:
        channel = self.connection.default_channel
        if channel is not self._channel:
            # A new channel (first use, or kombu reconnected): put it in confirm mode, count from 1.
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._channel, self._sent, self._acked, self._nacked = channel, 0, 0, []
            self._pending_single = set()
        if not self._declared:
            broker.declare_topology(channel)
            self._declared = True
        return Producer(channel, exchange=broker.events_exchange)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        # The broker may confirm several at once (multiple) and in any order: track the highest
        # tag below which everything is confirmed only when acks are cumulative.
        if multiple or delivery_tag == self._acked + 1:
            self._acked = max(self._acked, delivery_tag)
        else:
            self._pending_single.add(delivery_tag)
        while self._acked + 1 in self._pending_single:
            self._acked += 1
            self._pending_single.discard(self._acked)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked.append(delivery_tag)
        self._on_ack(delivery_tag, multiple)

    def _wait_for_confirms(self) -> None:
        """Until the broker has confirmed every message published so far (persisted and routed)."""
        deadline = time.monotonic() + self.confirm_timeout
        while self._acked < self._sent:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the broker confirmed {self._acked} of {self._sent} messages in time")
            self.connection.drain_events(timeout=left)
        if self._nacked:
            nacked, self._nacked = self._nacked, []
            raise RuntimeError(f"the broker refused (nack) deliveries {nacked[:5]}: the batch is kept")

    def _publish(self, rows) -> None:
        """The whole batch goes out, then one wait for the broker's confirms: a round trip per
        batch, not per message. A nack, a timeout or a lost connection raises: nothing is marked
        and the rows go out again (consumers dedupe)."""
        producer = self._producer()
        for row in rows:
            producer.publish(
                row["envelope"], routing_key=row["type"], serializer="json", delivery_mode=2,
                message_id=str(row["id"]), content_encoding="utf-8",
                headers={"nameko.correlation_id": row["envelope"].get("correlation_id", "")},
                retry=False,
            )
            self._sent += 1
        self._wait_for_confirms()

    def publish_batch(self, older_than: float | None = None) -> list:
        """Publish one batch of what the table holds, in order; returns the ids published.
        ``older_than`` (seconds) leaves younger rows to the process that wrote them."""
        t = self.table
        pending = t.c.published_at.is_(None)
        if older_than is not None:
            pending = pending & (t.c.created_at < func.now() - timedelta(seconds=older_than))
        with Session(self.engine) as session, session.begin():
            # SKIP LOCKED: another replica's relay takes the rows this one holds.
            rows = session.execute(
                select(t.c.id, t.c.type, t.c.envelope).where(pending)
                .order_by(t.c.seq).limit(self.batch).with_for_update(skip_locked=True)
            ).mappings().all()
            if not rows:
                return []
            self._publish(rows)
            ids = [r["id"] for r in rows]
            session.execute(update(t).where(t.c.id.in_(ids))
                            .values(published_at=func.now(), attempts=t.c.attempts + 1))
        PUBLISHED.labels(self.service).inc(len(rows))
        return ids

    def publish_committed(self, rows: list[dict]) -> list:
        """Rows this process's transactions have just committed, published from memory in commit
        order: no read, no lock (the others' polls leave rows this young alone). Returns their
        ids, for ``mark``."""
        self._publish(rows)
        PUBLISHED.labels(self.service).inc(len(rows))
        return [r["id"] for r in rows]

    def mark(self, ids: list) -> None:
        """Published rows marked so, in one statement outside any transaction."""
        t = self.table
        with autocommit(self.engine) as connection:
            connection.execute(update(t).where(t.c.id.in_(ids), t.c.published_at.is_(None))
                               .values(published_at=func.now(), attempts=t.c.attempts + 1))

    def measure(self) -> int:
        """The gauges, and how many rows older than the grace wait (left by a crash, a broker
        outage or another replica): one statement, outside any transaction."""
        t = self.table
        with autocommit(self.engine) as connection:
            count, oldest, old = connection.execute(
                select(func.count(), func.min(t.c.created_at),
                       func.count().filter(t.c.created_at < func.now() - timedelta(seconds=GRACE_SECONDS)))
                .where(t.c.published_at.is_(None))).one()
        PENDING.labels(self.service).set(count)
        age = (datetime.now(timezone.utc) - oldest).total_seconds() if oldest else 0.0
        OLDEST_AGE.labels(self.service).set(max(age, 0.0))
        return old

    def close(self) -> None:
        self.connection.release()


class OutboxRelay(DependencyProvider):
    """nameko dependency: injects the outbox table's ``add`` and runs the relay loop.

    Normally the rows a transaction of this process wrote are published from memory as soon as
    it commits (in commit order), and marked in one statement for all that went out within
    ``OUTBOX_MARK_SECONDS`` (default 1; a crash before the mark publishes them again). The table
    is read only when memory cannot be trusted: at start, after a failed round (broker or database down: everything
    pending goes out in order, in locking rounds, before memory is used again), and on each
    ``OUTBOX_POLL_SECONDS`` (default 1) without a commit, when rows older than the grace wait
    (another replica died, a command-line tool wrote them).
    """

    MEASURE_SECONDS = 5.0     # the gauges' refresh while busy (idle, each poll refreshes them)

    def __init__(self, table: Table):
        self.table = table

    def setup(self) -> None:
        config = self.container.config
        self.poll_seconds = float(config.get("OUTBOX_POLL_SECONDS", 1.0))
        self.mark_seconds = float(config.get("OUTBOX_MARK_SECONDS", 1.0))
        self.unmarked: list = []                # published from memory, not yet marked
        self.unmarked_since: float | None = None
        self.wakeup = Event()
        self.running = False
        self.engine = None
        self.queue: deque[dict] = deque()      # rows committed by this process, not yet published
        for dependency in self.container.dependencies:
            if isinstance(dependency, Database):
                dependency.after_commit.append(self.committed)

    def start(self) -> None:
        database = next(d for d in self.container.dependencies if isinstance(d, Database))
        self.engine = database.engine
        if not self.container.config.get("OUTBOX_RELAY", True):
            # Writing only: another process relays (or, in a test, nobody until a restart).
            log.warning("outbox relay disabled by OUTBOX_RELAY=false")
            return
        self.relay = Relay(self.engine, self.table, broker.amqp_uri(self.container.config),
                           self.container.service_name)
        for counter in (PUBLISHED, PUBLISH_FAILURES):   # 0, not "no data", until something happens
            counter.labels(self.container.service_name)
        self.running = True
        self.container.spawn_managed_thread(self._run, identifier="outbox-relay")

    def stop(self) -> None:
        self.running = False
        self.wake()

    def committed(self, info: dict) -> None:
        """After a commit (``Database.after_commit``): its rows, to publish from memory."""
        if self.running:
            self.queue.extend(info.get(_COMMITTED, {}).get(self.table.fullname, ()))
        self.wake()

    def wake(self) -> None:
        if self.running and not self.wakeup.ready():
            self.wakeup.send(True)

    def kill(self) -> None:
        self.stop()

    def _mark(self, *, now: bool) -> None:
        """Rows published from memory are marked in batches: at most ``OUTBOX_MARK_SECONDS`` after
        the first (well within the others' grace), or at once (``now``) before the table is read."""
        if self.unmarked and (now or len(self.unmarked) >= self.relay.batch or self._mark_in() <= 0):
            self.relay.mark(self.unmarked)
            self.unmarked, self.unmarked_since = [], None

    def _mark_in(self) -> float:
        if self.unmarked_since is None:
            return self.poll_seconds
        return self.unmarked_since + self.mark_seconds - time.monotonic()

    def _round(self, state: dict, woken: bool) -> int:
        """One round; returns how many rows it published. ``state["from_table"]``: memory cannot
        be trusted until the table's pending rows are drained."""
        if state["from_table"]:
            self._mark(now=True)                    # else the table would give them again
            ids = self.relay.publish_batch()
            state["sent"].update(ids)
            if len(ids) < self.relay.batch:
                # Drained: memory again, less what the table's rounds already sent.
                self.queue = deque(row for row in self.queue if row["id"] not in state["sent"])
                state["from_table"], state["sent"] = False, set()
            return len(ids)
        if self.queue:
            rows = [self.queue.popleft() for _ in range(min(len(self.queue), self.relay.batch))]
            ids = self.relay.publish_committed(rows)
            if self.unmarked_since is None:
                self.unmarked_since = time.monotonic()
            self.unmarked += ids
            return len(ids)
        if not woken and self.relay.measure():
            # A poll found rows left behind (one statement when it finds none).
            self._mark(now=True)
            return len(self.relay.publish_batch(older_than=GRACE_SECONDS))
        return 0

    def _run(self) -> None:
        backoff = self.poll_seconds
        last_measure = time.monotonic()
        state = {"from_table": True, "sent": set()}      # at start: whatever is pending, first
        woken = True
        while self.running:
            # A fresh event before each round: a commit during the round wakes the next wait.
            self.wakeup = Event()
            try:
                published = self._round(state, woken)
                self._mark(now=False)
                if not woken or time.monotonic() - last_measure > self.MEASURE_SECONDS:
                    if woken:
                        self.relay.measure()
                    last_measure = time.monotonic()
                backoff = self.poll_seconds
            except Exception:  # broker or database down: keep the rows, try again later
                PUBLISH_FAILURES.labels(self.container.service_name).inc()
                log.warning("outbox relay round failed; retrying", retry_in_s=backoff, exc_info=True)
                # Every pending row (those in memory too) goes out from the table, in order, first.
                state["from_table"] = True
                self.relay.close()
                self.relay = Relay(self.engine, self.table, broker.amqp_uri(self.container.config),
                                   self.container.service_name)
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            # More may wait (a full batch, rows in memory); else the next commit, the marks or the
            # poll wake it.
            if published >= self.relay.batch or (state["from_table"] and published > 0) or self.queue:
                woken = True
            else:
                timeout = min(self.poll_seconds, max(self._mark_in(), 0.0))
                woken = self.wakeup.wait(timeout=timeout) is not None or bool(self.unmarked)
        try:
            self._mark(now=True)
        except Exception:       # the table's next reader publishes them again (consumers dedupe)
            log.warning("outbox relay could not mark its last rows", rows=len(self.unmarked), exc_info=True)
        self.relay.close()

    def get_dependency(self, worker_ctx):
        return lambda session, envelope: add(session, self.table, envelope)
