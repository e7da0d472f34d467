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
from datetime import datetime, timezone
from functools import lru_cache

import eventlet
from eventlet.event import Event
import structlog
from kombu import Connection, Producer
from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Gauge
from sqlalchemy import (BigInteger, Column, DateTime, Identity, Index, Integer, MetaData, Table, Text,
                        func, select, update)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from motcua.runtime import broker
from motcua.runtime.db import Database
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


def add(session: Session, table: Table, envelope: Envelope) -> None:
    """Write an event in the caller's transaction."""
    validate(envelope)
    session.execute(_insert_statement(table),
                    {"id": uuid.UUID(envelope.id), "type": envelope.type, "envelope": envelope.to_dict()})
    session.info["wake_outbox"] = True


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

    def publish_batch(self) -> int:
        """Publish one batch; returns how many rows it published."""
        t = self.table
        with Session(self.engine) as session, session.begin():
            # SKIP LOCKED: another replica's relay takes the rows this one holds.
            rows = session.execute(
                select(t.c.id, t.c.type, t.c.envelope).where(t.c.published_at.is_(None))
                .order_by(t.c.seq).limit(self.batch).with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            producer = self._producer()
            # The whole batch goes out, then one wait for the broker's confirms: a round trip per
            # batch, not per message. Marked sent only once every message is confirmed; a nack, a
            # timeout or a lost connection rolls back and the rows go out again (consumers dedupe).
            for row in rows:
                producer.publish(
                    row.envelope, routing_key=row.type, serializer="json", delivery_mode=2,
                    message_id=str(row.id), content_encoding="utf-8",
                    headers={"nameko.correlation_id": row.envelope.get("correlation_id", "")},
                    retry=False,
                )
                self._sent += 1
            self._wait_for_confirms()
            session.execute(update(t).where(t.c.id.in_([r.id for r in rows]))
                            .values(published_at=func.now(), attempts=t.c.attempts + 1))
        PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    def measure(self) -> None:
        t = self.table
        with self.engine.connect() as connection:
            count, oldest = connection.execute(
                select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))).one()
        PENDING.labels(self.service).set(count)
        age = (datetime.now(timezone.utc) - oldest).total_seconds() if oldest else 0.0
        OLDEST_AGE.labels(self.service).set(max(age, 0.0))

    def close(self) -> None:
        self.connection.release()


class OutboxRelay(DependencyProvider):
    """nameko dependency: injects the outbox table's ``add`` and runs the relay loop.

    Wakes as soon as a transaction that wrote an event commits, and polls every
    ``OUTBOX_POLL_SECONDS`` (default 0.5) for rows written by other replicas or left
    behind by a crash.
    """

    def __init__(self, table: Table):
        self.table = table

    def setup(self) -> None:
        config = self.container.config
        self.poll_seconds = float(config.get("OUTBOX_POLL_SECONDS", 0.5))
        self.wakeup = Event()
        self.running = False
        self.engine = None
        for dependency in self.container.dependencies:
            if isinstance(dependency, Database):
                dependency.after_commit.append(self.wake)

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

    def wake(self) -> None:
        if self.running and not self.wakeup.ready():
            self.wakeup.send(True)

    def kill(self) -> None:
        self.stop()

    def _run(self) -> None:
        backoff = self.poll_seconds
        last_measure = 0.0
        while self.running:
            # A fresh event before each round: a commit during the round wakes the next wait.
            self.wakeup = Event()
            try:
                published = self.relay.publish_batch()
                if time.monotonic() - last_measure > 1.0:
                    self.relay.measure()
                    last_measure = time.monotonic()
                backoff = self.poll_seconds
            except Exception:  # broker or database down: keep the rows, try again later
                PUBLISH_FAILURES.labels(self.container.service_name).inc()
                log.warning("outbox relay round failed; retrying", retry_in_s=backoff, exc_info=True)
                self.relay.close()
                self.relay = Relay(self.engine, self.table, broker.amqp_uri(self.container.config),
                                   self.container.service_name)
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if not published:
                self.wakeup.wait(timeout=self.poll_seconds)
        self.relay.close()

    def get_dependency(self, worker_ctx):
        return lambda session, envelope: add(session, self.table, envelope)
