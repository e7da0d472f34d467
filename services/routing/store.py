"""Routing's queries over many dossiers: an agency's queue, the gauges and report II.06a
(a workflow itself is read and written by unit_of_work.SqlRepository)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session

from services.routing import models

w, s = models.workflows, models.steps


def queue(session: Session, agency: str) -> list:
    """The steps an agency has to accept or is working on, oldest deadline first."""
    return session.execute(
        select(s, w.c.procedure_name, w.c.unit).join(w, w.c.code == s.c.code)
        .where(s.c.agency == agency, s.c.state.in_(["handed_over", "held"]))
        .order_by(s.c.due_date.nulls_last(), s.c.id)).all()


# --- gauges and reports ----------------------------------------------------------------------

def open_and_overdue(session: Session) -> list:
    """(unit, state, count) for the gauges: open (running) and overdue, as the workflow's own
    rule found it (``overdue_at``, set once by ``Workflow.scan``): the gauge never decides it."""
    overdue = case((w.c.overdue_at.is_not(None), literal("overdue")), else_=literal("within_deadline"))
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
