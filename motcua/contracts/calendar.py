"""Working-day calendar and due dates for one-stop dossiers (domain reference §5).

Time limits are counted in working days (Monday–Friday minus public holidays) unless the law
says calendar days; counting starts the day after receipt and a deadline on a day off moves to
the next working day (Civil Code 2015 art. 147–148). Public holidays come from the ``holidays``
package; the government's yearly day swaps that the package does not know are operator data
(``motcua/contracts/data/calendar-overrides.yml``), never constants in code.

Everything here is pure except :func:`load_overrides`, which reads that YAML file.
"""
from __future__ import annotations

import os
import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo

import holidays
import yaml

__all__ = [
    "TZ",
    "SAME_DAY_CUTOFF",
    "MAX_TIME_LIMIT_DAYS",
    "OVERRIDES_ENV",
    "TimeLimitKind",
    "TimeLimit",
    "parse_time_limit",
    "ClockStop",
    "OverrideDay",
    "OverrideNote",
    "YearOverrides",
    "CalendarOverrides",
    "parse_overrides",
    "load_overrides",
    "WorkingCalendar",
    "CALENDAR_YEARS",
    "CalendarDay",
    "year_days",
    "due_date",
    "classify",
    "local_date",
    "overdue_at",
    "OVERDUE",
    "AT_RISK",
    "WITHIN",
    "deadline_state",
]

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SAME_DAY_CUTOFF = time(15, 0)  # received strictly after 15:00 local -> next working day
MAX_TIME_LIMIT_DAYS = 365
OVERRIDES_ENV = "MOTCUA_CALENDAR_OVERRIDES"
_PACKAGED_OVERRIDES = Path(__file__).resolve().parent / "data" / "calendar-overrides.yml"

_SATURDAY, _SUNDAY = 5, 6
_WEEKEND_NAMES = {_SATURDAY: "Thứ bảy", _SUNDAY: "Chủ nhật"}


# --------------------------------------------------------------------------------------------
# Time limits
# --------------------------------------------------------------------------------------------


class TimeLimitKind(str, Enum):
    WORKING_DAYS = "working_days"
    CALENDAR_DAYS = "calendar_days"
    SAME_DAY = "same_day"


@dataclass(frozen=True)
class TimeLimit:
    """A legal time limit as the catalogue states it; always valid once constructed."""

    kind: TimeLimitKind
    days: int  # 0 for SAME_DAY

    def __post_init__(self) -> None:
        # Accept the plain string value too ("working_days"), as read from a database row.
        try:
            kind = TimeLimitKind(self.kind)
        except ValueError:
            raise ValueError(f"unknown time limit kind {self.kind!r}") from None
        object.__setattr__(self, "kind", kind)
        if isinstance(self.days, bool) or not isinstance(self.days, int):
            raise ValueError(f"time limit days must be an integer, got {self.days!r}")
        if kind is TimeLimitKind.SAME_DAY:
            if self.days != 0:
                raise ValueError(f"a same-day time limit has 0 days, got {self.days}")
        elif not 1 <= self.days <= MAX_TIME_LIMIT_DAYS:
            raise ValueError(
                f"time limit days must be from 1 to {MAX_TIME_LIMIT_DAYS}, got {self.days}"
            )

    def __str__(self) -> str:
        if self.kind is TimeLimitKind.SAME_DAY:
            return "same day"
        unit = "working day" if self.kind is TimeLimitKind.WORKING_DAYS else "day"
        return f"{self.days} {unit}{'' if self.days == 1 else 's'}"

    def vietnamese(self) -> str:
        """As printed on the forms and the public page: "3 ngày làm việc", "15 ngày", "Trong ngày"."""
        if self.kind is TimeLimitKind.SAME_DAY:
            return "Trong ngày (nhận sau 15 giờ thì trả trong ngày làm việc tiếp theo)"
        if self.kind is TimeLimitKind.WORKING_DAYS:
            return f"{self.days} ngày làm việc"
        return f"{self.days} ngày"


_ACCEPTED_FORMS = (
    "'N working days', 'N days', 'same day', 'N ngày làm việc', 'N ngày', 'trong ngày' "
    f"(N an integer from 1 to {MAX_TIME_LIMIT_DAYS})"
)
_LIMIT_PATTERNS: tuple[tuple[re.Pattern[str], TimeLimitKind], ...] = (
    (re.compile(r"([+-]?[0-9]+) working days?"), TimeLimitKind.WORKING_DAYS),
    (re.compile(r"([+-]?[0-9]+) days?"), TimeLimitKind.CALENDAR_DAYS),
    (re.compile(r"([+-]?[0-9]+) ngày làm việc"), TimeLimitKind.WORKING_DAYS),
    (re.compile(r"([+-]?[0-9]+) ngày"), TimeLimitKind.CALENDAR_DAYS),
)
_SAME_DAY_TEXTS = frozenset({"same day", "trong ngày"})


