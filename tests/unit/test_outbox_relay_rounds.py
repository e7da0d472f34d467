"""The outbox relay's rounds (``OutboxRelay._round`` and its marks) against a fake ``Relay``: from
memory while it can be trusted, from the table in order after a failure, marks in batches, the
transactions other writers announced; and ``Relay._publish``'s confirms against a fake channel:
only the rows confirmed before the first that was not count as published."""
from __future__ import annotations

from collections import deque

import pytest
from eventlet.event import Event

from motcua.runtime.outbox import GRACE_SECONDS, OutboxRelay, PartlyPublished, Relay


class FakeRelay:
    """The table as a list of (id, published) in order; what the rounds asked, in order."""

    batch = 3

    def __init__(self, pending=()):
        self.table = [{"id": i, "published": False} for i in pending]
        self.calls: list = []
        self.broker_up = True
        self.confirms = None          # with the broker down: how many of a round it confirmed first

    def _send(self, ids):
        if not self.broker_up:
            if self.confirms:
                self.calls.append(("published", list(ids[:self.confirms])))
            raise PartlyPublished([{"id": i} for i in ids[:self.confirms or 0]], ConnectionError("broker down"))
        self.calls.append(("published", list(ids)))

    def publish_batch(self, older_than=None, xids=None):
        ids = [row["id"] for row in self.table
               if not row["published"] and (xids is None or row.get("xid") in xids)][:self.batch]
        try:
            self._send(ids)
        except PartlyPublished as partly:       # the confirmed ones are marked, as the real one does
            self.mark([row["id"] for row in partly.confirmed])
            raise
        for row in self.table:
            if row["id"] in ids:
                row["published"] = True
        self.calls.append(("table", xids if xids is not None else older_than))
        return ids

    def publish_committed(self, rows):
        ids = [row["id"] for row in rows]
        self._send(ids)
        return ids

    def mark(self, ids):
        for row in self.table:
            if row["id"] in ids:
                row["published"] = True
        self.calls.append(("mark", list(ids)))

    def measure(self):
        return sum(not row["published"] for row in self.table)


def relay_loop(fake, mark_seconds=1.0):
    loop = OutboxRelay(table=None)
    loop.poll_seconds, loop.mark_seconds = 1.0, mark_seconds
    loop.unmarked, loop.unmarked_since, loop.queue = [], None, deque()
    loop.notified, loop.notified_poll, loop.wakeup = set(), False, Event()
    loop.relay, loop.running = fake, True
    return loop


def commit(loop, fake, *ids):
    """A transaction of this process commits rows: in the table, and handed to the relay."""
    fake.table += [{"id": i, "published": False} for i in ids]
    loop.queue.extend({"id": i} for i in ids)


def published(fake):
    return [i for kind, ids in fake.calls if kind == "published" for i in ids]


def announce(loop, fake, xid, *ids):
    """Another writer's transaction commits rows and its NOTIFY arrives."""
    fake.table += [{"id": i, "published": False, "xid": xid} for i in ids]
    loop.notified_by([xid])


def test_at_start_the_table_is_drained_in_order_then_memory_is_used():
    fake = FakeRelay(pending=[1, 2, 3, 4])
    loop, state = relay_loop(fake), {"from_table": True, "sent": set()}
    assert loop._round(state, woken=True) == 3 and state["from_table"]     # a full batch: more may wait
    commit(loop, fake, 5)
    assert loop._round(state, woken=True) == 2 and not state["from_table"]  # 4 and 5: drained
    assert list(loop.queue) == []             # 5 went out from the table: not again from memory
    commit(loop, fake, 6)
    assert loop._round(state, woken=True) == 1
    assert published(fake) == [1, 2, 3, 4, 5, 6]
    assert fake.calls[-1] == ("published", [6])   # from memory: no table round for it


