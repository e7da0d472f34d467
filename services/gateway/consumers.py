"""The gateway's two consumers, each a kombu thread (this process is not under eventlet):

- ``feed``: the platform's dossier events into each concerned unit's feed (``feed.add``);
- ``unit events``: what unit systems publish straight on the ``motcua.units`` exchange, applied
  exactly as ``PublishEvents`` applies them (``ingest``).

A message is acknowledged only after its effect is committed; a redelivery changes nothing.
What cannot be read, or is refused, goes to the dead-letter queue with the reason.
"""
from __future__ import annotations

import json
import threading
import time

import structlog
from kombu import Connection
from kombu.mixins import ConsumerMixin
from prometheus_client import Counter, Histogram

from motcua.runtime import broker
from motcua.contracts.refusals import Invalid, Refusal
from motcua.contracts.events import EventInvalid, parse, shown
from motcua.runtime.inbox import dead_letter, max_event_bytes, raw_body
from services.gateway import feed, ingest

log = structlog.get_logger("motcua.gateway")

UNIT_EVENTS = Counter("motcua_gateway_unit_events_total", "Events published by unit systems, by unit, channel "
                      "(grpc or amqp) and outcome (accepted, duplicate, rejected).", ["unit", "via", "outcome"])
FEED_EVENTS = Counter("motcua_gateway_feed_events_total", "Platform events taken into the units' feeds, by "
                      "outcome (added, duplicate, invalid).", ["outcome"])
FEED_LAG = Histogram("motcua_gateway_feed_lag_seconds", "From an event's occurrence to its place in the feeds.",
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))

SIGNATURE_FAILURES = Counter("motcua_signature_failures_total", "Signed hand-offs refused because their signature "
                             "does not hold, by the unit it claims to come from and reason (missing, malformed, "
                             "unknown_key, other_unit, not_yet_valid, expired, mismatch).", ["unit", "reason"])

FEED_QUEUE = "gateway.feed"
UNIT_EVENTS_QUEUE = "gateway.unit-events"


def verified(platform, unit: str, data: dict, via: str, field: str = "") -> ingest.Signature | None:
    """The event's signature checked with its unit's key (None: the event is malformed, and is
    rejected as such). A signature that does not hold is counted, logged and refused (raised):
    the event changes nothing. ``field``: where the event sits in the request, e.g. ``events[2]``."""
    try:
        event = ingest.parse(data)
    except Invalid:
        return None
    try:
        return ingest.check_signature(platform.keys.registry(), unit, event, data, platform.now(),
                                      required=platform.require_signatures)
    except ingest.BadSignature as refused:
        SIGNATURE_FAILURES.labels(unit, refused.why).inc()
        log.warning("unit event signature refused", unit=unit, via=via, key=data.get("idempotency_key"),
                    dossier=data.get("dossier_code"), key_id=data.get("key_id"), field=refused.field,
                    reason=refused.reason)
        raise type(refused)(f"{field}.{refused.field}" if field else refused.field, refused.reason,
                            refused.details) from None


def ingest_one(platform, unit: str, data: dict, via: str, call) -> ingest.Outcome:
    """One unit event, from gRPC or the broker: validated, its signature verified (BadSignature
    raised), then applied once under its key."""
    signature = verified(platform, unit, data, via)
    try:
        event = ingest.parse(data)
    except Invalid as refusal:
        outcome = ingest.Outcome(str(data.get("idempotency_key") or ""), "rejected", refusal.field, refusal.reason)
    else:
        outcome = ingest.ingest(platform.transaction, unit, event, via, platform.now(), call, signature)
    UNIT_EVENTS.labels(unit, via, outcome.outcome).inc()
    log.info("unit event", unit=unit, via=via, key=outcome.key, outcome=outcome.outcome,
             field=outcome.field or None, reason=outcome.reason or None)
    return outcome


