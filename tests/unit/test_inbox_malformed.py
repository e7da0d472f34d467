"""What an event consumer does with a message that is not an event: dead-lettered at once with a
reason naming the field (personal numbers masked), counted by service, type and reason, never
handed to a handler; a body over ``EVENT_MAX_BYTES`` is not even decoded. Fakes of the broker."""
import json
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from motcua.contracts.events import new_event
from motcua.runtime import inbox
from motcua.runtime.inbox import EventConsumer, EventQueueConsumer

WARD = "000.05.20.H29"


class Message:
    def __init__(self, body: bytes, content_type: str = "application/json"):
        self.body, self.content_type = body, content_type
        self.delivery_info = {"routing_key": "dossier.withdrawn"}
        self.decoded = 0

    def decode(self):
        self.decoded += 1
        return json.loads(self.body)


class Container:
    service_name = "fees"

    def __init__(self, **config):
        self.config = {"AMQP_URI": "memory://", **config}
        self.workers = []

    def spawn_worker(self, entrypoint, args, kwargs, context_data, handle_result):
        self.workers.append(args)

    def spawn_managed_thread(self, run, identifier=None):
        run()


@pytest.fixture
def published(monkeypatch):
    """What ``dead_letter`` publishes: (body, routing key, headers)."""
    sent = []

    class Producer:
        def __init__(self, channel, exchange):
            pass

        def publish(self, body, routing_key, headers, **_):
            sent.append((body, routing_key, headers))

    @contextmanager
    def connection(uri):
        yield SimpleNamespace(default_channel=None)

    monkeypatch.setattr(inbox, "Producer", Producer)
    monkeypatch.setattr(inbox.broker, "confirmed_connection", connection)
    monkeypatch.setattr(inbox, "_pooled", connection)
    monkeypatch.setattr(inbox.broker, "declare_topology", lambda channel, config=None: None)
    return sent


@pytest.fixture
def consumer():
    consumer = EventConsumer("dossier.withdrawn")
    consumer.container = Container(EVENT_MAX_BYTES=2000)
    consumer.method_name = "on_withdrawn"
    consumer.queue_consumer = SimpleNamespace(acked=[], register_provider=lambda p: None)
    consumer.queue_consumer.ack_message = consumer.queue_consumer.acked.append
    consumer.setup()
    return consumer


def dead(service, type_, reason):
    return REGISTRY.get_sample_value("motcua_dead_letters_total",
                                     {"service": service, "type": type_, "reason": reason}) or 0


def withdrawn(**payload) -> dict:
    event = new_event("dossier.withdrawn", {"code": f"{WARD}-260302-0001", "reason": "đổi ý",
                                            "withdrawn_at": "2026-03-02T09:00:00+07:00"}, WARD)
    raw = json.loads(event.to_json())
    raw["payload"].update(payload)
    return raw


@pytest.mark.parametrize("body, field, reason, type_", [
    (b"\xff\xfe not text", "body", "not_json", "unknown"),
    (b"[1, 2]", "body", "not_object", "unknown"),
    (json.dumps({**withdrawn(), "version": "1"}).encode(), "version", "envelope", "dossier.withdrawn"),
    (json.dumps({**withdrawn(), "type": "dossier.vanished"}).encode(), "type", "unknown_type", "unknown"),
    (json.dumps(withdrawn(reason=["0903123456"])).encode(), "payload.reason", "payload", "dossier.withdrawn"),
    (json.dumps(withdrawn(withdrawn_at="0903123456")).encode(), "payload.withdrawn_at", "payload",
     "dossier.withdrawn"),
    (json.dumps(withdrawn(phone="0903123456")).encode(), "payload.phone", "payload", "dossier.withdrawn"),
    (new_event("fees.paid", {"code": "c", "amount": 5000, "method": "cash", "paid_at": "2026-03-02T09:00:00+07:00"},
               WARD).to_json().encode(), "type", "envelope", "fees.paid"),       # another queue's event
])
def test_a_malformed_message_is_dead_lettered_at_once_and_never_handled(consumer, published, body, field,
                                                                        reason, type_):
    before = dead("fees", type_, reason)
    message = Message(body, content_type="application/octet-stream")
    consumer.handle_message(body, message)
    assert consumer.container.workers == [] and consumer.waiting == []
    assert consumer.queue_consumer.acked == [message]
    ((sent, routing_key, headers),) = published
    assert sent == body and routing_key == "fees.invalid"
    assert headers["x-dead-letter-reason"].startswith(f"{field}: ")
    assert headers["x-dead-letter-kind"] == reason and headers["x-dead-letter-queue"] == "fees.on_withdrawn"
    assert "0903123456" not in headers["x-dead-letter-reason"]
    assert dead("fees", type_, reason) == before + 1


