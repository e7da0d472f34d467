"""The time left before a deadline, as an official or a citizen reads it: "còn 2 ngày 3 giờ làm
việc", "quá hạn 1 ngày".

Counted in working time: the unit's office hours on working days of the calendar (a day's office
hours are one working day). A dossier is due at the end of its due date (``calendar.overdue_at``:
local midnight after it), which in working time is the close of that day's office hours; what is
overdue is counted from there in the same working time. While the clock is stopped (waiting on
the citizen) nothing is counted and the text says so.

Pure: the instant, the due date, the calendar and the office hours are all parameters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping
from datetime import date, datetime, time, timedelta

from motcua.contracts.calendar import TZ, WorkingCalendar, local_date, overdue_at

__all__ = ["OfficeHours", "DEFAULT_OFFICE_HOURS", "working_minutes", "remaining_minutes", "remaining_text",
           "STOPPED_TEXT", "office_hours_of"]

STOPPED_TEXT = "tạm dừng tính thời gian (chờ công dân)"
_PERIOD = re.compile(r"^\s*([0-2]?[0-9]):([0-5][0-9])\s*-\s*([0-2]?[0-9]):([0-5][0-9])\s*$")


@dataclass(frozen=True)
class OfficeHours:
    """A working day's office periods, local time, in order and not overlapping."""

    periods: tuple[tuple[time, time], ...]

    @classmethod
    def parse(cls, text: object) -> "OfficeHours":
        """``"07:30-11:30, 13:00-17:00"``; a ValueError that says what is wrong otherwise."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"office hours must be periods such as '07:30-11:30, 13:00-17:00', got {text!r}")
        periods = []
        for part in text.split(","):
            match = _PERIOD.match(part)
            if not match:
                raise ValueError(f"office hours: {part.strip()!r} is not a period HH:MM-HH:MM")
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or h2 > 23:
                raise ValueError(f"office hours: {part.strip()!r} has an hour past 23")
            start, end = time(h1, m1), time(h2, m2)
            if end <= start:
                raise ValueError(f"office hours: {part.strip()!r} ends before it starts")
            if periods and start < periods[-1][1]:
                raise ValueError(f"office hours: {part.strip()!r} starts before the previous period ends")
            periods.append((start, end))
        return cls(tuple(periods))

    def __str__(self) -> str:
        return ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in self.periods)

    @property
    def minutes_per_day(self) -> int:
        return sum(_minute(b) - _minute(a) for a, b in self.periods)

    def minutes_before(self, moment: time) -> int:
        """Office minutes of a day before a local time of that day."""
        m = _minute(moment)
        return sum(max(0, min(m, _minute(b)) - _minute(a)) for a, b in self.periods)


# Ho Chi Minh City's administrative office hours (morning 7:30-11:30, afternoon 13:00-17:00)
# [verify]: a unit's own hours are catalogue data (``office_hours`` of the unit); these apply
# where a unit has none.
DEFAULT_OFFICE_HOURS = OfficeHours.parse("07:30-11:30, 13:00-17:00")


def _minute(t: time) -> int:
    return t.hour * 60 + t.minute


def _local_minutes(instant: datetime, hours: OfficeHours) -> tuple[date, int]:
    local = instant.astimezone(TZ)
    return local.date(), hours.minutes_before(local.time())


def working_minutes(start: datetime, end: datetime, calendar: WorkingCalendar, hours: OfficeHours) -> int:
    """Office minutes on working days in [start, end); 0 when end <= start."""
    if end <= start:
        return 0
    first, before_start = _local_minutes(start, hours)
    last, before_end = _local_minutes(end, hours)
    per_day = hours.minutes_per_day
    if first == last:
        return before_end - before_start if calendar.is_working_day(first) else 0
    total = (per_day - before_start) if calendar.is_working_day(first) else 0
    total += calendar.working_days_between(first, last - timedelta(days=1)) * per_day
    total += before_end if calendar.is_working_day(last) else 0
    return total


def remaining_minutes(now: datetime, due: date, calendar: WorkingCalendar, hours: OfficeHours) -> int:
    """Working minutes left until the end of ``due`` (positive), or overdue since then (negative;
    0 once overdue but with no working time passed yet, such as the weekend after a Friday)."""
    deadline = overdue_at(due)
    if now < deadline:
        return working_minutes(now, deadline, calendar, hours)
    return -working_minutes(deadline, now, calendar, hours)


def _amount(minutes: int, per_day: int, with_minutes: bool) -> str:
    days, rest = divmod(minutes, per_day)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} ngày"] if days else []
    if hours:
        parts.append(f"{hours} giờ")
    if with_minutes and not parts and mins:
        parts.append(f"{mins} phút")
    return " ".join(parts)


def remaining_text(now: datetime, due: date | None, calendar: WorkingCalendar, hours: OfficeHours,
                   clock_stopped: bool = False) -> str | None:
    """"còn 2 ngày 3 giờ làm việc", "còn 45 phút làm việc", "đến hạn hôm nay" (today's office
    hours over), "quá hạn 1 ngày", "quá hạn 3 giờ", "quá hạn dưới 1 giờ"; the stopped clock's text;
    None without a due date (nothing to count against)."""
    if clock_stopped:
        return STOPPED_TEXT
    if due is None:
        return None
    per_day = hours.minutes_per_day
    if now < overdue_at(due):
        left = working_minutes(now, overdue_at(due), calendar, hours)
        if left <= 0:
            return "đến hạn hôm nay" if local_date(now) == due else "đến hạn"
        return f"còn {_amount(left, per_day, with_minutes=True)} làm việc"
    late = working_minutes(overdue_at(due), now, calendar, hours)
    return f"quá hạn {_amount(late, per_day, with_minutes=False) or 'dưới 1 giờ'}"


@lru_cache(maxsize=256)
def _parsed(text: str) -> OfficeHours:
    return OfficeHours.parse(text)


def office_hours_of(unit: Mapping | None) -> OfficeHours:
    """A unit's hours as the catalogue gives the unit (checked when the catalogue was loaded);
    the default hours for a unit without them or not (yet) known."""
    text = (unit or {}).get("office_hours")
    return _parsed(text) if text else DEFAULT_OFFICE_HOURS
