"""The transactional outbox: an event is a row written in the same transaction as the change.

nameko's own dispatcher publishes at once, outside any transaction, so a rollback could
leave an event for a change that never happened (or a crash lose one). Here the row commits
with the change or not at all; a relay then publishes it with publisher confirms and marks
it sent. A crash between publishing and marking publishes it again: consumers are
idempotent (``motcua.runtime.inbox``), so at-least-once is enough.

**What wakes a relay.** A relay publishes the rows its own process's transactions commit from
memory, at once (``OutboxRelay.committed``), and marks them up to ``OUTBOX_MARK_SECONDS`` later.
Rows that no relay holds in memory (written by a command-line tool such as ``motcua catalog
load``, by a process with ``OUTBOX_RELAY=false``, by any session on an engine without a running
relay in its process) are announced instead: their transaction also runs
``SELECT pg_notify('motcua_outbox_<schema>', '<its transaction id>')``, which PostgreSQL delivers
only if the transaction commits, once per transaction and schema. Every relay of the service
keeps one LISTEN connection on that channel (its own, not the pool's; reconnected when it drops)
and, on a notification, reads exactly that transaction's pending rows (``xmin`` is the id), in
order, with ``FOR UPDATE SKIP LOCKED``, and publishes and marks them in that transaction: of
several notified replicas one takes the rows, the others skip them or find them marked. Such
rows go out within milliseconds instead of after the grace.

A committing relay's own commits are deliberately not announced: its rows are in its memory,
not locked, and not marked until the mark time has passed. Another replica woken by them could
only publish them a second time (or every publish from memory would first need a locked read or
an update: the statements the memory path exists to save). So a notification means "rows
nobody holds in memory", and the transaction id narrows the read to exactly those: a notified
read never touches another replica's young rows. No per-process token is needed either: a
process never announces the rows it relays from memory, and rows it does announce (written
through another engine) may be taken by its own relay as well as any other.

Polling stays the fallback (``OUTBOX_POLL_SECONDS``, rows older than ``GRACE_SECONDS``, which
are taken to be in no one's memory any more): a replica that died with rows in memory (it
announces nothing), notifications lost while the LISTEN connection was down, a bare ``NOTIFY``
without the id (taken as a prompt to poll now), rows inserted in a savepoint (their ``xmin`` is
the subtransaction's).

**Confirms.** A round's messages go out back to back on a channel in confirm mode, then one
wait for all their confirms (``basic.ack``/``basic.nack``, ``multiple`` or not): a round trip
per round, not per message. Only what the broker confirmed, in order up to the first message it
did not, is marked: a nack, a timeout or a lost connection marks that prefix and leaves the
rest to the table read that follows a failed round, which publishes in order.
"""
from __future__ import annotations

import os
import time
import uuid
import weakref
from collections import Counter as Tally, deque
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import eventlet
from eventlet import hubs
from eventlet.event import Event
import structlog
from kombu import Connection, Producer
from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Gauge
from sqlalchemy import event as sa_event
from sqlalchemy import (BigInteger, Column, DateTime, Identity, Index, Integer, MetaData, Table, Text,
                        cast, func, literal_column, select, text, update)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from motcua.runtime import broker
from motcua.runtime.config import truthy
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
LISTENING = Gauge("motcua_outbox_listening", "1 while the relay's LISTEN connection (woken by other "
                  "writers' commits) is up, 0 while it reconnects or is off (polling only).", ["service"])


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

# The transaction's id as the row's ``xmin`` shows it (32 bits, without the epoch).
_NOTIFY = text("SELECT pg_notify(:channel, (txid_current() % 4294967296)::text)")
# Engines of this process with a running relay, and the outbox tables it relays: sessions on them
# hand their committed rows to that relay's memory, so their commits are not announced.
_relayed: "weakref.WeakKeyDictionary[Engine, Tally]" = weakref.WeakKeyDictionary()


def notify_channel(table: Table) -> str:
    """The channel on which a service's outbox commits are announced: ``motcua_outbox_<schema>``."""
    return f"motcua_outbox_{table.schema or 'public'}"


