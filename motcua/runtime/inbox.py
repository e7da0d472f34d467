"""Consuming events: validated, idempotent, and never stuck on a bad message.

``@event_consumer("dossier.received")`` declares a durable queue ``<service>.<method>`` bound
to the events exchange. The method receives a validated ``Envelope``. What cannot be
handled goes to the dead-letter queue with the reason and is acknowledged, so the consumer
keeps going:

- a body that is not JSON, or breaks the envelope or the payload schema, or an unknown type;
- a handler that raises an error that is not transient.

A transient error (database or broker unreachable) puts the message back after a pause.
Handlers call ``first_time(session, inbox, envelope)`` inside the transaction of their effect:
the event id is stored with the effect, so a redelivered event changes nothing.
"""
from __future__ import annotations

import time
import uuid
from functools import lru_cache, partial

import eventlet
import structlog
from kombu import Producer, Queue
from nameko.exceptions import ContainerBeingKilled, RemoteError
from nameko.messaging import Consumer, QueueConsumer
from prometheus_client import Counter
from sqlalchemy import Column, DateTime, MetaData, Table, Text, func
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.orm import Session

from motcua.runtime import broker
from motcua.contracts.events import Envelope, EventInvalid, parse
from motcua.runtime.logs import mask_text
from motcua.runtime.observability import CORRELATION_KEY

log = structlog.get_logger("motcua.runtime.inbox")

CONSUMED = Counter("motcua_events_consumed_total", "Events handed to a handler, by outcome.",
                   ["service", "type", "outcome"])
DUPLICATES = Counter("motcua_events_duplicate_total",
                     "Redelivered events recognised by their id and not applied again.", ["service", "type"])
DEAD_LETTERS = Counter("motcua_dead_letters_total", "Messages sent to the dead-letter queue, by reason.",
                       ["service", "reason"])

DEAD_LETTER_CATEGORIES = ("undecodable", "invalid", "handler_error", "waited_too_long")


class NotYet(Exception):
    """The event depends on one that has not been handled yet (events of different types come on
    different queues, in any order). It is put back and tried again for ``EVENT_WAIT_SECONDS``
    (default 30); past that it is dead-lettered with the reason."""
TRANSIENT_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                    ConnectionError, OSError)
# The same errors met by a service this handler called over RPC (the catalogue, typically) reach
# the handler as nameko's RemoteError carrying only the class name.
TRANSIENT_REMOTE_TYPES = frozenset({"OperationalError", "InterfaceError", "TimeoutError", "ConnectionError",
                                    "ConnectionRefusedError", "ConnectionResetError", "OSError"})
REQUEUE_PAUSE_SECONDS = 1.0


def transient(error: BaseException) -> bool:
    """Will trying again later help? The database or the broker unreachable, here or in a service
    called over RPC (the throughput benchmark saw the catalogue run out of PostgreSQL connections
    and routing dead-letter dossier.received for it)."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, RemoteError) and error.exc_type in TRANSIENT_REMOTE_TYPES


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


def dead_letter(amqp_uri: str, body: bytes | str, *, service: str, queue: str, reason: str,
                category: str, headers: dict | None = None) -> None:
    """Publish a message that could not be handled to the dead-letter queue, with the reason."""
    reason = mask_text(reason)[:1000]
    with broker.confirmed_connection(amqp_uri) as connection:
        channel = connection.default_channel
        broker.declare_topology(channel)
        Producer(channel, exchange=broker.dead_letter_exchange).publish(
            body.encode("utf-8") if isinstance(body, str) else bytes(body),
            routing_key=f"{service}.{category}",
            delivery_mode=2,
            content_type="application/octet-stream", content_encoding="binary",
            headers={**(headers or {}), "x-dead-letter-reason": reason,
                     "x-dead-letter-category": category, "x-dead-letter-service": service,
                     "x-dead-letter-queue": queue},
            retry=True, retry_policy={"max_retries": 3},
        )
    DEAD_LETTERS.labels(service, category).inc()
    log.warning("message dead-lettered", queue=queue, category=category, reason=reason)


class DeadLetteringQueueConsumer(QueueConsumer):
    """nameko's queue consumer, but a body kombu cannot decode is dead-lettered, not dropped."""

    def on_decode_error(self, message, exc):
        queue = (message.delivery_info or {}).get("routing_key", "?")
        dead_letter(self.amqp_uri, message.body, service=self.container.service_name, queue=queue,
                    reason=f"undecodable body ({message.content_type}): {exc}", category="undecodable")
        message.ack()