def parse_time_limit(text: str) -> TimeLimit:
    """Read a time limit as written in the catalogue, in English or Vietnamese."""
    if not isinstance(text, str):
        raise ValueError(f"time limit must be text, got {text!r}; accepted forms: {_ACCEPTED_FORMS}")
    # NFC: Vietnamese typed on some systems arrives decomposed (e.g. "ngà" + combining grave).
    norm = " ".join(unicodedata.normalize("NFC", text).casefold().split())
    if norm in _SAME_DAY_TEXTS:
        return TimeLimit(TimeLimitKind.SAME_DAY, 0)
    for pattern, kind in _LIMIT_PATTERNS:
        match = pattern.fullmatch(norm)
        if match:
            days = int(match.group(1))
            if not 1 <= days <= MAX_TIME_LIMIT_DAYS:
                raise ValueError(
                    f"invalid time limit {text!r}: N must be an integer from 1 to "
                    f"{MAX_TIME_LIMIT_DAYS}, got {days}; accepted forms: {_ACCEPTED_FORMS}"
                )
            return TimeLimit(kind, days)
    raise ValueError(f"invalid time limit {text!r}; accepted forms: {_ACCEPTED_FORMS}")


@dataclass(frozen=True)
class ClockStop:
    """An interval during which the dossier waits for the citizen (supplement, payment)."""

    start: datetime  # timezone-aware
    end: datetime | None  # None: still stopped (waiting for the citizen)


# --------------------------------------------------------------------------------------------
# Overrides: the government's yearly swaps, edited by an operator
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverrideDay:
    day: date
    name: str
    source: str = ""  # the decision it comes from (letter number, date), so it can be checked


@dataclass(frozen=True)
class OverrideNote:
    """An operator's remark on a day the overrides do not change (e.g. a package holiday whose legal
    basis is doubtful); shown by ``motcua calendar show``, never used to count days."""

    day: date
    note: str


@dataclass(frozen=True)
class YearOverrides:
    """Decisions for one effective year: extra days off and make-up (Saturday/Sunday) working days."""

    year: int
    days_off: tuple[OverrideDay, ...] = ()
    working_days: tuple[OverrideDay, ...] = ()
    notes: tuple[OverrideNote, ...] = ()


@dataclass(frozen=True)
class CalendarOverrides:
    """All override years, sorted by year. Build it with :func:`parse_overrides` to get validation."""

    years: tuple[YearOverrides, ...] = ()
    origin: str = field(default="", compare=False)  # the file they were read from, for operators

    def days_off(self) -> dict[date, str]:
        return {o.day: o.name for y in self.years for o in y.days_off}

    def working_days(self) -> dict[date, str]:
        return {o.day: o.name for y in self.years for o in y.working_days}


_TOP_KEYS = ("years",)
_YEAR_KEYS = ("days_off", "working_days", "notes")
_ENTRY_KEYS = ("date", "name", "source")
_REQUIRED_ENTRY_KEYS = ("date", "name")  # source is optional, so files written before it still load
_NOTE_KEYS = ("date", "note")


def _keys_text(keys: Sequence[str]) -> str:
    return ", ".join(keys)


def _parse_year_key(key: object, where: str) -> int:
    if isinstance(key, int) and not isinstance(key, bool):
        year = key
    elif isinstance(key, str) and key.strip().isdigit():
        year = int(key.strip())
    else:
        raise ValueError(f"{where}: year must be an integer like 2026, got {key!r}")
    if not 1 <= year <= 9999:
        raise ValueError(f"{where}: year {year} is out of range")
    return year


def _parse_entry_date(value: object, where: str) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"{where}.date: must be a date (YYYY-MM-DD) without a time, got {value!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{where}.date: must be a date written YYYY-MM-DD, got {value!r}")


