"""The dispatcher's queue queries: the lease of due messages (set-based, across dossiers) and the
gauges' figures. Everything a command changes goes through ``repository``."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from services.notify import models

m = models.messages


def claim(connection: Connection, now: datetime, lease_until: datetime, limit: int = 20) -> list:
    """Messages due now (queued, or left 'sending' by a process that died), leased to this one, in
    the order they were queued. One statement: run it outside a transaction (autocommit)."""
    due = (select(m.c.id).where(m.c.state.in_(["queued", "sending"]), m.c.next_attempt_at <= now)
           .order_by(m.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True))
    leased = connection.execute(update(m).where(m.c.id.in_(due.scalar_subquery())).values(
        state="sending", attempts=m.c.attempts + 1, next_attempt_at=lease_until).returning(m)).all()
    return sorted(leased, key=lambda row: row.id)


def queue_depth(session: Session, now: datetime) -> list:
    """(channel, queued count, oldest queued age in seconds) for the gauges."""
    rows = session.execute(select(m.c.channel, func.count(), func.min(m.c.created_at)).where(
        m.c.state.in_(["queued", "sending"])).group_by(m.c.channel)).all()
    return [(channel, count, (now - oldest).total_seconds()) for channel, count, oldest in rows]
