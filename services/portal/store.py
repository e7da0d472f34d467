"""The sync queue on PostgreSQL: rows written from intake's events, leased in order, their outcome
recorded, the gauges' figures, and the reconciliation's reads and re-sends."""
from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased

from services.portal import models
from services.portal.domain import SyncRow

s = models.sync_rows
_FIELDS = [f.name for f in fields(SyncRow)]


def row_of(record) -> SyncRow:
    return SyncRow(**{name: getattr(record, name) for name in _FIELDS})


def add(session: Session, row: SyncRow) -> bool:
    """Queue a status change; False if that (code, seq) is already queued (the same change told twice)."""
    values = {k: v for k, v in asdict(row).items() if k not in ("id", "queued_at")}
    inserted = session.execute(insert(s).values(**values).on_conflict_do_nothing(
        index_elements=["code", "seq"]).returning(s.c.id)).first()
    return inserted is not None


def claim(connection: Connection, now: datetime, lease_until: datetime, limit: int = 20,
          gap_seconds: float = 600) -> list[SyncRow]:
    """Rows due now whose dossier's earlier changes have all been sent, leased to this process
    (one statement, autocommit). Only a dossier's first unsent change qualifies, so however many
    replicas send, a dossier's statuses reach the portal one after the other, in ``seq`` order.
    A change whose predecessor has not arrived yet waits for it, for ``gap_seconds`` after it was
    queued: a predecessor that has not come by then never will (a dossier already under way when
    the sync was deployed), and the dossier's sync starts from there."""
    before = aliased(s)
    same = and_(before.c.code == s.c.code, before.c.seq == s.c.seq - 1)
    previous_sent = exists().where(same, before.c.state == "sent")
    never_came = ~exists().where(same) & (s.c.queued_at <= func.now() - timedelta(seconds=gap_seconds))
    due = (select(s.c.id).where(s.c.state == "pending", s.c.next_attempt_at <= now,
                                (s.c.seq == 1) | previous_sent | never_came)
           .order_by(s.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True))
    leased = connection.execute(update(s).where(s.c.id.in_(due.scalar_subquery())).values(
        attempts=s.c.attempts + 1, next_attempt_at=lease_until).returning(s)).all()
    return sorted((row_of(r) for r in leased), key=lambda row: (row.changed_at, row.code, row.seq))


def save_outcome(connection: Connection, row: SyncRow) -> None:
    """An attempt's outcome, in one statement; a row another process already recorded as sent stays so."""
    connection.execute(update(s).where(s.c.id == row.id, s.c.state == "pending").values(
        state=row.state, next_attempt_at=row.next_attempt_at or s.c.next_attempt_at,
        last_error=row.last_error, sent_at=row.sent_at))


def pending(session: Session, now: datetime) -> list:
    """(unit, rows waiting, age of the oldest waiting change in seconds) for the gauges: every unit
    with a change waiting, and at 0 every unit with a change in the last day (a unit whose changes
    all went through reads 0, not "no data"; a day's rows, read through ``ix_sync_rows_changed``)."""
    waiting = s.c.state == "pending"
    rows = session.execute(select(s.c.unit, func.count().filter(waiting), func.min(s.c.changed_at).filter(waiting))
                           .where(waiting | (s.c.changed_at >= now - timedelta(days=1))).group_by(s.c.unit)).all()
    return [(unit, count, max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
            for unit, count, oldest in rows]


def sent_between(connection: Connection, start: datetime, end: datetime) -> list[SyncRow]:
    return [row_of(r) for r in connection.execute(select(s).where(
        s.c.state == "sent", s.c.changed_at >= start, s.c.changed_at < end).order_by(s.c.code, s.c.seq)).all()]


def resend(connection: Connection, ids: list[int]) -> int:
    """Queue these sent rows again, due at once (their change's own instant is in the past for any
    clock), counted as re-sent; only rows still recorded as sent."""
    if not ids:
        return 0
    return connection.execute(update(s).where(s.c.id.in_(ids), s.c.state == "sent").values(
        state="pending", attempts=0, next_attempt_at=s.c.changed_at, last_error=None, sent_at=None,
        resends=s.c.resends + 1)).rowcount
