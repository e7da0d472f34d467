"""The event consumer's batches and retries, against a fake container and queue consumer.

A message that arrives while nothing runs goes at once, alone; what arrives meanwhile forms the
next batch, sorted by dossier code. A failed batch is tried again one message at a time, so that
only the message that fails alone is dead-lettered. The memory of when a NotYet event was first
put back is forgotten once the event is settled (it once grew for ever).
"""
from types import SimpleNamespace

import pytest
from sqlalchemy import exc as sa_exc

from motcua.contracts.events import SCHEMAS, new_event, schema
from motcua.runtime import inbox
from motcua.runtime.inbox import EventConsumer, NotYet

UNIT = "000.01.20.H29"
SCHEMAS[("test.batched", 1)] = schema("An event of a dossier, for these tests.", code="str")
SCHEMAS[("test.noted_elsewhere", 1)] = schema("Another type, for these tests.", code="str")


class FakeQueueConsumer:
    def __init__(self):
        self.acked, self.requeued = [], []

    def register_provider(self, provider):
        pass

    def ack_message(self, message):
        self.acked.append(message)

    def requeue_message(self, message):
        self.requeued.append(message)


class FakeContainer:
    """Workers are kept until the test finishes them; managed threads run at once."""

    service_name = "routing"

    def __init__(self, **config):
        self.config = config
        self.workers = []

    def spawn_worker(self, entrypoint, args, kwargs, context_data, handle_result):
        self.workers.append(SimpleNamespace(events=args[0], handle_result=handle_result))

    def spawn_managed_thread(self, run, identifier=None):
        run()


@pytest.fixture
def consumer(monkeypatch):
    monkeypatch.setattr(inbox.eventlet, "sleep", lambda seconds: None)
    consumer = EventConsumer("test.batched")
    consumer.container = FakeContainer(EVENT_WAIT_SECONDS=30, EVENT_BATCH_SIZE=3, EVENT_BATCHES_AT_ONCE=2)
    consumer.method_name = "on_received"
    consumer.queue_consumer = FakeQueueConsumer()
    consumer.setup()
    consumer.dead_lettered = []
    monkeypatch.setattr(consumer, "_dead_letter",
                        lambda message, reason, category, *_: consumer.dead_lettered.append((message, category)))
    return consumer


class Message:
    """A delivered message (compared and hashed by identity, as kombu's are)."""

    def __init__(self, body: str, message_id: str | None = None, code: str | None = None):
        self.body, self.properties, self.code = body, {"message_id": message_id} if message_id else {}, code


def deliver(consumer, code: str):
    event = new_event("test.batched", {"code": code}, UNIT)
    message = Message(event.to_json(), event.id, code)
    consumer.handle_message(event.to_json(), message)
    return message


def finish(consumer, error: BaseException | None = None):
    """The oldest running worker returns (or raises ``error``)."""
    worker = consumer.container.workers.pop(0)
    exc_info = None if error is None else (type(error), error, None)
    worker.handle_result(None, None, exc_info)
    return [event.payload["code"] for event in worker.events]


def running(consumer):
    return [[event.payload["code"] for event in worker.events] for worker in consumer.container.workers]


def test_a_message_while_nothing_runs_goes_at_once_alone(consumer):
    deliver(consumer, "c-1")
    assert running(consumer) == [["c-1"]]


def test_what_arrives_meanwhile_waits_and_goes_together_sorted_by_dossier(consumer):
    first, second = deliver(consumer, "c-1"), deliver(consumer, "c-2")
    later = [deliver(consumer, code) for code in ("c-9", "c-5", "c-7", "c-3")]
    assert running(consumer) == [["c-1"], ["c-2"]]          # two batches at once, the rest waits
    assert finish(consumer) == ["c-1"]
    assert running(consumer) == [["c-2"], ["c-5", "c-7", "c-9"]]   # at most 3 a batch, sorted
    assert consumer.queue_consumer.acked == [first]
    finish(consumer)
    finish(consumer)
    assert running(consumer) == [["c-3"]]
    finish(consumer)
    assert sorted(m.code for m in consumer.queue_consumer.acked) == ["c-1", "c-2", "c-3", "c-5", "c-7", "c-9"]
    assert consumer.dead_lettered == [] and consumer.queue_consumer.requeued == []
    assert second in consumer.queue_consumer.acked and set(later) <= set(consumer.queue_consumer.acked)


