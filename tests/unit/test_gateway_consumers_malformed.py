"""The gateway's two consumers refuse what is not an event as the services' do: dead-lettered at
once with the field and the reason, counted by reason kind, nothing applied; a body over
``EVENT_MAX_BYTES`` unread; JSON nested too deep no longer stops the unit events' thread."""
import json

import pytest

from motcua.contracts.events import new_event
from services.gateway import consumers

WARD = "000.05.20.H29"


class Message:
    def __init__(self, body, routing_key="000.05.20.H29.step_accepted"):
        self.body, self.delivery_info = body, {"routing_key": routing_key}
        self.acked = self.requeued = False

    def ack(self):
        self.acked = True

    def requeue(self):
        self.requeued = True


class Platform:
    """Nothing may be applied: any use of the database or routing fails the test."""

    def transaction(self):
        raise AssertionError("a malformed message reached the database")

    def call(self, *args):
        raise AssertionError("a malformed message reached routing")


@pytest.fixture
def sent(monkeypatch):
    letters = []
    monkeypatch.setattr(consumers, "dead_letter", lambda uri, body, **kw: letters.append((body, kw)))
    return letters


def worker(cls):
    return cls({"AMQP_URI": "memory://", "EVENT_MAX_BYTES": 10_000}, Platform())


@pytest.mark.parametrize("body, kind, reason", [
    (b"[" * 100_000 + b"]" * 100_000, "too_large", "body: is 200000 bytes, over the limit of 10000"),
    (b"[" * 3000 + b"]" * 3000, "not_json", "body: is not JSON: RecursionError"),
    (b'{"type": "\xff"}', "not_json", "body: is not JSON: UnicodeDecodeError"),
    (b"[1]", "not_object", "body: must be a JSON object"),
    (json.dumps({"type": "result_signed"}).encode(), "envelope", "type: is 'result_signed' but the routing key"),
])
def test_a_unit_event_that_cannot_be_read_is_dead_lettered(sent, body, kind, reason):
    message = Message(body)
    worker(consumers.UnitEventsWorker).on_message(message)
    ((letter, headers),) = sent
    assert message.acked and not message.requeued
    assert headers["kind"] == kind and headers["category"] == "invalid"
    assert headers["reason"].startswith(f"000.05.20.H29.step_accepted: {reason}"), headers["reason"]
    assert len(letter) <= 10_000


def test_a_feed_event_that_breaks_the_contract_is_dead_lettered_with_its_type(sent):
    raw = json.loads(new_event("dossier.withdrawn", {"code": "c", "reason": "r",
                                                     "withdrawn_at": "2026-03-02T09:00:00+07:00"}, WARD).to_json())
    raw["payload"]["phone"] = "0903123456"
    message = Message(json.dumps(raw).encode(), routing_key="dossier.withdrawn")
    worker(consumers.FeedWorker).on_message(message)
    ((_, headers),) = sent
    assert message.acked
    assert (headers["event_type"], headers["kind"]) == ("dossier.withdrawn", "payload")
    assert headers["reason"] == "payload.phone: is not part of this event's schema"