def _parse_entries(value: object, year: int, list_name: str, source: str) -> tuple[OverrideDay, ...]:
    where_list = f"{source}: years.{year}.{list_name}"
    if value is None:  # "days_off:" with every entry commented out
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{where_list}: must be a list of {{date, name}} entries, got {value!r}")
    result: list[OverrideDay] = []
    seen: dict[date, int] = {}
    for index, entry in enumerate(value):
        where = f"{where_list}[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a mapping with keys {_keys_text(_ENTRY_KEYS)}, got {entry!r}")
        unknown = [k for k in entry if k not in _ENTRY_KEYS]
        if unknown:
            raise ValueError(
                f"{where}: unknown key {unknown[0]!r}; allowed keys: {_keys_text(_ENTRY_KEYS)}"
            )
        for key in _REQUIRED_ENTRY_KEYS:
            if key not in entry:
                raise ValueError(f"{where}.{key}: missing")
        day = _parse_entry_date(entry["date"], where)
        if day.year != year:
            raise ValueError(f"{where}.date: {day.isoformat()} is outside its year {year}")
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}.name: must be a non-empty text, got {name!r}")
        if list_name == "working_days" and day.weekday() not in (_SATURDAY, _SUNDAY):
            raise ValueError(
                f"{where}.date: a make-up working day must be a Saturday or Sunday, "
                f"{day.isoformat()} is a {day.strftime('%A')}"
            )
        if day in seen:
            raise ValueError(
                f"{where}.date: {day.isoformat()} is listed twice (also {list_name}[{seen[day]}])"
            )
        source_text = entry.get("source", "")
        if not isinstance(source_text, str) or ("source" in entry and not source_text.strip()):
            raise ValueError(f"{where}.source: must be a non-empty text (the decision cited), got {source_text!r}")
        seen[day] = index
        result.append(OverrideDay(day, name.strip(), " ".join(source_text.split())))
    return tuple(result)