def test_a_failed_batch_is_tried_one_by_one_and_only_the_poison_is_dead_lettered(consumer):
    deliver(consumer, "c-0"), deliver(consumer, "c-00")
    messages = {code: deliver(consumer, code) for code in ("c-1", "c-2", "c-3")}
    finish(consumer), finish(consumer)
    assert running(consumer) == [["c-1", "c-2", "c-3"]]
    finish(consumer, KeyError("a bug with c-2"))
    assert consumer.dead_lettered == [] and consumer.queue_consumer.requeued == []
    assert running(consumer) == [["c-1"], ["c-2"]]
    finish(consumer)
    finish(consumer, KeyError("a bug with c-2"))
    assert running(consumer) == [["c-3"]]
    finish(consumer)
    assert consumer.dead_lettered == [(messages["c-2"], "handler_error")]
    assert set(consumer.queue_consumer.acked) >= set(messages.values())


def test_a_transient_error_puts_the_whole_batch_back_on_the_queue(consumer):
    deliver(consumer, "c-0"), deliver(consumer, "c-00")
    messages = [deliver(consumer, code) for code in ("c-1", "c-2")]
    finish(consumer), finish(consumer)
    finish(consumer, sa_exc.OperationalError("SELECT 1", {}, Exception("the database is down")))
    assert sorted(m.code for m in consumer.queue_consumer.requeued) == ["c-1", "c-2"]
    assert consumer.dead_lettered == [] and not set(messages) & set(consumer.queue_consumer.acked)


def test_an_early_event_named_by_its_not_yet_is_held_alone_and_the_rest_goes_again_together(consumer):
    deliver(consumer, "c-0"), deliver(consumer, "c-00")
    messages = {code: deliver(consumer, code) for code in ("c-1", "c-2", "c-3")}
    finish(consumer), finish(consumer)
    assert running(consumer) == [["c-1", "c-2", "c-3"]]
    worker = consumer.container.workers[0]
    early = next(e for e in worker.events if e.payload["code"] == "c-2")
    with pytest.raises(NotYet) as raised:
        with inbox.about(early):
            raise NotYet("no dossier c-2 yet")
    finish(consumer, raised.value)
    assert sorted(running(consumer)) == [["c-1", "c-3"], ["c-2"]]    # the rest together; c-2 held, alone
    finish(consumer), finish(consumer)
    assert consumer.dead_lettered == [] and consumer.queue_consumer.requeued == []
    assert set(consumer.queue_consumer.acked) >= set(messages.values())


def test_an_event_that_waits_is_held_and_tried_alone_then_forgotten_once_handled(consumer):
    m = deliver(consumer, "c-1")
    finish(consumer, NotYet("dossier not yet received"))
    assert consumer.first_seen.keys() == {m.properties["message_id"]}
    assert running(consumer) == [["c-1"]]                    # held here and tried again, alone
    assert consumer.queue_consumer.requeued == []
    finish(consumer)
    assert consumer.first_seen == {}
    assert consumer.queue_consumer.acked == [m]


def test_an_event_that_waited_too_long_is_dead_lettered_and_forgotten(consumer, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(inbox.time, "monotonic", lambda: now[0])
    m = deliver(consumer, "c-1")
    finish(consumer, NotYet("later"))
    now[0] += 31
    finish(consumer, NotYet("still not"))
    assert consumer.first_seen == {}
    assert consumer.dead_lettered == [(m, "waited_too_long")]
    assert consumer.queue_consumer.acked == [m]
    assert running(consumer) == []


def test_a_waiting_event_that_then_fails_for_good_is_forgotten(consumer):
    m = deliver(consumer, "c-1")
    finish(consumer, NotYet("later"))
    finish(consumer, ValueError("a bug"))
    assert consumer.first_seen == {}
    assert consumer.dead_lettered == [(m, "handler_error")]


def test_a_transient_error_keeps_the_wait_of_an_event_still_unsettled(consumer):
    m = deliver(consumer, "c-1")
    finish(consumer, NotYet("later"))
    finish(consumer, ConnectionResetError())
    assert consumer.first_seen.keys() == {m.properties["message_id"]}
    assert consumer.queue_consumer.requeued == [m]
    assert consumer.dead_lettered == []


def test_many_events_that_waited_then_succeeded_leave_nothing_behind(consumer):
    for i in range(100):
        deliver(consumer, f"c-{i}")
        finish(consumer, NotYet("later"))
        finish(consumer)
    assert consumer.first_seen == {}
    assert len(consumer.queue_consumer.acked) == 100


def test_a_message_that_is_not_an_event_of_the_queue_is_dead_lettered_at_once(consumer):
    event = new_event("test.noted_elsewhere", {"code": "c-1"}, UNIT)
    message = Message(event.to_json())
    consumer.handle_message(event.to_json(), message)
    assert consumer.dead_lettered == [(message, "invalid")]
    assert consumer.queue_consumer.acked == [message] and running(consumer) == []