def test_rows_published_from_memory_are_marked_together_within_the_mark_time(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("motcua.runtime.outbox.time.monotonic", lambda: clock[0])
    fake = FakeRelay()
    loop, state = relay_loop(fake, mark_seconds=1.0), {"from_table": False, "sent": set()}
    for row_id in (1, 2):
        commit(loop, fake, row_id)
        loop._round(state, woken=True)
        loop._mark(now=False)
        clock[0] += 0.4
    assert [c for c in fake.calls if c[0] == "mark"] == []          # 0.8 s: not yet
    assert 0 < loop._mark_in() <= 0.2 + 1e-9
    clock[0] += 0.3
    loop._mark(now=False)
    assert [c for c in fake.calls if c[0] == "mark"] == [("mark", [1, 2])]   # one statement for both
    assert loop.unmarked == [] and loop._mark_in() == loop.poll_seconds


def test_after_a_failure_everything_goes_out_from_the_table_in_order_once():
    fake = FakeRelay()
    loop, state = relay_loop(fake), {"from_table": False, "sent": set()}
    commit(loop, fake, 1)
    loop._round(state, woken=True)                  # 1 published from memory, not yet marked
    commit(loop, fake, 2)
    fake.broker_up = False
    with pytest.raises(PartlyPublished):
        loop._round(state, woken=True)
    state["from_table"] = True                      # what _run does on a failed round
    commit(loop, fake, 3)
    fake.broker_up = True
    assert loop._round(state, woken=True) == 2      # 1 marked first, then 2 and 3 from the table
    assert not state["from_table"] and list(loop.queue) == []
    assert fake.calls[-3:] == [("mark", [1]), ("published", [2, 3]), ("table", None)]
    assert published(fake) == [1, 2, 3]


def test_a_poll_reads_the_table_only_for_rows_older_than_the_grace():
    fake = FakeRelay()
    loop, state = relay_loop(fake), {"from_table": False, "sent": set()}
    assert loop._round(state, woken=False) == 0 and fake.calls == []      # nothing waits: one count
    fake.table.append({"id": 7, "published": False})                    # left by another process
    assert loop._round(state, woken=False) == 1
    assert fake.calls == [("published", [7]), ("table", GRACE_SECONDS)]


def test_announced_transactions_are_read_by_their_id_in_full_batches():
    fake = FakeRelay()
    loop, state = relay_loop(fake), {"from_table": False, "sent": set()}
    fake.table.append({"id": 0, "published": False, "xid": "7"})    # young, in another replica's memory
    announce(loop, fake, "11", 1, 2, 3, 4)
    announce(loop, fake, "12", 5)
    assert loop._round(state, woken=True) == 3 and loop.notified == {"11", "12"}   # full: more may wait
    assert loop._round(state, woken=True) == 2 and loop.notified == set()
    assert loop._round(state, woken=True) == 0
    assert published(fake) == [1, 2, 3, 4, 5]                       # never row 0: not announced
    assert ("table", ["11", "12"]) in fake.calls


def test_a_notification_without_an_id_prompts_a_poll_and_the_drain_covers_announced_rows():
    fake = FakeRelay()
    loop, state = relay_loop(fake), {"from_table": False, "sent": set()}
    fake.table.append({"id": 1, "published": False})
    loop.notified_by([""])                                  # a bare NOTIFY
    assert loop._round(state, woken=True) == 1 and fake.calls[-1] == ("table", GRACE_SECONDS)
    assert loop.notified_poll is False
    state["from_table"] = True                              # after a failure: one drain reads all
    announce(loop, fake, "21", 2)
    assert loop._round(state, woken=True) == 1 and loop.notified == set()
    assert fake.calls[-1] == ("table", None)


def test_a_round_from_memory_that_fails_half_way_marks_what_was_confirmed_and_sends_the_rest_once():
    fake = FakeRelay()
    loop, state = relay_loop(fake), {"from_table": False, "sent": set()}
    commit(loop, fake, 1, 2, 3)
    fake.broker_up, fake.confirms = False, 2
    with pytest.raises(PartlyPublished):
        loop._round(state, woken=True)
    assert loop.unmarked == [1, 2]
    state["from_table"], fake.broker_up = True, True        # what _run does on a failed round
    assert loop._round(state, woken=True) == 1
    assert fake.calls[-3:] == [("mark", [1, 2]), ("published", [3]), ("table", None)]
    assert published(fake) == [1, 2, 3]


def test_a_drain_that_fails_half_way_does_not_publish_the_confirmed_rows_again_from_memory():
    fake = FakeRelay()
    loop, state = relay_loop(fake), {"from_table": True, "sent": set()}
    commit(loop, fake, 1, 2)                                # in the table and in memory
    fake.broker_up, fake.confirms = False, 1
    with pytest.raises(PartlyPublished):
        loop._round(state, woken=True)
    fake.broker_up = True
    assert loop._round(state, woken=True) == 1 and not state["from_table"]
    assert list(loop.queue) == []
    assert published(fake) == [1, 2]


# --- Relay._publish: confirms ----------------------------------------------------------------

class FakeProducer:
    def __init__(self):
        self.sent = []

    def publish(self, body, **kwargs):
        self.sent.append(kwargs["message_id"])


class FakeBroker:
    """Answers the publisher's waits with scripted confirms: ("ack"|"nack", tag, multiple) or an
    exception (the connection lost)."""

    def __init__(self, relay, script):
        self.relay, self.script = relay, list(script)

    def drain_events(self, timeout=None):
        if not self.script:
            raise TimeoutError("no confirm")
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        kind, tag, multiple = step
        (self.relay._on_ack if kind == "ack" else self.relay._on_nack)(tag, multiple)


def relay_with(script, sent_before=0):
    relay = Relay.__new__(Relay)
    relay.service, relay.batch, relay.confirm_timeout = "test", 10, 5.0
    relay._sent = relay._acked = sent_before
    relay._nacked, relay._pending_single = [], set()
    relay.producer = FakeProducer()
    relay._producer = lambda: relay.producer
    relay.connection = FakeBroker(relay, script)
    return relay


def rows(*ids):
    return [{"id": i, "type": "test.noted", "envelope": {"id": str(i)}} for i in ids]


def test_a_round_waits_once_for_every_confirm_acked_together_or_one_by_one():
    relay = relay_with([("ack", 2, False), ("ack", 1, False), ("ack", 4, True)], sent_before=0)
    relay._publish(rows(1, 2, 3, 4))
    assert relay.producer.sent == ["1", "2", "3", "4"] and relay._acked == 4


@pytest.mark.parametrize("script, confirmed", [
    ([("ack", 12, True), ("nack", 13, False), ("ack", 15, True)], [1, 2]),   # 3 refused: 4, 5 go again
    ([("ack", 11, False), ("nack", 14, True), ("ack", 15, False)], [1]),     # 2-4 refused at once
    ([("ack", 13, True), ConnectionError("gone")], [1, 2, 3]),               # lost with 4, 5 unconfirmed
    ([("ack", 12, False)], []),                                              # 1 never confirmed: a timeout
])
def test_a_failed_round_counts_only_the_rows_confirmed_before_the_first_that_was_not(script, confirmed):
    relay = relay_with(script, sent_before=10)          # the channel had carried 10 messages before
    with pytest.raises(PartlyPublished) as failure:
        relay._publish(rows(1, 2, 3, 4, 5))
    assert [r["id"] for r in failure.value.confirmed] == confirmed


def test_a_rounds_frames_go_out_in_one_write_each_copied_from_the_reused_buffer():
    class Transport:                                    # py-amqp's: ``_write`` set per instance
        def __init__(self):
            self.writes = []
            self._write = self.writes.append

        def write(self, data):
            self._write(data)

    class Connection:
        def __init__(self):
            self.connection = type("Amqp", (), {})()
            self.connection.transport = Transport()

    relay = relay_with([])
    relay.connection = Connection()
    transport = relay.connection.connection.transport
    buffer = bytearray(3)
    with relay._one_write():
        for frame in (b"one", b"two"):
            buffer[:] = frame                           # the frame writer reuses its buffer
            transport.write(memoryview(buffer))
        assert transport.writes == []
    assert transport.writes == [b"onetwo"] and transport._write == transport.writes.append
