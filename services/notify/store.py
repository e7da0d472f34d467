"""Every query of the notify service."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.notify import models

d, m, t = models.dossiers, models.messages, models.templates


def dossier(session: Session, code: str):
    return session.execute(select(d).where(d.c.code == code)).first()


def save_dossier(session: Session, values: dict) -> None:
    statement = insert(d).values(**values)
    session.execute(statement.on_conflict_do_nothing(index_elements=["code"]))


def change_dossier(session: Session, code: str, **values) -> None:
    session.execute(update(d).where(d.c.code == code).values(**values))


def queue(session: Session, values: dict) -> bool:
    """Queue a message; False if its idempotency key is already there (nothing twice)."""
    statement = insert(m).values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"])
    return session.execute(statement.returning(m.c.id)).first() is not None


def claim(session: Session, now: datetime, lease_until: datetime, limit: int = 20) -> list:
    """Messages due now (queued, or left 'sending' by a process that died), leased to this one."""
    due = (select(m.c.id).where(m.c.state.in_(["queued", "sending"]), m.c.next_attempt_at <= now)
           .order_by(m.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True))
    ids = list(session.execute(due).scalars())
    if not ids:
        return []
    return session.execute(update(m).where(m.c.id.in_(ids)).values(
        state="sending", attempts=m.c.attempts + 1, next_attempt_at=lease_until).returning(m)).all()


def mark(session: Session, message_id: int, **values) -> None:
    session.execute(update(m).where(m.c.id == message_id).values(**values))


def messages_of(session: Session, code: str) -> list:
    return session.execute(select(m).where(m.c.code == code).order_by(m.c.id)).all()


def by_provider_id(session: Session, provider_id: str):
    return session.execute(select(m).where(m.c.provider_id == provider_id).with_for_update()).first()


def template(session: Session, key: str, channel: str):
    return session.execute(select(t).where(t.c.key == key, t.c.channel == channel)).first()


def templates(session: Session) -> list:
    return session.execute(select(t).order_by(t.c.key, t.c.channel)).all()


def save_template(session: Session, key: str, channel: str, subject: str | None, body: str, by: str) -> None:
    statement = insert(t).values(key=key, channel=channel, subject=subject, body=body, updated_by=by)
    session.execute(statement.on_conflict_do_update(
        index_elements=["key", "channel"],
        set_={"subject": subject, "body": body, "updated_by": by, "updated_at": func.now(),
              "version": t.c.version + 1}))


def seed_template(session: Session, key: str, channel: str, subject: str | None, body: str) -> None:
    statement = insert(t).values(key=key, channel=channel, subject=subject, body=body)
    session.execute(statement.on_conflict_do_nothing(index_elements=["key", "channel"]))


def claim_digest(session: Session, unit: str, day: date, now: datetime) -> bool:
    statement = insert(models.digests).values(unit=unit, day=day, sent_at=now).on_conflict_do_nothing()
    return session.execute(statement.returning(models.digests.c.unit)).first() is not None


def digest_figures(session: Session, unit: str, since: datetime, today: date) -> dict:
    received = session.execute(select(func.count()).select_from(d).where(
        d.c.unit == unit, d.c.received_at >= since)).scalar_one()
    due = list(session.execute(select(d.c.code).where(d.c.unit == unit, d.c.open, d.c.appointment_date == today)
                               .order_by(d.c.code)).scalars())
    overdue = list(session.execute(select(d.c.code).where(
        d.c.unit == unit, d.c.open, or_(d.c.appointment_date < today, d.c.overdue)).order_by(d.c.code)).scalars())
    return {"received": received, "due_today": due, "overdue": overdue}


def queue_depth(session: Session, now: datetime) -> list:
    """(channel, queued count, oldest queued age in seconds) for the gauges."""
    rows = session.execute(select(m.c.channel, func.count(), func.min(m.c.created_at)).where(
        m.c.state.in_(["queued", "sending"])).group_by(m.c.channel)).all()
    return [(channel, count, (now - oldest).total_seconds()) for channel, count, oldest in rows]
