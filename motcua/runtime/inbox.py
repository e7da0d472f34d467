"""Consuming events: validated, idempotent, in batches, and never stuck on a bad message.

``@event_consumer("dossier.received")`` declares a durable queue ``<service>.<method>`` bound
to the events exchange. The method receives a list of one or more validated ``Envelope``
(what was waiting on the queue, see ``EventConsumer``) and handles them in one transaction.
What cannot be handled goes to the dead-letter queue with the reason and is acknowledged, so
the consumer keeps going:

- a body over ``EVENT_MAX_BYTES`` (default 1 MiB; refused before it is decoded), a body that is
  not UTF-8 JSON or not an object, or breaks the envelope or the payload schema, or an unknown
  type or version: at once, never retried, before any handler runs;
- a handler that raises an error that is not transient.

A transient error (database or broker unreachable) puts the message back after a pause.
Handlers call ``first_time(session, inbox, envelope)`` for each event inside the transaction of
its effect: the event id is stored with the effect, so a redelivered event changes nothing.
"""
from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import eventlet
import structlog
from kombu import Producer
from kombu import pools as kombu_pools
from nameko.exceptions import ContainerBeingKilled, RemoteError
from nameko.messaging import Consumer, QueueConsumer
from prometheus_client import Counter, Histogram
from sqlalchemy import Column, DateTime, MetaData, Table, Text, func
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.orm import Session

from motcua.runtime import broker
from motcua.contracts.events import INVALID_KINDS, UNKNOWN_TYPE, Envelope, EventInvalid, parse, type_label
from motcua.runtime.logs import mask_text
from motcua.runtime.observability import CORRELATION_KEY

log = structlog.get_logger("motcua.runtime.inbox")

CONSUMED = Counter("motcua_events_consumed_total", "Events handed to a handler, by outcome.",
                   ["service", "type", "outcome"])
DUPLICATES = Counter("motcua_events_duplicate_total",
                     "Redelivered events recognised by their id and not applied again.", ["service", "type"])
DEAD_LETTERS = Counter("motcua_dead_letters_total", "Messages sent to the dead-letter queue, by service, event "
                       "type (a type of the contract, else unknown) and reason (too_large, not_json, not_object, "
                       "envelope, unknown_type, payload, handler_error, waited_too_long; the gateway's signature "
                       "and rejected, notify's undeliverable).", ["service", "type", "reason"])

# The dead-letter queue's routing key and x-dead-letter-category header (coarser than the reason).
DEAD_LETTER_CATEGORIES = ("undecodable", "invalid", "handler_error", "waited_too_long")
DEFAULT_MAX_BYTES = 1024 * 1024


def max_event_bytes(config: dict | None = None) -> int:
    """``EVENT_MAX_BYTES`` from the config, else the environment: the largest event body a consumer
    reads (the largest the platform writes, a whole catalogue's units, is far below the default)."""
    value = (config or {}).get("EVENT_MAX_BYTES") or os.environ.get("EVENT_MAX_BYTES")
    return int(value) if value else DEFAULT_MAX_BYTES


class NotYet(Exception):
    """The event depends on one that has not been handled yet (events of different types come on
    different queues, in any order). It is put back and tried again for ``EVENT_WAIT_SECONDS``
    (default 30); past that it is dead-lettered with the reason."""


@contextmanager
def about(envelope: Envelope):
    """Handle one event of a batch: a ``NotYet`` raised inside names that event, so that the consumer
    holds it alone and handles the rest of the batch again together (not one by one: under load an
    early event is common, and a batch of a hundred tried one at a time cost a hundred transactions)."""
    try:
        yield
    except NotYet as not_yet:
        not_yet.event_id = envelope.id
        raise


TRANSIENT_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                    ConnectionError, OSError)
# The same errors met by a service this handler called over RPC (the catalogue, typically) reach
# the handler as nameko's RemoteError carrying only the class name.
TRANSIENT_REMOTE_TYPES = frozenset({"OperationalError", "InterfaceError", "TimeoutError", "ConnectionError",
                                    "ConnectionRefusedError", "ConnectionResetError", "OSError"})
BATCH_SIZES = Histogram("motcua_event_batch_size", "Events handed to a worker together (one transaction), "
                        "per service and queue's event type.", ["service", "type"],
                        buckets=(1, 2, 5, 10, 20, 50, 100, 200))
REQUEUE_PAUSE_SECONDS = 1.0
DEFAULT_PREFETCH = 300
DEFAULT_BATCH_SIZE = 100
DEFAULT_BATCHES_AT_ONCE = 2


