"""The outbox relay's rounds (``OutboxRelay._round`` and its marks) against a fake ``Relay``: from
memory while it can be trusted, from the table in order after a failure, marks in batches."""
from __future__ import annotations

from collections import deque

import pytest

from motcua.runtime.outbox import GRACE_SECONDS, OutboxRelay


class FakeRelay:
    """The table as a list of (id, published) in order; what the rounds asked, in order."""

    batch = 3

    def __init__(self, pending=()):
        self.table = [{"id": i, "published": False} for i in pending]
        self.calls: list = []
        self.broker_up = True

    def _send(self, ids):
        if not self.broker_up:
            raise ConnectionError("broker down")
        self.calls.append(("published", list(ids)))

    def publish_batch(self, older_than=None):
        ids = [row["id"] for row in self.table if not row["published"]][:self.batch]
        self._send(ids)
        for row in self.table:
            if row["id"] in ids:
                row["published"] = True
        self.calls.append(("table", older_than))
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
    loop.notified, loop.notified_poll = set(), False
    loop.relay, loop.running = fake, True
    return loop


def commit(loop, fake, *ids):
    """A transaction of this process commits rows: in the table, and handed to the relay."""
    fake.table += [{"id": i, "published": False} for i in ids]
    loop.queue.extend({"id": i} for i in ids)


def published(fake):
    return [i for kind, ids in fake.calls if kind == "published" for i in ids]


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
    with pytest.raises(ConnectionError):
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