def _relayed_here(session: Session, table: Table) -> bool:
    try:
        bind = session.get_bind()
    except Exception:       # binds per mapper: not a relay's session, announce the rows
        return False
    return _relayed.get(getattr(bind, "engine", bind), {}).get(table.fullname, 0) > 0


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
    """The transaction's outbox rows, one INSERT … VALUES per table, in the order they were added;
    announced to the service's relays (NOTIFY, delivered at commit) unless a relay of this process
    publishes them from memory (see the module's docstring)."""
    if session.in_nested_transaction():
        return
    for table, rows in session.info.pop(_PENDING, {}).items():
        session.execute(_insert_statement(table), rows)
        session.info.setdefault(_COMMITTED, {}).setdefault(table.fullname, []).extend(rows)
        if not _relayed_here(session, table):
            session.execute(_NOTIFY, {"channel": notify_channel(table)})


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_pending(session: Session, previous_transaction) -> None:
    if not previous_transaction.nested:        # the transaction's rows are gone with it
        session.info.pop(_PENDING, None)
        session.info.pop(_COMMITTED, None)


class PartlyPublished(Exception):
    """A round failed (nack, timeout, lost connection) after the broker had confirmed its first
    ``confirmed`` rows, in order: those may be marked, the rest go out again from the table."""

    def __init__(self, confirmed: list, cause: BaseException):
        super().__init__(f"{len(confirmed)} confirmed before: {cause!r}")
        self.confirmed, self.cause = confirmed, cause