class Worker(ConsumerMixin):
    """A kombu consumer on its own thread, reconnecting when the broker goes away. Messages come
    raw (``on_message``): the gateway reads the bytes itself, so nothing is dropped undecoded."""
    name = "consumer"

    def __init__(self, config: dict, platform):
        self.connection = Connection(broker.amqp_uri(config), heartbeat=30)
        self.config, self.platform = config, platform
        self.amqp_uri = broker.amqp_uri(config)
        self.max_bytes = max_event_bytes(config)
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)

    def start(self) -> "Worker":
        with Connection(self.amqp_uri) as connection:
            broker.declare_topology(connection.default_channel, self.config)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.should_stop = True
        self.thread.join(timeout=10)

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def _dead_letter(self, message, queue: str, reason: str, category: str, *, event_type: str = "unknown",
                     kind: str | None = None) -> None:
        body = raw_body(message.body)
        headers = {"routing_key": message.delivery_info.get("routing_key", "")}
        if kind == "too_large":     # kept up to the limit: enough to see what it was
            body, headers["x-original-size"] = body[:self.max_bytes], len(body)
        dead_letter(self.amqp_uri, body, service="gateway", queue=queue, reason=reason, category=category,
                    config=self.config, headers=headers, event_type=event_type, kind=kind)
        message.ack()

    def _retry_later(self, message, exc: Exception) -> None:
        """The database or a service is away: put the message back and slow down."""
        log.warning("message requeued", consumer=self.name, error=type(exc).__name__)
        message.requeue()
        time.sleep(1)


class FeedWorker(Worker):
    name = "feed"

    def get_consumers(self, Consumer, channel):
        queue = broker.durable_queue(FEED_QUEUE, broker.events_exchange, "dossier.#", self.config)
        return [Consumer(queues=[queue], on_message=self.on_message, prefetch_count=50)]

    def on_message(self, message):
        try:
            envelope = parse(message.body, self.max_bytes)
        except EventInvalid as exc:
            FEED_EVENTS.labels("invalid").inc()
            self._dead_letter(message, FEED_QUEUE, str(exc), "invalid", event_type=exc.event_type, kind=exc.kind)
            return
        try:
            with self.platform.transaction() as session:
                added = feed.add(session, envelope)
        except Exception as exc:  # the database is away: try again later, lose nothing
            self._retry_later(message, exc)
            return
        FEED_EVENTS.labels("added" if added else "duplicate").inc()
        if added:
            FEED_LAG.observe(feed.lag_seconds(envelope.occurred_at, self.platform.now()))
        message.ack()


class UnitEventsWorker(Worker):
    name = "unit-events"

    def get_consumers(self, Consumer, channel):
        queue = broker.durable_queue(UNIT_EVENTS_QUEUE, broker.units_exchange, "#", self.config)
        return [Consumer(queues=[queue], on_message=self.on_message, prefetch_count=20)]

    def _routing(self, method, *args):
        return self.platform.call("routing", method, *args)

    def on_message(self, message):
        routing_key = message.delivery_info.get("routing_key", "")
        unit, _, kind = routing_key.rpartition(".")
        size = len(raw_body(message.body))
        if size > self.max_bytes:
            self._dead_letter(message, UNIT_EVENTS_QUEUE, f"{routing_key[:100]}: body: is {size} bytes, over the "
                              f"limit of {self.max_bytes} (EVENT_MAX_BYTES)", "invalid", kind="too_large")
            return
        try:
            data = json.loads(message.body)
        except (ValueError, RecursionError) as exc:    # not UTF-8, not JSON, nested too deep
            self._dead_letter(message, UNIT_EVENTS_QUEUE, f"{routing_key[:100]}: body: is not JSON: "
                              f"{type(exc).__name__}: {str(exc)[:200]}", "invalid", kind="not_json")
            return
        try:
            if not isinstance(data, dict):
                raise Invalid("body", "must be a JSON object")
            if data.setdefault("type", kind) != kind:
                raise Invalid("type", f"is {shown(data['type'])} but the routing key says {shown(kind)}")
        except Refusal as exc:
            self._dead_letter(message, UNIT_EVENTS_QUEUE, f"{routing_key[:100]}: {exc}", "invalid",
                              kind="not_object" if exc.field == "body" else "envelope")
            return
        try:
            outcome = ingest_one(self.platform, unit, data, "amqp", self._routing)
        except ingest.BadSignature as refused:  # counted and logged: kept aside with the reason, nothing done
            self._dead_letter(message, UNIT_EVENTS_QUEUE, f"{routing_key[:100]}: {refused}", "signature")
            return
        except Exception as exc:  # the database or routing is away: the unit's event waits
            self._retry_later(message, exc)
            return
        if outcome.outcome == "rejected":
            self._dead_letter(message, UNIT_EVENTS_QUEUE, f"{outcome.field}: {outcome.reason}", "rejected")
            return
        message.ack()


def start(config: dict, platform) -> list[Worker]:
    return [FeedWorker(config, platform).start(), UnitEventsWorker(config, platform).start()]
