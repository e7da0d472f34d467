"""The consumer's memory of when a NotYet event was first put back is forgotten once the event is settled.

Without that, every event that once waited for another stays in ``first_seen`` for the life of the
process (it grew for ever).
"""
from types import SimpleNamespace

import pytest

from motcua.runtime import inbox
from motcua.runtime.inbox import EventConsumer, NotYet


class FakeQueueConsumer:
    def __init__(self):
        self.acked, self.requeued = [], []

    def ack_message(self, message):
        self.acked.append(message)

    def requeue_message(self, message):
        self.requeued.append(message)


@pytest.fixture
def consumer(monkeypatch):
    monkeypatch.setattr(inbox.eventlet, "sleep", lambda seconds: None)
    consumer = EventConsumer("dossier.received")
    consumer.container = SimpleNamespace(service_name="routing")
    consumer.queue_consumer = FakeQueueConsumer()
    consumer.first_seen = {}
    consumer.wait_seconds = 30.0
    consumer.dead_lettered = []
    monkeypatch.setattr(consumer, "_dead_letter",
                        lambda message, reason, category: consumer.dead_lettered.append(category))
    return consumer


def message(event_id: str):
    return SimpleNamespace(properties={"message_id": event_id}, body=b"{}")


def failed(error: BaseException):
    return (type(error), error, None)


def test_a_retried_event_that_then_succeeds_is_forgotten(consumer):
    m = message("e-1")
    consumer.handle_message_processed(m, exc_info=failed(NotYet("dossier not yet received")))
    assert consumer.first_seen.keys() == {"e-1"}
    assert consumer.queue_consumer.requeued == [m]

    consumer.handle_message_processed(m)  # handled on redelivery
    assert consumer.first_seen == {}
    assert consumer.queue_consumer.acked == [m]


def test_a_retried_event_that_then_fails_for_good_is_forgotten(consumer):
    m = message("e-2")
    consumer.handle_message_processed(m, exc_info=failed(NotYet("later")))
    consumer.handle_message_processed(m, exc_info=failed(ValueError("a bug")))
    assert consumer.first_seen == {}
    assert consumer.dead_lettered == ["handler_error"]
    assert consumer.queue_consumer.acked == [m]


def test_an_event_that_waited_too_long_is_dead_lettered_and_forgotten(consumer, monkeypatch):
    m = message("e-3")
    now = [1000.0]
    monkeypatch.setattr(inbox.time, "monotonic", lambda: now[0])
    consumer.handle_message_processed(m, exc_info=failed(NotYet("later")))
    now[0] += 31
    consumer.handle_message_processed(m, exc_info=failed(NotYet("still not")))
    assert consumer.first_seen == {}
    assert consumer.dead_lettered == ["waited_too_long"]


def test_a_transient_error_keeps_the_wait_of_an_event_still_unsettled(consumer):
    m = message("e-4")
    consumer.handle_message_processed(m, exc_info=failed(NotYet("later")))
    consumer.handle_message_processed(m, exc_info=failed(ConnectionResetError()))
    assert consumer.first_seen.keys() == {"e-4"}
    assert consumer.queue_consumer.requeued == [m, m]
    assert consumer.dead_lettered == []


def test_many_events_that_waited_then_succeeded_leave_nothing_behind(consumer):
    for i in range(100):
        m = message(f"e-{i}")
        consumer.handle_message_processed(m, exc_info=failed(NotYet("later")))
        consumer.handle_message_processed(m)
    assert consumer.first_seen == {}