class EventConsumer(Consumer):
    """Entrypoint: a validated event of one type, delivered to one worker per service."""

    queue_consumer = DeadLetteringQueueConsumer()

    def __init__(self, event_type: str, **kwargs):
        self.event_type = event_type
        super().__init__(queue=None, requeue_on_error=False, **kwargs)

    def setup(self) -> None:
        service = self.container.service_name
        self.queue_name = f"{service}.{self.method_name}"
        self.queue = Queue(self.queue_name, exchange=broker.events_exchange, routing_key=self.event_type,
                           durable=True)
        self.amqp_uri = broker.amqp_uri(self.container.config)
        self.wait_seconds = float(self.container.config.get("EVENT_WAIT_SECONDS", 30))
        self.first_seen: dict[str, float] = {}
        # Every series this consumer may move exists from the start at 0: a rate is then 0, not "no data".
        for outcome in ("handled", "invalid", "retried", "failed"):
            CONSUMED.labels(service, self.event_type, outcome)
        DUPLICATES.labels(service, self.event_type)
        for category in DEAD_LETTER_CATEGORIES:
            DEAD_LETTERS.labels(service, category)
        super().setup()

    def accepts(self, event_type: str) -> bool:
        """Does this queue take events of that type? (One type, unless a subclass binds a pattern.)"""
        return event_type == self.event_type

    def _dead_letter(self, message, reason: str, category: str) -> None:
        body = message.body
        dead_letter(self.amqp_uri, body, service=self.container.service_name, queue=self.queue_name,
                    reason=reason, category=category)

    def handle_message(self, body, message):
        try:
            envelope = parse(body)
            if not self.accepts(envelope.type):
                raise EventInvalid("type", f"this queue takes {self.event_type}, got {envelope.type}")
        except EventInvalid as invalid:
            CONSUMED.labels(self.container.service_name, self.event_type, "invalid").inc()
            self._dead_letter(message, str(invalid), "invalid")
            self.queue_consumer.ack_message(message)
            return
        context_data = {CORRELATION_KEY: envelope.correlation_id}
        try:
            self.container.spawn_worker(self, (envelope,), {}, context_data=context_data,
                                        handle_result=partial(self.handle_result, message))
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    @staticmethod
    def _wait_key(message) -> str:
        return (message.properties or {}).get("message_id") or str(hash(message.body))

    def handle_message_processed(self, message, result=None, exc_info=None):
        service = self.container.service_name
        error = None if exc_info is None else exc_info[1]
        if error is not None and (isinstance(error, NotYet) or transient(error)):
            self._retry_or_give_up(message, error)
            return
        # Settled (handled or dead-lettered): forget when it was first put back, or the map grows for ever.
        self.first_seen.pop(self._wait_key(message), None)
        if error is None:
            CONSUMED.labels(service, self.event_type, "handled").inc()
            self.queue_consumer.ack_message(message)
            return
        CONSUMED.labels(service, self.event_type, "failed").inc()
        self._dead_letter(message, f"handler failed: {type(error).__name__}: {error}", "handler_error")
        self.queue_consumer.ack_message(message)

    def _retry_or_give_up(self, message, error: BaseException) -> None:
        service = self.container.service_name
        if isinstance(error, NotYet):
            event_id = self._wait_key(message)
            now = time.monotonic()
            first = self.first_seen.setdefault(event_id, now)
            if now - first < self.wait_seconds:
                CONSUMED.labels(service, self.event_type, "retried").inc()
                eventlet.sleep(min(REQUEUE_PAUSE_SECONDS, self.wait_seconds / 4))
                self.queue_consumer.requeue_message(message)
                return
            self.first_seen.pop(event_id, None)
            CONSUMED.labels(service, self.event_type, "failed").inc()
            self._dead_letter(message, f"waited {self.wait_seconds:.0f} s: {error}", "waited_too_long")
            self.queue_consumer.ack_message(message)
            return
        CONSUMED.labels(service, self.event_type, "retried").inc()  # transient
        eventlet.sleep(REQUEUE_PAUSE_SECONDS)
        self.queue_consumer.requeue_message(message)


event_consumer = EventConsumer.decorator
