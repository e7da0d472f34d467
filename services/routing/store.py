"""Every query of the routing service."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import and_, case, func, literal, select, update
from sqlalchemy.orm import Session

from services.routing import models

w, s, h, a = models.workflows, models.steps, models.handovers, models.actions


def get(session: Session, code: str, *, for_update: bool = False):
    statement = select(w).where(w.c.code == code)
    if for_update:
        statement = statement.with_for_update()
    return session.execute(statement).first()


def steps_of(session: Session, code: str) -> list:
    return session.execute(select(s).where(s.c.code == code).order_by(s.c.stage, s.c.position)).all()


def step(session: Session, code: str, step_id: int):
    return session.execute(select(s).where(s.c.code == code, s.c.id == step_id)).first()


def change(session: Session, code: str, **values) -> None:
    session.execute(update(w).where(w.c.code == code).values(**values, updated_at=func.now()))


def change_step(session: Session, step_id: int, **values) -> None:
    session.execute(update(s).where(s.c.id == step_id).values(**values))


def insert_workflow(session: Session, values: dict) -> None:
    session.execute(w.insert().values(**values))


def insert_step(session: Session, values: dict) -> int:
    return session.execute(s.insert().values(**values).returning(s.c.id)).scalar_one()


def hand_over(session: Session, **values) -> None:
    session.execute(h.insert().values(**values))


def set_receiver(session: Session, step_id: int, receiver: str) -> None:
    latest = select(func.max(h.c.id)).where(h.c.step_id == step_id).scalar_subquery()
    session.execute(update(h).where(h.c.id == latest).values(receiver=receiver))


def handovers(session: Session, code: str) -> list:
    return session.execute(select(h).where(h.c.code == code).order_by(h.c.id)).all()


def record(session: Session, code: str, *, at: datetime, actor: str, agency: str | None, action: str,
           step_id: int | None = None, note: dict | None = None) -> None:
    session.execute(a.insert().values(code=code, at=at, actor=actor, agency=agency, action=action,
                                      step_id=step_id, note=note or {}))


def actions(session: Session, code: str) -> list:
    return session.execute(select(a).where(a.c.code == code).order_by(a.c.id)).all()


def queue(session: Session, agency: str) -> list:
    """The steps an agency has to accept or is working on, oldest deadline first."""
    return session.execute(
        select(s, w.c.procedure_name, w.c.unit).join(w, w.c.code == s.c.code)
        .where(s.c.agency == agency, s.c.state.in_(["handed_over", "held"]))
        .order_by(s.c.due_date.nulls_last(), s.c.id)).all()


# --- the scheduler: each statement claims its rows once, whatever the number of replicas -----

def claim_overdue_dossiers(session: Session, today: date, now: datetime) -> list:
    """Running dossiers past their deadline not flagged yet: flagged here, returned once."""
    claimed = (update(w).where(w.c.state == "running", w.c.due_date < today, w.c.overdue_at.is_(None))
               .values(overdue_at=now).returning(w.c.code, w.c.unit, w.c.due_date))
    return session.execute(claimed).all()


def claim_overdue_steps(session: Session, today: date, now: datetime) -> list:
    claimed = (update(s).where(s.c.state.in_(["handed_over", "held"]), s.c.due_date < today,
                               s.c.overdue_at.is_(None))
               .values(overdue_at=now).returning(s.c.id, s.c.code, s.c.agency, s.c.due_date))
    return session.execute(claimed).all()


def claim_at_risk_steps(session: Session, before: date, now: datetime) -> list:
    """Open steps due on or before ``before`` (and not overdue yet), not warned yet."""
    claimed = (update(s).where(s.c.state.in_(["handed_over", "held"]), s.c.due_date <= before,
                               s.c.at_risk_at.is_(None), s.c.overdue_at.is_(None))
               .values(at_risk_at=now).returning(s.c.id, s.c.code, s.c.agency, s.c.due_date))
    return session.execute(claimed).all()


def claim_missing_apologies(session: Session, overdue_before: datetime, now: datetime) -> list:
    claimed = (update(w).where(w.c.overdue_at <= overdue_before, w.c.apology.is_(None),
                               w.c.apology_missing_at.is_(None), w.c.state.in_(["running", "processed"]))
               .values(apology_missing_at=now).returning(w.c.code, w.c.unit, w.c.overdue_agency, w.c.overdue_at))
    return session.execute(claimed).all()


def unit_of(session: Session, code: str) -> str:
    return session.execute(select(w.c.unit).where(w.c.code == code)).scalar_one()


# --- gauges and reports ----------------------------------------------------------------------

def open_and_overdue(session: Session, today: date) -> list:
    """(unit, state, count) for the gauges: open (running) and overdue (past the deadline)."""
    overdue = case((and_(w.c.due_date.is_not(None), w.c.due_date < today), literal("overdue")),
                   else_=literal("within_deadline"))
    return session.execute(select(w.c.unit, overdue, func.count()).where(w.c.state == "running")
                           .group_by(w.c.unit, overdue)).all()


def apologies_by_agency(session: Session) -> list:
    agency = w.c.apology["agency"].astext
    return session.execute(select(agency, func.count()).where(w.c.apology.is_not(None)).group_by(agency)).all()


def report_rows(session: Session, unit: str | None, start: datetime, end: datetime) -> list:
    """The II.06a figures per (unit, field) for [start, end), counted by the database.

    Uses the (unit, received_at) index: a dossier counts if received before the end and not
    resolved before the start.
    """
    first_day = func.date(func.timezone("Asia/Ho_Chi_Minh", literal(end) - func.make_interval(0, 0, 0, 0, 0, 0, 0.000001)))
    resolved_in = and_(w.c.resolved_at.is_not(None), w.c.resolved_at < end)
    pending = ~resolved_in
    statement = (
        select(
            w.c.unit, w.c.field,
            func.count().filter(w.c.received_at < start).label("carried_over"),
            func.count().filter(w.c.received_at >= start, w.c.channel == "online").label("online"),
            func.count().filter(w.c.received_at >= start, w.c.channel != "online").label("in_person_or_post"),
            func.count().filter(resolved_in, func.coalesce(w.c.result_class, "on_time") == "early").label("early"),
            func.count().filter(resolved_in, func.coalesce(w.c.result_class, "on_time") == "on_time").label("on_time"),
            func.count().filter(resolved_in, w.c.result_class == "late").label("late"),
            func.count().filter(pending, and_(w.c.due_date.is_not(None), w.c.due_date < first_day)).label("overdue"),
            func.count().filter(pending, ~and_(w.c.due_date.is_not(None), w.c.due_date < first_day))
            .label("within_deadline"),
        )
        .where(w.c.received_at < end, (w.c.resolved_at.is_(None)) | (w.c.resolved_at >= start))
        .group_by(w.c.unit, w.c.field).order_by(w.c.unit, w.c.field)
    )
    if unit:
        statement = statement.where(w.c.unit == unit)
    return session.execute(statement).all()
