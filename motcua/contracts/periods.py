"""A reporting period: ``from`` and ``to`` as ISO dates, both days included, at most a year."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from motcua.contracts.calendar import TZ
from motcua.contracts.refusals import Invalid

MAX_DAYS = 366      # a leap year, first and last day included


@dataclass(frozen=True)
class Period:
    first: date
    last: date

    @property
    def begin(self) -> datetime:
        """The first day's local midnight (included)."""
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=TZ)

    @property
    def end(self) -> datetime:
        """The local midnight after the last day (excluded)."""
        return datetime(self.last.year, self.last.month, self.last.day, tzinfo=TZ) + timedelta(days=1)


def parse_period(start, end, *, start_field: str = "from", end_field: str = "to") -> Period:
    """The period between two ISO dates, refused with the field at fault."""
    first = _date(start, start_field, "2026-01-01")
    last = _date(end, end_field, "2026-12-31")
    if last < first:
        raise Invalid(end_field, f"must not be before {start_field}")
    if (last - first).days + 1 > MAX_DAYS:
        raise Invalid(end_field, f"a period is at most {MAX_DAYS} days")
    return Period(first, last)


def _date(value, field: str, example: str) -> date:
    if not isinstance(value, str):
        raise Invalid(field, f"must be an ISO date such as {example}, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(field, f"must be an ISO date such as {example}, got {value!r}") from None
