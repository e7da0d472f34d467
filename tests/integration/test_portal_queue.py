"""The portal sync's queue on PostgreSQL (services/portal/store.py): the lease that keeps a dossier's
changes in order whatever the number of senders, the wait for a predecessor that never comes, the
outcome written once, the gauges, and the reconciliation's re-send."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from motcua.runtime.db import autocommit
from services.portal import models, store
from services.portal.domain import Policy, SyncRow

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
NOW = datetime.now(timezone.utc)
WARD_5, WARD_7 = "000.05.20.H29", "000.07.20.H29"


@pytest.fixture
def queue(engine):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE portal.sync_rows, portal.processed_events"))
    yield engine
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE portal.sync_rows, portal.processed_events"))


def add(engine, code, seq, status, unit=WARD_5, minutes=0):
    row = SyncRow(id=None, code=code, seq=seq, status=status, previous_status=None, channel=1, unit=unit,
                  procedure_code="1.004873", handling_agency=unit, changed_at=T0 + timedelta(minutes=minutes + seq),
                  next_attempt_at=T0)
    with Session(engine) as session, session.begin():
        return store.add(session, row)


def claim(engine, now=NOW, **kwargs):
    with autocommit(engine) as connection:
        return [(r.code, r.seq) for r in store.claim(connection, now, now + timedelta(seconds=60), **kwargs)]


def sent(engine, code, seq):
    [leased] = [r for r in _rows(engine) if (r.code, r.seq) == (code, seq)]
    leased.sent(NOW)
    with autocommit(engine) as connection:
        store.save_outcome(connection, leased)


def _rows(engine):
    with engine.connect() as connection:
        return [store.row_of(r) for r in connection.execute(models.sync_rows.select()).all()]


def test_a_dossiers_changes_are_leased_one_after_the_other_across_senders(queue):
    for seq, status in ((1, 2), (2, 4), (3, 9)):
        add(queue, "A", seq, status)
    add(queue, "B", 2, 4)                                      # B's first change has not come yet
    assert add(queue, "A", 1, 2) is False                      # the same change told again: one row
    assert claim(queue) == [("A", 1)]
    assert claim(queue) == []                                  # a second sender: A1 is leased, A2 waits
    sent(queue, "A", 1)
    assert claim(queue) == [("A", 2)]
    add(queue, "B", 1, 2)
    assert claim(queue) == [("B", 1)]


def test_a_predecessor_that_never_comes_is_waited_for_then_not(queue):
    add(queue, "C", 5, 9)                                      # under way before the sync was deployed
    assert claim(queue) == []
    with queue.begin() as connection:
        connection.execute(update(models.sync_rows).values(queued_at=NOW - timedelta(minutes=11)))
    assert claim(queue, gap_seconds=600) == [("C", 5)]


def test_an_outcome_is_written_once_and_a_failure_waits(queue):
    add(queue, "A", 1, 2)
    with autocommit(queue) as connection:
        [leased] = store.claim(connection, NOW, NOW + timedelta(seconds=60))
    leased.failed("unavailable", "503", NOW, Policy(5, 300))
    with autocommit(queue) as connection:
        store.save_outcome(connection, leased)
    [row] = _rows(queue)
    assert row.state == "pending" and row.attempts == 1 and row.next_attempt_at == NOW + timedelta(seconds=5)
    assert claim(queue) == [] and claim(queue, now=NOW + timedelta(seconds=6)) == [("A", 1)]


def test_gauges_and_the_reconciliations_resend(queue):
    add(queue, "A", 1, 2)
    add(queue, "A", 2, 4)
    add(queue, "D", 1, 2, unit=WARD_7)
    sent(queue, "A", 1)
    sent(queue, "D", 1)
    at = T0 + timedelta(hours=1)
    with Session(queue) as session:
        figures = {unit: (count, age) for unit, count, age in store.pending(session, at)}
    assert figures == {WARD_5: (1, 58 * 60.0), WARD_7: (0, 0.0)}
    with autocommit(queue) as connection:
        between = store.sent_between(connection, T0, T0 + timedelta(days=1))
        assert [(r.code, r.seq) for r in between] == [("A", 1), ("D", 1)]
        assert store.resend(connection, [between[0].id]) == 1
    [again] = [r for r in _rows(queue) if (r.code, r.seq) == ("A", 1)]
    assert again.state == "pending" and again.resends == 1 and again.next_attempt_at == again.changed_at
    assert claim(queue) == [("A", 1)]                          # due at once, whatever the clock
