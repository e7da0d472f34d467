"""Routing's queries over many dossiers: an agency's queue, the gauges and report II.06a, from its
roll-ups or by a scan of the workflows (a workflow itself is read and written by
unit_of_work.SqlRepository, which also keeps the roll-ups)."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Sequence

from sqlalchemy import and_, case, delete, false, func, literal, or_, select, union_all
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from motcua.contracts.calendar import TZ, local_date
from services.routing import models

w, s, ru, rc = models.workflows, models.steps, models.report_rollups, models.report_rollup_changes

ROLLUP_COUNTERS = ("received", "early", "on_time", "late", "pending_change", "overdue_change")
SPANS = ("day", "month", "year")
ONE_DAY = timedelta(days=1)


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
    """The II.06a figures per (unit, field) for [start, end): from the roll-ups when both are local
    midnights (every reporting period's are), by a scan of the workflows otherwise."""
    first, last = local_date(start), local_date(end - ONE_DAY)
    if start == _midnight(first) and end == _midnight(last + ONE_DAY):
        return rollup_report_rows(session, unit, first, last)
    return scan_report_rows(session, unit, start, end)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=TZ)


def scan_report_rows(session: Session, unit: str | None, start: datetime, end: datetime) -> list:
    """The II.06a figures per (unit, field) for [start, end), counted by the database from the
    workflows themselves: a scan that grows with the rows (the reference the roll-ups are checked
    against, and what instants other than local midnights need).

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


# --- report II.06a's roll-ups ------------------------------------------------------------------

_KEYS = ("span", "day", "unit", "field", "channel")


def add_to_rollups(session: Session, rows: Sequence[dict]) -> None:
    """Add ``rows`` (keys and counter changes) to the roll-ups: one INSERT of change rows, which
    waits for nobody (an upsert of the roll-ups themselves made every save of a desk wait for the
    previous one's commit: the busiest lock of the throughput benchmark)."""
    if rows:
        session.execute(insert(rc).values(list(rows)))


def _fold_statement():
    moved = delete(rc).returning(*(rc.c[name] for name in (*_KEYS, *ROLLUP_COUNTERS))).cte("moved")
    summed = (select(*(moved.c[key] for key in _KEYS), *(func.sum(moved.c[name]) for name in ROLLUP_COUNTERS))
              .group_by(*(moved.c[key] for key in _KEYS)).order_by(*(moved.c[key] for key in _KEYS)))
    fold = insert(ru).from_select([*_KEYS, *ROLLUP_COUNTERS], summed).add_cte(moved)
    return fold.on_conflict_do_update(index_elements=[ru.c[key] for key in _KEYS],
                                      set_={name: ru.c[name] + fold.excluded[name] for name in ROLLUP_COUNTERS})


_FOLD = _fold_statement()


def fold_rollup_changes(session: Session) -> int:
    """Move the change rows into the roll-ups, summed per key, in one statement (what it moves is
    deleted and added at once: a report sees each change once, before or after). Replicas folding
    at once each move what they deleted; they lock the roll-up rows in key order."""
    return session.execute(_FOLD).rowcount


def _within(ranges: Sequence[tuple[str, date | None, date]], columns):
    """Roll-up rows of the given (span, first day or None, last day) ranges."""
    conditions = [and_(columns.span == span, *([columns.day >= lo] if lo is not None else []), columns.day <= hi)
                  for span, lo, hi in ranges]
    return or_(*conditions) if conditions else false()


def rollup_report_rows(session: Session, unit: str | None, first: date, last: date) -> list:
    """The II.06a figures per (unit, field) for the days first … last, the scan's, summed from the
    roll-ups (services/routing/reports.py says how): the rows of every day before the period give the
    balances at its start, those of its days what happened in it. A (unit, field) with nothing pending
    at the start and nothing received in the period is left out, as the scan leaves it out."""
    both = union_all(select(*(ru.c[name] for name in (*_KEYS, *ROLLUP_COUNTERS))),
                     select(*(rc.c[name] for name in (*_KEYS, *ROLLUP_COUNTERS)))).subquery("rollups")
    ru_ = both.c
    earlier, inside = _within(before_ranges(first), ru_), _within(span_ranges(first, last), ru_)

    def total(column, *where):
        return func.coalesce(func.sum(column).filter(*where), 0)

    carried_over = total(ru_.pending_change, earlier)
    online = total(ru_.received, inside, ru_.channel == "online")
    in_person_or_post = total(ru_.received, inside, ru_.channel != "online")
    overdue = total(ru_.overdue_change)
    statement = (
        select(ru_.unit, ru_.field, carried_over.label("carried_over"), online.label("online"),
               in_person_or_post.label("in_person_or_post"), total(ru_.early, inside).label("early"),
               total(ru_.on_time, inside).label("on_time"), total(ru_.late, inside).label("late"),
               (total(ru_.pending_change) - overdue).label("within_deadline"), overdue.label("overdue"))
        .where(or_(earlier, inside))
        .group_by(ru_.unit, ru_.field)
        .having(carried_over + total(ru_.received, inside) > 0)
        .order_by(ru_.unit, ru_.field))
    if unit:
        statement = statement.where(ru_.unit == unit)
    return session.execute(statement).all()


def span_ranges(first: date, last: date) -> list[tuple[str, date, date]]:
    """The days first … last as the fewest roll-up spans: whole years, whole months, single days;
    (span, first span's day, last span's day), neighbouring spans of one kind in one range."""
    ranges: list[tuple[str, date, date]] = []
    day = first
    while day <= last:
        if day.month == 1 and day.day == 1 and date(day.year, 12, 31) <= last:
            span, following = "year", date(day.year + 1, 1, 1)
        elif day.day == 1 and _next_month(day) - ONE_DAY <= last:
            span, following = "month", _next_month(day)
        else:
            span, following = "day", day + ONE_DAY
        if ranges and ranges[-1][0] == span:
            ranges[-1] = (span, ranges[-1][1], day)
        else:
            ranges.append((span, day, day))
        day = following
    return ranges


def before_ranges(first: date) -> list[tuple[str, date | None, date]]:
    """Every day before ``first``: the years before its year, the months of its year before its
    month, the days of its month before it (the first range has no lower bound)."""
    year, month = date(first.year, 1, 1), first.replace(day=1)
    ranges: list[tuple[str, date | None, date]] = [("year", None, year - ONE_DAY)]
    if month > year:
        ranges.append(("month", year, month - ONE_DAY))
    if first > month:
        ranges.append(("day", month, first - ONE_DAY))
    return ranges


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)