def transient(error: BaseException) -> bool:
    """Will trying again later help? The database or the broker unreachable, here or in a service
    called over RPC (the throughput benchmark saw the catalogue run out of PostgreSQL connections
    and routing dead-letter dossier.received for it)."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        # The pool dropped its connections (e.g. the server turned out to be a read-only standby
        # after a failover, ``motcua.runtime.db.read_only_is_disconnect``): the next try reconnects.
        return True
    if isinstance(error, RemoteError):
        return error.exc_type in TRANSIENT_REMOTE_TYPES or (
            error.exc_type == "InternalError" and "read-only transaction" in str(error.value))
    return False


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "processed_events", metadata,
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("type", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@lru_cache(maxsize=None)
def _record_statement(table: Table):
    # Built once per table: SQLAlchemy then also keeps its cache key, which it would otherwise
    # compute again for every event.
    return (insert(table).on_conflict_do_nothing(index_elements=["event_id"])
            .returning(table.c.event_id))


def first_time(session: Session, table: Table, envelope: Envelope) -> bool:
    """Record the event as processed in this transaction; False if it already was.

    A concurrent duplicate blocks on the first one's row until it commits, then sees it.
    """
    inserted = session.execute(_record_statement(table),
                               {"event_id": uuid.UUID(envelope.id), "type": envelope.type}).first()
    if inserted is None:
        DUPLICATES.labels(table.schema or "", envelope.type).inc()
        return False
    return True


def raw_body(body: bytes | str | None) -> bytes:
    """A message's body as bytes: py-amqp hands a body with a ``content_encoding`` over as text."""
    return body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body or b"")


_PROTOTYPES: dict[str, Any] = {}


def _pooled(amqp_uri: str):
    """A confirmed connection from the process's pool for that broker: a flood of malformed
    messages would otherwise cost a connection (and its handshake) each."""
    prototype = _PROTOTYPES.get(amqp_uri) or _PROTOTYPES.setdefault(amqp_uri, broker.confirmed_connection(amqp_uri))
    return kombu_pools.connections[prototype].acquire(block=True, timeout=30)


def dead_letter(amqp_uri: str, body: bytes | str, *, service: str, queue: str, reason: str,
                category: str, headers: dict | None = None, config: dict | None = None,
                event_type: str = UNKNOWN_TYPE, kind: str | None = None) -> None:
    """Publish a message that could not be handled to the dead-letter queue, with the reason
    (personal data masked). ``kind``: the metric's reason, the category if not given."""
    reason = mask_text(reason)[:1000]
    kind = kind or category

    def publish(connection) -> None:
        channel = connection.default_channel
        broker.declare_topology(channel, config)
        Producer(channel, exchange=broker.dead_letter_exchange).publish(
            raw_body(body),
            routing_key=f"{service}.{category}",
            delivery_mode=2,
            content_type="application/octet-stream", content_encoding="binary",
            headers={**(headers or {}), "x-dead-letter-reason": reason,
                     "x-dead-letter-category": category, "x-dead-letter-kind": kind,
                     "x-dead-letter-service": service, "x-dead-letter-queue": queue},
            retry=True, retry_policy={"max_retries": 3},
        )

    with _pooled(amqp_uri) as connection:
        try:
            publish(connection)
        except Exception:
            # A pooled connection the broker dropped (a restart, a failover): its state is dropped
            # (it reconnects when next used) and this letter goes on a new connection.
            connection.collect()
            with broker.confirmed_connection(amqp_uri) as fresh:
                publish(fresh)
    DEAD_LETTERS.labels(service, type_label(event_type), kind).inc()
    log.warning("message dead-lettered", queue=queue, category=category, kind=kind, reason=reason)


class EventQueueConsumer(QueueConsumer):
    """nameko's queue consumer for the event queues: a body over ``EVENT_MAX_BYTES`` is
    dead-lettered before kombu decodes it (a huge JSON would hold the process's memory and CPU),
    a body kombu cannot decode is dead-lettered, not dropped; each queue's prefetch is
    ``EVENT_PREFETCH`` (default 300), so that what waits on the broker can be taken in batches."""

    @property
    def prefetch_count(self) -> int:
        return int(self.container.config.get("EVENT_PREFETCH") or DEFAULT_PREFETCH)

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        limit = max_event_bytes(self.container.config)
        for provider, consumer in self._consumers.items():
            # kombu hands ``on_message`` the message undecoded (then it calls no callback itself).
            consumer.on_message = partial(self._on_raw_message, provider, consumer, limit)
        return consumers

    def _on_raw_message(self, provider, consumer, limit: int, message) -> None:
        body = raw_body(message.body)
        if len(body) > limit:
            # Kept in the dead letter up to the limit: enough to see what it was.
            self._reject(provider, message, f"body: is {len(body)} bytes, over the limit of {limit} (EVENT_MAX_BYTES)",
                         "invalid", "too_large", body=body[:limit], headers={"x-original-size": len(body)})
            return
        try:
            body = message.decode()
        except Exception as exc:      # kombu's and the serializer's errors: not JSON, not UTF-8, too deep...
            self._reject(provider, message, f"body: undecodable ({message.content_type}): "
                                            f"{type(exc).__name__}: {str(exc)[:200]}", "undecodable", "not_json")
            return
        consumer.receive(body, message)

    def _reject(self, provider, message, reason: str, category: str, kind: str, *, body=None, headers=None):
        CONSUMED.labels(self.container.service_name, provider.event_type, "invalid").inc()
        dead_letter(self.amqp_uri, message.body if body is None else body, service=self.container.service_name,
                    queue=provider.queue_name, reason=reason, category=category, config=self.container.config,
                    event_type=provider.event_type, kind=kind, headers=headers)
        self.ack_message(message)

    def on_decode_error(self, message, exc):
        queue = (message.delivery_info or {}).get("routing_key", "?")
        dead_letter(self.amqp_uri, message.body, service=self.container.service_name, queue=queue,
                    reason=f"undecodable body ({message.content_type}): {exc}", category="undecodable",
                    config=self.container.config, kind="not_json")
        message.ack()