def test_a_good_event_goes_to_a_worker(consumer, published):
    body = json.dumps(withdrawn()).encode()
    consumer.handle_message(json.loads(body), Message(body))
    assert len(consumer.container.workers) == 1 and published == []


class KombuConsumer:
    def __init__(self):
        self.received = []

    def receive(self, body, message):
        self.received.append(body)


@pytest.fixture
def queue_consumer(consumer):
    queue_consumer = EventQueueConsumer()
    queue_consumer.container = consumer.container
    queue_consumer.ack_message = lambda message: message.__setattr__("acked", True)
    return queue_consumer


def test_a_body_over_the_limit_is_dead_lettered_without_being_decoded(consumer, queue_consumer, published):
    before = dead("fees", "dossier.withdrawn", "too_large")
    kombu = KombuConsumer()
    message = Message(json.dumps(withdrawn(reason="x" * 3000)).encode())
    queue_consumer._on_raw_message(consumer, kombu, 2000, message)
    assert message.decoded == 0 and kombu.received == [] and message.acked
    ((sent, _, headers),) = published
    assert len(sent) == 2000 and headers["x-original-size"] == len(message.body)
    assert headers["x-dead-letter-reason"].startswith(f"body: is {len(message.body)} bytes, over the limit of 2000")
    assert dead("fees", "dossier.withdrawn", "too_large") == before + 1


def test_a_body_the_serializer_cannot_read_is_dead_lettered(consumer, queue_consumer, published):
    kombu = KombuConsumer()
    message = Message(b"[" * 50_000 + b"]" * 50_000)       # json.loads: RecursionError
    queue_consumer._on_raw_message(consumer, kombu, 10**6, message)
    assert kombu.received == [] and message.acked
    ((_, routing_key, headers),) = published
    assert routing_key == "fees.undecodable" and headers["x-dead-letter-kind"] == "not_json"
    assert headers["x-dead-letter-reason"].startswith("body: undecodable (application/json): RecursionError")


def test_a_body_within_the_limit_is_decoded_and_received(consumer, queue_consumer, published):
    kombu = KombuConsumer()
    message = Message(json.dumps(withdrawn()).encode())
    queue_consumer._on_raw_message(consumer, kombu, 2000, message)
    assert kombu.received == [withdrawn() | {"id": kombu.received[0]["id"],
                                             "correlation_id": kombu.received[0]["correlation_id"],
                                             "occurred_at": kombu.received[0]["occurred_at"]}]
    assert published == []


def test_the_limit_comes_from_the_config_then_the_environment(monkeypatch):
    monkeypatch.delenv("EVENT_MAX_BYTES", raising=False)
    assert inbox.max_event_bytes({}) == 1024 * 1024
    monkeypatch.setenv("EVENT_MAX_BYTES", "5000")
    assert inbox.max_event_bytes({}) == 5000
    assert inbox.max_event_bytes({"EVENT_MAX_BYTES": "700"}) == 700


def test_a_body_handed_over_as_text_is_measured_in_bytes(consumer, queue_consumer, published):
    """py-amqp decodes a body with a content_encoding to text: the limit still counts its UTF-8 bytes
    (a text body once stopped the consumer: ``bytes(str)`` without an encoding)."""
    kombu = KombuConsumer()
    message = Message(json.dumps(withdrawn(reason="đ" * 1500), ensure_ascii=False))    # 1,500 chars, 3,000 bytes
    queue_consumer._on_raw_message(consumer, kombu, 2000, message)
    assert kombu.received == [] and message.acked
    ((sent, _, headers),) = published
    assert sent == message.body.encode()[:2000] and headers["x-original-size"] == len(message.body.encode())


def test_a_pooled_connection_the_broker_dropped_is_collected_and_the_letter_goes_on_a_new_one(monkeypatch):
    tried = []

    class Producer:
        def __init__(self, channel, exchange):
            self.channel = channel

        def publish(self, body, routing_key, headers, **_):
            if self.channel == "dropped":
                raise ConnectionResetError("gone")
            tried.append((self.channel, body))

    class Pooled:
        default_channel, collected = "dropped", False

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def collect(self):
            self.collected = True

    pooled = Pooled()

    @contextmanager
    def fresh(uri):
        yield SimpleNamespace(default_channel="fresh")

    monkeypatch.setattr(inbox, "Producer", Producer)
    monkeypatch.setattr(inbox, "_pooled", lambda uri: pooled)
    monkeypatch.setattr(inbox.broker, "confirmed_connection", fresh)
    monkeypatch.setattr(inbox.broker, "declare_topology", lambda channel, config=None: None)
    inbox.dead_letter("memory://", b"{}", service="fees", queue="fees.on_withdrawn", reason="body: x",
                      category="invalid", kind="not_object")
    assert pooled.collected and tried == [("fresh", b"{}")]
