"""The intake service's queries over many dossiers (lists, the book, the gauges); one dossier is
loaded and saved through ``unit_of_work``."""
from __future__ import annotations

import re
from datetime import date, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from motcua.contracts.calendar import OVERDUE, deadline_state
from motcua.contracts.pii import ID_NUMBER, PHONE, KeyRing
from motcua.contracts.text import fold
from services.intake import models

d = models.dossiers


def tracking_book(session: Session, unit: str, start: datetime, end: datetime) -> list:
    """Lines of the unit's book received in [start, end), in book order (a dossier moved to a
    successor by a reorganisation stays a line of the book that received it)."""
    return session.execute(
        select(d).where(d.c.book_unit == unit, d.c.received_at >= start, d.c.received_at < end,
                        d.c.book_line.is_not(None))
        .order_by(d.c.book_year, d.c.book_line)).all()


OPEN_STATUSES = (2, 4, 5, 6)


def due(session: Session, unit: str, today: date) -> tuple[list, list]:
    """Open dossiers of a unit due today, and those already overdue (by the calendar's one overdue
    rule, ``deadline_state``, on the appointment date: routing's deadline, carried in its events)."""
    rows = session.execute(select(d).where(d.c.unit == unit, d.c.status.in_(OPEN_STATUSES),
                                           d.c.appointment_date <= today)
                           .order_by(d.c.appointment_date, d.c.code)).all()
    late = [deadline_state(r.appointment_date, today) == OVERDUE for r in rows]
    return [r for r, is_late in zip(rows, late) if not is_late], [r for r, is_late in zip(rows, late) if is_late]


PHONE_QUERY = re.compile(r"^(?:\+84|0)[0-9]{9}$")


def search(session: Session, unit: str, query: str, pii: KeyRing, limit: int = 100) -> list:
    """By dossier code (or its start), by citizen ID number or phone number (their keyed digests:
    the columns hold them sealed), or by words of the applicant's name."""
    query = query.strip()
    statement = select(d).where(d.c.unit == unit)
    number = re.sub(r"[ .-]", "", query)             # as typed: 079 203 001 234, 0903.123.456
    if number.isascii() and number.isdigit() and len(number) == 12:
        statement = statement.where(d.c.applicant_id_digest == pii.digest(number, ID_NUMBER))
    elif PHONE_QUERY.match(number):
        national = "0" + number[3:] if number.startswith("+84") else number     # as intake.domain stores it
        statement = statement.where(d.c.applicant_phone_digest == pii.digest(national, PHONE))
    else:
        words = fold(query).split()
        statement = statement.where(or_(
            d.c.code.startswith(query, autoescape=True),
            and_(*[d.c.applicant_key.contains(word, autoescape=True) for word in words]) if words else False,
        ))
    return session.execute(statement.order_by(d.c.submitted_at.desc()).limit(limit)).all()


def open_counts(session: Session) -> list:
    """(unit, status, count) of every dossier not yet finished, for the gauges."""
    return session.execute(select(d.c.unit, d.c.status, func.count()).where(d.c.status.in_((1, *OPEN_STATUSES, 8, 9)))
                           .group_by(d.c.unit, d.c.status)).all()