class Relay:
    """Publishes pending outbox rows in order, with confirms; safe with several replicas."""

    def __init__(self, engine: Engine, table: Table, amqp_uri: str, service: str, batch: int = 200,
                 confirm_timeout: float = 30.0, config: dict | None = None):
        self.engine, self.table, self.service, self.batch = engine, table, service, batch
        self.config = config      # the queue type of the dead-letter queue it declares
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
            broker.declare_topology(channel, self.config)
            self._declared = True
        # Declared above: the producer must not declare on its first publish, a round trip that
        # would wait forever inside ``_one_write``.
        return Producer(channel, exchange=broker.events_exchange, auto_declare=False)

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
        # The first refused tag: with ``multiple``, every unsettled one up to this tag is refused.
        self._nacked.append(self._acked + 1 if multiple else delivery_tag)
        self._on_ack(delivery_tag, multiple)

    def _confirmed_through(self) -> int:
        """The highest tag up to which the broker confirmed every message (a nack stops it)."""
        if self._nacked:
            return min(self._acked, min(self._nacked) - 1)
        return self._acked

    def _wait_for_confirms(self) -> None:
        """Until the broker has confirmed every message published so far (persisted and routed)."""
        deadline = time.monotonic() + self.confirm_timeout
        while self._acked < self._sent:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the broker confirmed {self._acked} of {self._sent} messages in time")
            self.connection.drain_events(timeout=left)
        if self._nacked:
            raise RuntimeError(f"the broker refused (nack) deliveries from {min(self._nacked)}: "
                               "those go out again")

    def _publish(self, rows) -> None:
        """The whole batch goes out, then one wait for the broker's confirms: a round trip per
        batch, not per message. A nack, a timeout or a lost connection raises ``PartlyPublished``
        with the rows confirmed before the first that was not (consumers dedupe the rest, which
        go out again)."""
        first = self._sent + 1                  # the delivery tag of rows[0]
        try:
            producer = self._producer()
            with self._one_write():
                for row in rows:
                    producer.publish(
                        row["envelope"], routing_key=row["type"], serializer="json", delivery_mode=2,
                        message_id=str(row["id"]), content_encoding="utf-8",
                        headers={"nameko.correlation_id": row["envelope"].get("correlation_id", "")},
                        retry=False,
                    )
                    self._sent += 1
            self._wait_for_confirms()
        except Exception as error:
            confirmed = rows[:max(self._confirmed_through() - first + 1, 0)]
            self._nacked = []
            if confirmed:
                PUBLISHED.labels(self.service).inc(len(confirmed))
            raise PartlyPublished(confirmed, error) from error
        PUBLISHED.labels(self.service).inc(len(rows))

    @contextmanager
    def _one_write(self):
        """py-amqp sends every message with a socket write of its own (a third of a round's time
        in the profile); a round's frames go out in one write instead, in the same order. Its
        frames are handed over as a view of a buffer it reuses: each is copied. Nothing inside may
        wait for the broker (its request would not have been sent). On an error nothing of the
        round is sent (the relay drops the connection after a failed round)."""
        transport = getattr(getattr(self.connection, "connection", None), "transport", None)
        if transport is None or "_write" not in vars(transport):
            yield                               # not py-amqp's socket transport: as it is
            return
        write, frames = transport._write, []
        transport._write = lambda frame: frames.append(bytes(frame))
        try:
            yield
        finally:
            transport._write = write
        if frames:
            transport.write(b"".join(frames))

    def publish_batch(self, older_than: float | None = None, xids: list[str] | None = None) -> list:
        """Publish one batch of what the table holds, in order; returns the ids published.
        ``older_than`` (seconds) leaves younger rows to the process that wrote them; ``xids``
        takes only the rows those transactions wrote (announced by their NOTIFY). After a partial
        failure the confirmed rows are marked, then ``PartlyPublished`` is raised."""
        t = self.table
        pending = t.c.published_at.is_(None)
        if older_than is not None:
            pending = pending & (t.c.created_at < func.now() - timedelta(seconds=older_than))
        failure = None
        with Session(self.engine) as session, session.begin():
            if xids is not None:
                # A transaction's rows go out whole, from one relay, in order: row locks alone
                # let a second notified replica start its read while the first is still locking,
                # skip the first row and take the rest. The transaction id's advisory lock decides
                # first; a replica that does not get it leaves those rows to the one that did.
                xids = self._claim(session, xids)
                if not xids:
                    return []
                pending = pending & cast(literal_column("xmin"), Text).in_(xids)
            # SKIP LOCKED: another replica's relay takes the rows this one holds.
            rows = session.execute(
                select(t.c.id, t.c.type, t.c.envelope).where(pending)
                .order_by(t.c.seq).limit(self.batch).with_for_update(skip_locked=True)
            ).mappings().all()
            if not rows:
                return []
            try:
                self._publish(rows)
                done = rows
            except PartlyPublished as partly:
                done, failure = partly.confirmed, partly
            ids = [r["id"] for r in done]
            if ids:
                session.execute(update(t).where(t.c.id.in_(ids))
                                .values(published_at=func.now(), attempts=t.c.attempts + 1))
        if failure is not None:
            raise failure
        return ids

    def _claim(self, session: Session, xids: list[str]) -> list[str]:
        """The transaction ids whose advisory lock (held until this transaction ends) this relay
        got; the lock's key is the table's name and the id, mapped into the two int4 halves."""
        name = f"{self.table.schema}.{self.table.name}"
        return session.execute(text(
            "SELECT x FROM unnest(CAST(:xids AS text[])) AS x "
            "WHERE pg_try_advisory_xact_lock(hashtext(:name), CAST(CAST(x AS bigint) - 2147483648 AS int))"
        ), {"xids": list(xids), "name": name}).scalars().all()

    def publish_committed(self, rows: list[dict]) -> list:
        """Rows this process's transactions have just committed, published from memory in commit
        order: no read, no lock (the others' polls leave rows this young alone). Returns their
        ids, for ``mark``; a partial failure raises ``PartlyPublished`` with the confirmed rows."""
        self._publish(rows)
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
    pending goes out in order, in locking rounds, before memory is used again), when another
    writer announces rows no relay holds in memory (a NOTIFY on the LISTEN connection,
    ``OUTBOX_LISTEN``, default on: that transaction's rows), and on each ``OUTBOX_POLL_SECONDS``
    (default 1) without a commit, when rows older than the grace wait (another replica died, a
    notification was missed).
    """

    MEASURE_SECONDS = 5.0     # the gauges' refresh while busy (idle, each poll refreshes them)
    MAX_XIDS = 1000           # announced transactions read in one round

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
        # OUTBOX_LISTEN (config or environment): false for polling only, e.g. behind a pooler in
        # transaction mode, where LISTEN does not work.
        self.listen = truthy(config.get("OUTBOX_LISTEN", os.environ.get("OUTBOX_LISTEN", True)))
        self.notified: set[str] = set()        # announced transactions (ids) whose rows wait
        self.notified_poll = False             # a NOTIFY without an id: poll now
        self.listener = None
        self._registered = False
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
                           self.container.service_name, config=self.container.config)
        for counter in (PUBLISHED, PUBLISH_FAILURES):   # 0, not "no data", until something happens
            counter.labels(self.container.service_name)
        LISTENING.labels(self.container.service_name).set(0)
        # From here on, this engine's commits come to memory (``committed``) and are not announced.
        _relayed.setdefault(self.engine, Tally())[self.table.fullname] += 1
        self._registered = True
        self.running = True
        self.container.spawn_managed_thread(self._run, identifier="outbox-relay")
        if self.listen:
            self.listener = self.container.spawn_managed_thread(self._listen, identifier="outbox-listen")

    def stop(self) -> None:
        self.running = False
        if self._registered:
            self._registered = False
            _relayed[self.engine][self.table.fullname] -= 1
        if self.listener is not None:
            self.listener.kill()
            self.listener = None
        self.wake()

    def committed(self, info: dict) -> None:
        """After a commit (``Database.after_commit``): its rows, to publish from memory."""
        if self.running:
            self.queue.extend(info.get(_COMMITTED, {}).get(self.table.fullname, ()))
        self.wake()

    def wake(self) -> None:
        if self.running and not self.wakeup.ready():
            self.wakeup.send(True)

    # --- the LISTEN connection ----------------------------------------------------------------

    def _listen_connection(self):
        """A connection of its own (not the pool's), in autocommit, listening on the channel. TCP
        keepalives notice a peer that vanished without closing (a closed one makes the socket
        readable and ``poll`` raise)."""
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        cparams.update(application_name=f"{self.container.service_name}-outbox-listen"[:63],
                       connect_timeout=5, keepalives=1, keepalives_idle=30, keepalives_interval=10,
                       keepalives_count=3)
        connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'LISTEN "{notify_channel(self.table)}"')
        except BaseException:
            connection.close()
            raise
        return connection

    def _listen(self) -> None:
        """Waits cooperatively on the LISTEN connection's socket (eventlet's hub) and hands the
        announced transactions to the relay; reconnects with a backoff when the connection drops
        (meanwhile the poll covers for it)."""
        service = self.container.service_name
        backoff = 0.5
        while self.running:
            connection = None
            try:
                connection = self._listen_connection()
                LISTENING.labels(service).set(1)
                backoff = 0.5
                while self.running:
                    connection.poll()                   # reads what arrived; raises if it closed
                    if connection.notifies:
                        self.notified_by([n.payload for n in connection.notifies])
                        connection.notifies.clear()
                    hubs.trampoline(connection.fileno(), read=True)
            except Exception:
                LISTENING.labels(service).set(0)
                if not self.running:
                    break
                log.warning("outbox LISTEN connection lost; polling until it is back", retry_in_s=backoff,
                            exc_info=True)
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass
        LISTENING.labels(service).set(0)

    def notified_by(self, payloads: list[str]) -> None:
        """Notifications received: each names a committed transaction whose rows no relay holds in
        memory; one without a transaction id only prompts a poll."""
        for payload in payloads:
            if payload.isdigit():
                self.notified.add(payload)
            else:
                self.notified_poll = True
        self.wake()

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
            # The drain reads every pending row, the announced ones too.
            self.notified.clear()
            try:
                ids = self.relay.publish_batch()
            except PartlyPublished as partly:
                state["sent"].update(r["id"] for r in partly.confirmed)    # marked: not from memory
                raise
            state["sent"].update(ids)
            if len(ids) < self.relay.batch:
                # Drained: memory again, less what the table's rounds already sent.
                self.queue = deque(row for row in self.queue if row["id"] not in state["sent"])
                state["from_table"], state["sent"] = False, set()
            return len(ids)
        if self.queue:
            rows = [self.queue.popleft() for _ in range(min(len(self.queue), self.relay.batch))]
            try:
                ids = self.relay.publish_committed(rows)
            except PartlyPublished as partly:
                # The confirmed ones are marked before the table is read again (the next round).
                self._unmarked([r["id"] for r in partly.confirmed])
                raise
            self._unmarked(ids)
            return len(ids)
        if self.notified:
            # Rows other writers announced: exactly their transactions' (in nobody's memory).
            xids = sorted(self.notified)[:self.MAX_XIDS]
            ids = self.relay.publish_batch(xids=xids)
            if len(ids) < self.relay.batch:
                self.notified.difference_update(xids)
            return len(ids)
        if (not woken or self.notified_poll) and self.relay.measure():
            # A poll found rows left behind (one statement when it finds none).
            self.notified_poll = False
            self._mark(now=True)
            return len(self.relay.publish_batch(older_than=GRACE_SECONDS))
        self.notified_poll = False
        return 0

    def _unmarked(self, ids: list) -> None:
        if ids and self.unmarked_since is None:
            self.unmarked_since = time.monotonic()
        self.unmarked += ids

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
                                   self.container.service_name, config=self.container.config)
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            # More may wait (a full batch, rows in memory); else the next commit, the marks or the
            # poll wake it.
            if (published >= self.relay.batch or (state["from_table"] and published > 0) or self.queue
                    or self.notified):
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