def _parse_notes(value: object, year: int, source: str) -> tuple[OverrideNote, ...]:
    where_list = f"{source}: years.{year}.notes"
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{where_list}: must be a list of {{date, note}} entries, got {value!r}")
    result: list[OverrideNote] = []
    seen: dict[date, int] = {}
    for index, entry in enumerate(value):
        where = f"{where_list}[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a mapping with keys {_keys_text(_NOTE_KEYS)}, got {entry!r}")
        unknown = [k for k in entry if k not in _NOTE_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {_keys_text(_NOTE_KEYS)}")
        for key in _NOTE_KEYS:
            if key not in entry:
                raise ValueError(f"{where}.{key}: missing")
        day = _parse_entry_date(entry["date"], where)
        if day.year != year:
            raise ValueError(f"{where}.date: {day.isoformat()} is outside its year {year}")
        note = entry["note"]
        if not isinstance(note, str) or not note.strip():
            raise ValueError(f"{where}.note: must be a non-empty text, got {note!r}")
        if day in seen:
            raise ValueError(f"{where}.date: {day.isoformat()} is listed twice (also notes[{seen[day]}])")
        seen[day] = index
        result.append(OverrideNote(day, " ".join(note.split())))
    return tuple(result)


def parse_overrides(data: object, source: str = "<overrides>") -> CalendarOverrides:
    """Validate what ``yaml.safe_load`` returned; every error names the file, entry and field."""
    if data is None:  # empty file
        return CalendarOverrides(origin=source)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be a mapping with the key 'years', got {type(data).__name__}")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {_keys_text(_TOP_KEYS)}")
    years_node = data.get("years")
    if years_node is None:
        return CalendarOverrides(origin=source)
    if not isinstance(years_node, dict):
        raise ValueError(f"{source}: years: must be a mapping from year to its decisions")
    parsed: dict[int, YearOverrides] = {}
    for key, body in years_node.items():
        year = _parse_year_key(key, f"{source}: years.{key}")
        where = f"{source}: years.{year}"
        if year in parsed:
            raise ValueError(f"{where}: year listed twice")
        if body is None:  # "2027:" with nothing decided yet
            body = {}
        if not isinstance(body, dict):
            raise ValueError(
                f"{where}: must be a mapping with keys {_keys_text(_YEAR_KEYS)}, got {body!r}"
            )
        unknown = [k for k in body if k not in _YEAR_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {_keys_text(_YEAR_KEYS)}")
        days_off = _parse_entries(body.get("days_off"), year, "days_off", source)
        working = _parse_entries(body.get("working_days"), year, "working_days", source)
        off_index = {o.day: i for i, o in enumerate(days_off)}
        for index, o in enumerate(working):
            if o.day in off_index:
                raise ValueError(
                    f"{where}.working_days[{index}].date: {o.day.isoformat()} is both a working day "
                    f"and a day off (days_off[{off_index[o.day]}])"
                )
        notes = _parse_notes(body.get("notes"), year, source)
        parsed[year] = YearOverrides(year, days_off, working, notes)
    return CalendarOverrides(tuple(parsed[y] for y in sorted(parsed)), origin=source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys: a second ``2026:`` block must not silently win."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in result
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unusable key {key!r}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def load_overrides(path: str | os.PathLike[str] | None = None) -> CalendarOverrides:
    """Read the overrides YAML: ``path``, else $MOTCUA_CALENDAR_OVERRIDES, else the packaged file."""
    if path is None:
        path = os.environ.get(OVERRIDES_ENV) or _PACKAGED_OVERRIDES
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    return parse_overrides(data, source=str(path))


# --------------------------------------------------------------------------------------------
# The calendar
# --------------------------------------------------------------------------------------------


CALENDAR_YEARS = range(2015, 2041)  # the years a default calendar (and `motcua calendar show`) covers


@lru_cache(maxsize=8)
def _package_days(first_year: int, last_year: int) -> tuple[dict[date, str], frozenset[date]]:
    """Holidays and make-up weekend days from the package; cached because it costs ~0.2 s."""
    vn = holidays.country_holidays("VN", years=range(first_year, last_year + 1), language="vi")
    names = {d: str(n) for d, n in vn.items() if first_year <= d.year <= last_year}
    workdays = frozenset(
        d for d in getattr(vn, "weekend_workdays", ()) if first_year <= d.year <= last_year
    )
    return names, workdays


class WorkingCalendar:
    """Monday–Friday minus Vietnamese public holidays, with the package's and the operator's swaps.

    Built eagerly into a sorted array of working-day ordinals, so every query is a set lookup or
    a bisection and ``due_date`` can run thousands of times per second.
    """

    def __init__(self, overrides: CalendarOverrides | None = None, years: range = CALENDAR_YEARS) -> None:
        if overrides is None:
            overrides = CalendarOverrides()
        if not isinstance(overrides, CalendarOverrides):
            raise ValueError(f"overrides must be CalendarOverrides, got {type(overrides).__name__}")
        if not isinstance(years, range) or years.step != 1 or len(years) == 0:
            raise ValueError(f"years must be a non-empty range with step 1, got {years!r}")
        self.years = years
        self.overrides = overrides
        first, last = years[0], years[-1]
        holiday_names, package_workdays = _package_days(first, last)
        extra_off = {d: n for d, n in overrides.days_off().items() if d.year in years}
        extra_work = {d: n for d, n in overrides.working_days().items() if d.year in years}
        both = sorted(set(extra_off) & set(extra_work))
        if both:
            raise ValueError(f"overrides list {both[0].isoformat()} both as a day off and a working day")

        # Names of days off that are not plain weekends; the operator's override name wins.
        self._off_names: dict[date, str] = {**holiday_names, **extra_off}
        working: list[int] = []
        day = date(first, 1, 1)
        end = date(last, 12, 31)
        one = timedelta(days=1)
        while day <= end:
            if day in extra_work:
                is_work = True
            elif day in extra_off:
                is_work = False
            elif day in package_workdays:
                is_work = True
            else:
                is_work = day.weekday() < _SATURDAY and day not in holiday_names
            if is_work:
                working.append(day.toordinal())
            day += one
        self._working: list[int] = working
        self._working_set: frozenset[int] = frozenset(working)
        self._first_ord = date(first, 1, 1).toordinal()
        self._last_ord = end.toordinal()

    def _ordinal(self, d: date) -> int:
        if isinstance(d, datetime) or not isinstance(d, date):
            raise ValueError(f"expected a date, got {d!r}")
        o = d.toordinal()
        if not self._first_ord <= o <= self._last_ord:
            raise ValueError(
                f"{d.isoformat()} is outside the calendar years {self.years[0]}–{self.years[-1]}"
            )
        return o

    def _from_index(self, index: int, after: date) -> date:
        if index >= len(self._working):
            raise ValueError(
                f"the working day sought after {after.isoformat()} is beyond the calendar's last year "
                f"{self.years[-1]}"
            )
        return date.fromordinal(self._working[index])

    def is_working_day(self, d: date) -> bool:
        return self._ordinal(d) in self._working_set

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after ``d``."""
        return self._from_index(bisect_right(self._working, self._ordinal(d)), d)

    def add_working_days(self, d: date, n: int) -> date:
        """The n-th working day strictly after ``d``; n=0 gives ``d`` itself if working, else the next."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        o = self._ordinal(d)
        if n == 0:
            return d if o in self._working_set else self.next_working_day(d)
        return self._from_index(bisect_right(self._working, o) + n - 1, d)

    def working_days_between(self, start: date, end: date) -> int:
        """Number of working days in (start, end]; 0 when end <= start."""
        a, b = self._ordinal(start), self._ordinal(end)
        if b <= a:
            return 0
        return bisect_right(self._working, b) - bisect_right(self._working, a)

    def day_off_name(self, d: date) -> str | None:
        """Why ``d`` is not worked (holiday or override name, else "Thứ bảy"/"Chủ nhật"); None if worked."""
        if self.is_working_day(d):
            return None
        name = self._off_names.get(d)
        if name is not None:
            return name
        return _WEEKEND_NAMES.get(d.weekday(), "Ngày nghỉ")


@dataclass(frozen=True)
class CalendarDay:
    """One day of a year that is not a plain weekday or weekend, and where that comes from."""

    day: date
    working: bool  # False: a day off; True: a make-up working day (a Saturday or Sunday)
    name: str
    origin: str  # "holidays" (the package) or "overrides" (the operator's file)
    source: str  # the package and its version, or the decision the override cites ("" if none)
    file: str = ""  # the overrides file, for an override
    note: str = ""  # the operator's remark on that day (overrides' notes), if any


def _package_label() -> str:
    return f"holidays {getattr(holidays, '__version__', '?')} (VN)"


def year_days(year: int, overrides: CalendarOverrides | None = None) -> list[CalendarDay]:
    """Every day off and make-up working day of ``year`` that is not a plain weekday or weekend, in date
    order, each with its origin, so an operator can check them against the official decisions.

    The state shown is the calendar's own (an override wins over the package).
    """
    if isinstance(year, bool) or not isinstance(year, int) or year not in CALENDAR_YEARS:
        raise ValueError(f"year must be an integer from {CALENDAR_YEARS[0]} to {CALENDAR_YEARS[-1]}, got {year!r}")
    overrides = overrides if overrides is not None else CalendarOverrides()
    calendar = WorkingCalendar(overrides, years=range(year, year + 1))
    package_off, package_work = _package_days(year, year)
    mine = next((y for y in overrides.years if y.year == year), YearOverrides(year))
    override_by_day = {o.day: o for o in (*mine.days_off, *mine.working_days)}
    notes = {n.day: n.note for n in mine.notes}
    file = overrides.origin or "overrides"
    result: list[CalendarDay] = []
    for day in sorted(set(package_off) | set(package_work) | set(override_by_day)):
        working = calendar.is_working_day(day)
        override = override_by_day.get(day)
        note = notes.get(day, "")
        if override is not None:
            result.append(CalendarDay(day, working, override.name, "overrides", override.source, file, note))
        elif working:
            result.append(CalendarDay(day, True, "Ngày làm bù", "holidays", _package_label(), note=note))
        else:
            result.append(CalendarDay(day, False, package_off[day], "holidays", _package_label(), note=note))
    return result


# --------------------------------------------------------------------------------------------
# Due dates
# --------------------------------------------------------------------------------------------


def _require_aware(instant: object, what: str) -> datetime:
    if not isinstance(instant, datetime):
        raise ValueError(f"{what} must be a datetime, got {instant!r}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {instant.isoformat()}")
    return instant


def local_date(instant: datetime) -> date:
    """The Asia/Ho_Chi_Minh date of an aware instant (the date a desk officer would write)."""
    return _require_aware(instant, "instant").astimezone(TZ).date()


def _stop_intervals(
    received_at: datetime, stops: Sequence[ClockStop]
) -> tuple[list[tuple[int, int]], datetime | None, bool]:
    """Validate stops; return merged (start, end] local-date ordinal ranges, the last end, and open?"""
    ranges: list[tuple[int, int]] = []
    last_end: datetime | None = None
    still_open = False
    for index, stop in enumerate(stops):
        if not isinstance(stop, ClockStop):
            raise ValueError(f"stops[{index}] must be a ClockStop, got {stop!r}")
        start = _require_aware(stop.start, f"stops[{index}].start")
        if start < received_at:
            raise ValueError(
                f"stops[{index}] starts at {start.isoformat()}, before the receipt {received_at.isoformat()}"
            )
        if stop.end is None:
            still_open = True
            continue
        end = _require_aware(stop.end, f"stops[{index}].end")
        if end < start:
            raise ValueError(f"stops[{index}] ends at {end.isoformat()}, before it starts {start.isoformat()}")
        if last_end is None or end > last_end:
            last_end = end
        a, b = local_date(start).toordinal(), local_date(end).toordinal()
        if b > a:
            ranges.append((a, b))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged, last_end, still_open


def _same_day_due(moment: datetime, calendar: WorkingCalendar) -> date:
    local = moment.astimezone(TZ)
    d = local.date()
    if calendar.is_working_day(d) and local.time() <= SAME_DAY_CUTOFF:
        return d
    return calendar.next_working_day(d)


def due_date(
    received_at: datetime,
    limit: TimeLimit,
    calendar: WorkingCalendar,
    stops: Sequence[ClockStop] = (),
) -> date | None:
    """The appointment (due) date; None while the clock is stopped waiting for the citizen.

    Days inside a stop's (start date, end date] are not counted: the citizen, not the agency,
    holds the dossier then. Merged stops are never counted twice.
    """
    received_at = _require_aware(received_at, "received_at")
    if not isinstance(limit, TimeLimit):
        raise ValueError(f"limit must be a TimeLimit, got {limit!r}")
    if not isinstance(calendar, WorkingCalendar):
        raise ValueError(f"calendar must be a WorkingCalendar, got {calendar!r}")
    stopped, last_end, still_open = _stop_intervals(received_at, stops)
    if still_open:
        return None
    received_local = received_at.astimezone(TZ)
    received_day = received_local.date()
    calendar.is_working_day(received_day)  # fail early for a receipt outside the calendar years

    if limit.kind is TimeLimitKind.SAME_DAY:
        moment = received_local if last_end is None else max(received_local, last_end)
        return _same_day_due(moment, calendar)

    # Walk the counted stretches between stops: (pos, a] counts, (a, b] does not.
    pos = received_day.toordinal()
    remaining = limit.days
    if limit.kind is TimeLimitKind.WORKING_DAYS:
        for a, b in stopped:
            available = calendar.working_days_between(date.fromordinal(pos), date.fromordinal(a))
            if available >= remaining:
                break
            remaining -= available
            pos = b
        return calendar.add_working_days(date.fromordinal(pos), remaining)

    for a, b in stopped:  # CALENDAR_DAYS
        available = a - pos
        if available >= remaining:
            break
        remaining -= available
        pos = b
    deadline = date.fromordinal(pos + remaining)
    return deadline if calendar.is_working_day(deadline) else calendar.next_working_day(deadline)


def classify(done_at: datetime, due: date) -> str:
    """Result class for reports: "early", "on_time" or "late", by the local date of completion."""
    if isinstance(due, datetime) or not isinstance(due, date):
        raise ValueError(f"due must be a date, got {due!r}")
    done = local_date(_require_aware(done_at, "done_at"))
    if done < due:
        return "early"
    if done == due:
        return "on_time"
    return "late"


def overdue_at(due: date) -> datetime:
    """The UTC instant a dossier due on ``due`` becomes overdue: local midnight after that day."""
    if isinstance(due, datetime) or not isinstance(due, date):
        raise ValueError(f"due must be a date, got {due!r}")
    return datetime.combine(due + timedelta(days=1), time(0), tzinfo=TZ).astimezone(timezone.utc)


# What the deadline rule says of a due date.
OVERDUE, AT_RISK, WITHIN = "overdue", "at_risk", "within_deadline"


def deadline_state(due: date | None, today: date, warn_until: date | None = None) -> str:
    """THE overdue rule, for a dossier and for each step of it, wherever it is asked (routing's
    scan, the desk's list of what is due): overdue from the first moment of the day after the due
    date (local; :func:`overdue_at`), at risk when due on or before ``warn_until`` (today plus the
    warning's working days: the scheduler's rule), else within the deadline."""
    if due is None:
        return WITHIN
    if due < today:
        return OVERDUE
    if warn_until is not None and due <= warn_until:
        return AT_RISK
    return WITHIN


_DEFAULT: WorkingCalendar | None = None


def default_calendar() -> WorkingCalendar:
    """The calendar of the shipped (or ``MOTCUA_CALENDAR_OVERRIDES``) overrides, built once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = WorkingCalendar(load_overrides())
    return _DEFAULT