@dataclass
class _Delivery:
    envelope: Envelope
    message: Any


def _by_dossier(delivery: _Delivery) -> str:
    return str(delivery.envelope.payload.get("code") or "")


class EventConsumer(Consumer):
    """Entrypoint: validated events of one type, in batches, one worker and one transaction per batch.

    The method gets a list of one or more envelopes and handles them in one transaction. A
    message that arrives while no batch runs goes at once, alone; what arrives meanwhile waits
    and forms the next batch (up to ``EVENT_BATCH_SIZE``, default 100, and at most
    ``EVENT_BATCHES_AT_ONCE`` batches running, default 2). A batch is sorted by dossier code,
    the order of a dossier's own events kept: transactions then lock the aggregates in one
    order and cannot deadlock one another. Once committed, its messages are acknowledged.

    A batch that fails is never dead-lettered as a whole. A transient error (the database or the
    broker out of reach) puts it back on the queue after a pause. A ``NotYet`` that names its event
    (raised inside ``about(event)``) holds that event, tried again alone for ``EVENT_WAIT_SECONDS``,
    and the rest of the batch goes again together. Any other error rolls the batch back and each
    of its messages is tried again alone: only a message that fails alone is dead-lettered (with
    the reason), or held if it is not yet possible. The inbox (``first_time``) makes a redelivered batch, after
    a crash between the commit and the acknowledgements, change nothing.
    """

    queue_consumer = EventQueueConsumer()

    def __init__(self, event_type: str, **kwargs):
        self.event_type = event_type
        super().__init__(queue=None, requeue_on_error=False, **kwargs)

    def setup(self) -> None:
        service = self.container.service_name
        config = self.container.config
        self.queue_name = f"{service}.{self.method_name}"
        self.queue = broker.durable_queue(self.queue_name, broker.events_exchange, self.event_type, config)
        self.amqp_uri = broker.amqp_uri(config)
        self.wait_seconds = float(config.get("EVENT_WAIT_SECONDS", 30))
        self.batch_size = max(1, int(config.get("EVENT_BATCH_SIZE") or DEFAULT_BATCH_SIZE))
        self.batches_at_once = max(1, int(config.get("EVENT_BATCHES_AT_ONCE") or DEFAULT_BATCHES_AT_ONCE))
        self.waiting: list[_Delivery] = []     # to go in the next batch
        self.alone: list[_Delivery] = []       # to be tried one at a time (after a failed batch, NotYet)
        self.running = 0
        self.first_seen: dict[str, float] = {}
        # Every series this consumer may move exists from the start at 0: a rate is then 0, not "no data".
        for outcome in ("handled", "invalid", "retried", "failed"):
            CONSUMED.labels(service, self.event_type, outcome)
        DUPLICATES.labels(service, self.event_type)
        for reason in (*INVALID_KINDS, "handler_error", "waited_too_long"):
            DEAD_LETTERS.labels(service, type_label(self.event_type), reason)
        BATCH_SIZES.labels(service, self.event_type)
        super().setup()

    def accepts(self, event_type: str) -> bool:
        """Does this queue take events of that type? (One type, unless a subclass binds a pattern.)"""
        return event_type == self.event_type

    def _dead_letter(self, message, reason: str, category: str, event_type: str, kind: str | None = None) -> None:
        dead_letter(self.amqp_uri, message.body, service=self.container.service_name, queue=self.queue_name,
                    reason=reason, category=category, config=self.container.config,
                    event_type=event_type, kind=kind)

    def handle_message(self, body, message):
        try:
            envelope = parse(body)
            if not self.accepts(envelope.type):
                wrong = EventInvalid("type", f"this queue takes {self.event_type}, got {envelope.type}")
                wrong.event_type = type_label(envelope.type)
                raise wrong
        except EventInvalid as invalid:
            # Dead-lettered at once: no retry can mend it, and no handler sees it.
            CONSUMED.labels(self.container.service_name, self.event_type, "invalid").inc()
            self._dead_letter(message, str(invalid), "invalid", invalid.event_type, invalid.kind)
            self.queue_consumer.ack_message(message)
            return
        self.waiting.append(_Delivery(envelope, message))
        self._start_batches()

    # --- batches -------------------------------------------------------------------------------

    def _next_batch(self) -> list[_Delivery]:
        if self.alone:
            return [self.alone.pop(0)]
        batch, self.waiting = self.waiting[:self.batch_size], self.waiting[self.batch_size:]
        return sorted(batch, key=_by_dossier)

    def _start_batches(self) -> None:
        while (self.alone or self.waiting) and self.running < self.batches_at_once:
            self._spawn(self._next_batch())

    def _spawn(self, batch: list[_Delivery]) -> None:
        self.running += 1
        BATCH_SIZES.labels(self.container.service_name, self.event_type).observe(len(batch))
        envelopes = [delivery.envelope for delivery in batch]
        context_data = {CORRELATION_KEY: envelopes[0].correlation_id}
        try:
            self.container.spawn_worker(self, (envelopes,), {}, context_data=context_data,
                                        handle_result=partial(self._batch_done, batch))
        except ContainerBeingKilled:
            self.running -= 1
            for delivery in batch:
                self.queue_consumer.requeue_message(delivery.message)

    def _batch_done(self, batch: list[_Delivery], worker_ctx, result, exc_info):
        error = None if exc_info is None else exc_info[1]
        try:
            if error is None:
                self._settled(batch, handled=True)
            elif len(batch) == 1:
                self._settle_alone(batch[0], error)
            elif transient(error) and not isinstance(error, NotYet):
                CONSUMED.labels(self.container.service_name, self.event_type, "retried").inc(len(batch))
                self._later(lambda: [self.queue_consumer.requeue_message(d.message) for d in batch])
            elif isinstance(error, NotYet) and any(d.envelope.id == getattr(error, "event_id", None) for d in batch):
                early = next(d for d in batch if d.envelope.id == error.event_id)
                self._settle_alone(early, error)
                # The others again together, first in line.
                self.waiting[:0] = [d for d in batch if d is not early]
            else:
                log.info("batch failed, its messages tried alone", queue=self.queue_name, size=len(batch),
                         error=f"{type(error).__name__}: {mask_text(str(error))[:200]}")
                self.alone.extend(batch)
        finally:
            self.running -= 1
            # Not from this worker's green thread: a full pool would make it wait for its own slot.
            self.container.spawn_managed_thread(self._start_batches)
        return result, exc_info

    def _settled(self, batch: list[_Delivery], *, handled: bool) -> None:
        for delivery in batch:
            # Settled: forget when it was first put back, or the map grows for ever.
            self.first_seen.pop(delivery.envelope.id, None)
            self.queue_consumer.ack_message(delivery.message)
        if handled:
            CONSUMED.labels(self.container.service_name, self.event_type, "handled").inc(len(batch))

    def _settle_alone(self, delivery: _Delivery, error: BaseException) -> None:
        service = self.container.service_name
        if isinstance(error, NotYet):
            now = time.monotonic()
            first = self.first_seen.setdefault(delivery.envelope.id, now)
            if now - first < self.wait_seconds:
                CONSUMED.labels(service, self.event_type, "retried").inc()
                # Held here, unacknowledged (a crash gives it back to the broker), and tried alone again.
                self._later(lambda: (self.alone.append(delivery), self._start_batches()),
                            min(REQUEUE_PAUSE_SECONDS, self.wait_seconds / 4))
                return
            CONSUMED.labels(service, self.event_type, "failed").inc()
            self._dead_letter(delivery.message, f"waited {self.wait_seconds:.0f} s: {error}", "waited_too_long",
                              delivery.envelope.type)
            self._settled([delivery], handled=False)
            return
        if transient(error):
            CONSUMED.labels(service, self.event_type, "retried").inc()
            self._later(lambda: self.queue_consumer.requeue_message(delivery.message))
            return
        CONSUMED.labels(service, self.event_type, "failed").inc()
        self._dead_letter(delivery.message, f"handler failed: {type(error).__name__}: {error}", "handler_error",
                          delivery.envelope.type)
        self._settled([delivery], handled=False)

    def _later(self, action, seconds: float = REQUEUE_PAUSE_SECONDS) -> None:
        """After a pause, without holding a worker meanwhile."""
        def run():
            eventlet.sleep(seconds)
            action()
        self.container.spawn_managed_thread(run)


event_consumer = EventConsumer.decorator
