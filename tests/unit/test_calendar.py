"""Working-day calendar and due dates (domain reference §5): every edge asserts an exact date."""
from __future__ import annotations

import unicodedata
from datetime import date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motcua.contracts.calendar import (
    AT_RISK,
    OVERDUE,
    WITHIN,
    deadline_state,
    OVERRIDES_ENV,
    SAME_DAY_CUTOFF,
    TZ,
    CalendarOverrides,
    ClockStop,
    TimeLimit,
    TimeLimitKind,
    WorkingCalendar,
    classify,
    due_date,
    load_overrides,
    local_date,
    overdue_at,
    parse_overrides,
    parse_time_limit,
)

UTC = timezone.utc
CAL = WorkingCalendar()  # package holidays only: tests must not depend on the packaged overrides

WD = TimeLimitKind.WORKING_DAYS
CD = TimeLimitKind.CALENDAR_DAYS
SAME_DAY = TimeLimit(TimeLimitKind.SAME_DAY, 0)


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0, ss: int = 0) -> datetime:
    """An instant in Vietnam local time."""
    return datetime(y, m, d, hh, mm, ss, tzinfo=TZ)


def wd(n: int) -> TimeLimit:
    return TimeLimit(WD, n)


def cd(n: int) -> TimeLimit:
    return TimeLimit(CD, n)


# A test-only set of government decisions (not real ones): Thursday 29/4/2027 off,
# paid back on Saturday 24/4/2027; plus two entries that contradict the package.
TEST_OVERRIDES = parse_overrides(
    {
        "years": {
            2026: {
                "days_off": [{"date": date(2026, 8, 22), "name": "Huỷ làm bù"}],
                "working_days": [],
            },
            2027: {
                "days_off": [{"date": date(2027, 4, 29), "name": "Nghỉ hoán đổi 29/4"}],
                "working_days": [
                    {"date": date(2027, 4, 24), "name": "Làm bù cho ngày 29/4"},
                    {"date": "2027-02-06", "name": "Trực Tết"},
                ],
            },
        }
    },
    source="test.yml",
)
CAL_OVR = WorkingCalendar(TEST_OVERRIDES)


# --------------------------------------------------------------------------------------------
# Holidays known to the package
# --------------------------------------------------------------------------------------------


def test_tet_2026_three_working_days() -> None:
    # Fri 13/2 -> Tết 16–20/2 and the weekend are skipped: Mon 23 (1), Tue 24 (2), Wed 25 (3).
    assert due_date(at(2026, 2, 13, 10), wd(3), CAL) == date(2026, 2, 25)
    for day in range(16, 21):
        assert not CAL.is_working_day(date(2026, 2, day))
    assert CAL.day_off_name(date(2026, 2, 17)) == "Tết Nguyên Đán"
    assert CAL.working_days_between(date(2026, 2, 13), date(2026, 2, 25)) == 3


def test_tet_2027_three_working_days() -> None:
    # Tết 2027 is Thu 4/2 .. Wed 10/2: Thu 11 (1), Fri 12 (2), Mon 15 (3).
    assert due_date(at(2027, 2, 3, 9), wd(3), CAL) == date(2027, 2, 15)
    assert [CAL.is_working_day(date(2027, 2, d)) for d in range(3, 12)] == [
        True, False, False, False, False, False, False, False, True
    ]
    assert CAL.day_off_name(date(2027, 2, 6)) == "Tết Nguyên Đán"  # a Saturday: holiday name wins


def test_reunification_and_labour_day_2026() -> None:
    # Thu 30/4 and Fri 1/5 off, then the weekend: Mon 4/5 (1), Tue 5/5 (2).
    assert due_date(at(2026, 4, 29), wd(2), CAL) == date(2026, 5, 5)
    assert CAL.next_working_day(date(2026, 4, 29)) == date(2026, 5, 4)


def test_labour_day_2027_observed_monday() -> None:
    # Fri 30/4 off, Sat 1/5 holiday observed on Mon 3/5: first working day Tue 4/5.
    assert due_date(at(2027, 4, 29), wd(1), CAL) == date(2027, 5, 4)
    assert CAL.day_off_name(date(2027, 5, 3)) is not None


def test_hung_kings_2026_observed_monday() -> None:
    assert due_date(at(2026, 4, 24), wd(1), CAL) == date(2026, 4, 28)


def test_national_day_bridge_2026() -> None:
    # The package swaps Mon 31/8 off for Saturday 22/8 worked; 1/9 and 2/9 are the holidays.
    assert CAL.is_working_day(date(2026, 8, 22))
    assert CAL.day_off_name(date(2026, 8, 22)) is None
    assert not CAL.is_working_day(date(2026, 8, 31))
    assert due_date(at(2026, 8, 21), wd(1), CAL) == date(2026, 8, 22)
    # Fri 28/8 -> Thu 3/9 (1), Fri 4/9 (2), Mon 7/9 (3).
    assert due_date(at(2026, 8, 28), wd(3), CAL) == date(2026, 9, 7)
    assert CAL.working_days_between(date(2026, 8, 20), date(2026, 8, 24)) == 3


# --------------------------------------------------------------------------------------------
# Operator overrides
# --------------------------------------------------------------------------------------------


def test_override_make_up_saturday_counts() -> None:
    assert due_date(at(2027, 4, 23), wd(1), CAL) == date(2027, 4, 26)
    assert due_date(at(2027, 4, 23), wd(1), CAL_OVR) == date(2027, 4, 24)
    assert CAL_OVR.day_off_name(date(2027, 4, 24)) is None


def test_override_extra_day_off() -> None:
    assert due_date(at(2027, 4, 28), wd(1), CAL) == date(2027, 4, 29)
    # 29/4 override, 30/4 holiday, weekend, 3/5 observed Labour Day -> Tue 4/5.
    assert due_date(at(2027, 4, 28), wd(1), CAL_OVR) == date(2027, 5, 4)
    assert CAL_OVR.day_off_name(date(2027, 4, 29)) == "Nghỉ hoán đổi 29/4"


def test_override_wins_over_package() -> None:
    assert CAL_OVR.is_working_day(date(2027, 2, 6))  # a Tết Saturday made a working day
    assert not CAL_OVR.is_working_day(date(2026, 8, 22))  # the package's make-up Saturday cancelled
    assert CAL_OVR.day_off_name(date(2026, 8, 22)) == "Huỷ làm bù"
    assert due_date(at(2026, 8, 21), wd(1), CAL_OVR) == date(2026, 8, 24)


def test_calendar_rejects_contradictory_overrides_built_by_hand() -> None:
    from motcua.contracts.calendar import OverrideDay, YearOverrides

    day = OverrideDay(date(2027, 4, 24), "x")
    bad = CalendarOverrides((YearOverrides(2027, days_off=(day,), working_days=(day,)),))
    with pytest.raises(ValueError, match="2027-04-24"):
        WorkingCalendar(bad)


# --------------------------------------------------------------------------------------------
# Calendar days and same-day procedures
# --------------------------------------------------------------------------------------------


def test_calendar_days_plain() -> None:
    assert due_date(at(2026, 3, 2), cd(10), CAL) == date(2026, 3, 12)
    assert due_date(at(2026, 3, 6), cd(1), CAL) == date(2026, 3, 9)  # Saturday -> Monday


def test_calendar_days_deadline_on_holiday_moves_to_next_working_day() -> None:
    # 15/4 + 15 = Thu 30/4 (holiday) -> 1/5 holiday -> weekend -> Mon 4/5.
    assert due_date(at(2026, 4, 15), cd(15), CAL) == date(2026, 5, 4)
    # 12/4 + 15 = Mon 27/4 (Hùng Kings observed) -> Tue 28/4.
    assert due_date(at(2026, 4, 12), cd(15), CAL) == date(2026, 4, 28)
    # 2/2/2026 + 15 = Tue 17/2 (Tết) -> Mon 23/2.
    assert due_date(at(2026, 2, 2), cd(15), CAL) == date(2026, 2, 23)


def test_same_day_cutoff() -> None:
    assert SAME_DAY_CUTOFF == time(15, 0)
    assert due_date(at(2026, 3, 10, 14, 59), SAME_DAY, CAL) == date(2026, 3, 10)
    assert due_date(at(2026, 3, 10, 15, 0), SAME_DAY, CAL) == date(2026, 3, 10)
    assert due_date(at(2026, 3, 10, 15, 0, 1), SAME_DAY, CAL) == date(2026, 3, 11)
    assert due_date(at(2026, 3, 10, 15, 1), SAME_DAY, CAL) == date(2026, 3, 11)
    assert due_date(at(2026, 3, 13, 15, 1), SAME_DAY, CAL) == date(2026, 3, 16)  # Friday -> Monday


def test_same_day_uses_local_time_not_utc() -> None:
    assert due_date(datetime(2026, 3, 10, 7, 59, tzinfo=UTC), SAME_DAY, CAL) == date(2026, 3, 10)
    assert due_date(datetime(2026, 3, 10, 8, 1, tzinfo=UTC), SAME_DAY, CAL) == date(2026, 3, 11)
    # 17:30 UTC on the 9th is 00:30 on the 10th in Vietnam.
    assert due_date(datetime(2026, 3, 9, 17, 30, tzinfo=UTC), SAME_DAY, CAL) == date(2026, 3, 10)


def test_receipt_on_a_sunday() -> None:
    assert due_date(at(2026, 3, 8), wd(3), CAL) == date(2026, 3, 11)
    assert due_date(at(2026, 3, 8, 9), SAME_DAY, CAL) == date(2026, 3, 9)
    assert due_date(at(2026, 3, 8), cd(7), CAL) == date(2026, 3, 16)  # Sun 15 -> Mon 16


def test_receipt_on_a_holiday() -> None:
    assert due_date(at(2026, 9, 2, 9), wd(2), CAL) == date(2026, 9, 4)
    assert due_date(at(2026, 4, 30, 9), SAME_DAY, CAL) == date(2026, 5, 4)
    assert due_date(at(2026, 2, 17, 9), cd(3), CAL) == date(2026, 2, 23)  # Fri 20 (Tết) -> Mon 23


# --------------------------------------------------------------------------------------------
# Clock stops (waiting for the citizen)
# --------------------------------------------------------------------------------------------


def test_stop_within_one_day_costs_nothing() -> None:
    stop = ClockStop(at(2026, 3, 3, 9), at(2026, 3, 3, 17))
    assert due_date(at(2026, 3, 2, 9), wd(3), CAL, [stop]) == date(2026, 3, 5)


def test_stop_tuesday_to_thursday_removes_wednesday_and_thursday() -> None:
    stop = ClockStop(at(2026, 3, 3, 10), at(2026, 3, 5, 9))
    # Tue 3 (1), Fri 6 (2), Mon 9 (3).
    assert due_date(at(2026, 3, 2, 9), wd(3), CAL, [stop]) == date(2026, 3, 9)


def test_two_separate_stops() -> None:
    stops = [
        ClockStop(at(2026, 3, 3, 10), at(2026, 3, 5, 9)),  # removes Wed 4, Thu 5
        ClockStop(at(2026, 3, 9, 8), at(2026, 3, 10, 16)),  # removes Tue 10
    ]
    assert due_date(at(2026, 3, 2, 9), wd(5), CAL) == date(2026, 3, 9)
    # Tue 3 (1), Fri 6 (2), Mon 9 (3), Wed 11 (4), Thu 12 (5).
    assert due_date(at(2026, 3, 2, 9), wd(5), CAL, stops) == date(2026, 3, 12)
    assert due_date(at(2026, 3, 2, 9), wd(5), CAL, stops[::-1]) == date(2026, 3, 12)


def test_overlapping_stops_are_merged() -> None:
    stops = [
        ClockStop(at(2026, 3, 3, 10), at(2026, 3, 5, 9)),
        ClockStop(at(2026, 3, 4, 10), at(2026, 3, 6, 9)),
    ]
    # Union (3/3, 6/3] removes Wed, Thu, Fri: Tue 3 (1), Mon 9 (2), ... Thu 12 (5).
    assert due_date(at(2026, 3, 2, 9), wd(5), CAL, stops) == date(2026, 3, 12)
    same_twice = [stops[0], stops[0]]
    assert due_date(at(2026, 3, 2, 9), wd(5), CAL, same_twice) == date(2026, 3, 11)
    # Calendar days: 2/3 + 10 = 12/3, plus 3 stopped days = Sun 15/3 -> Mon 16/3.
    assert due_date(at(2026, 3, 2, 9), cd(10), CAL, stops) == date(2026, 3, 16)


def test_calendar_days_with_two_stops() -> None:
    one = ClockStop(at(2026, 3, 3), at(2026, 3, 4))
    two = ClockStop(at(2026, 3, 5), at(2026, 3, 6))
    assert due_date(at(2026, 3, 2), cd(10), CAL, [one]) == date(2026, 3, 13)
    assert due_date(at(2026, 3, 2), cd(10), CAL, [one, two]) == date(2026, 3, 16)  # Sat 14 -> Mon


def test_stop_spanning_tet_removes_no_extra_days() -> None:
    # The stop covers only days off and one working day (Mon 23/2): Tue 24 (1), Wed 25 (2), Thu 26 (3).
    stop = ClockStop(at(2026, 2, 13, 11), at(2026, 2, 23, 9))
    assert due_date(at(2026, 2, 13, 10), wd(3), CAL, [stop]) == date(2026, 2, 26)


def test_same_day_after_stops_restarts_at_last_end() -> None:
    received = at(2026, 3, 10, 10)
    assert due_date(received, SAME_DAY, CAL, [ClockStop(at(2026, 3, 10, 11), at(2026, 3, 10, 14))]) == date(2026, 3, 10)
    assert due_date(received, SAME_DAY, CAL, [ClockStop(at(2026, 3, 10, 11), at(2026, 3, 10, 16))]) == date(2026, 3, 11)
    stops = [
        ClockStop(at(2026, 3, 10, 11), at(2026, 3, 12, 9)),
        ClockStop(at(2026, 3, 12, 10), at(2026, 3, 14, 10)),  # ends on a Saturday
    ]
    assert due_date(received, SAME_DAY, CAL, stops) == date(2026, 3, 16)


def test_open_stop_gives_no_due_date() -> None:
    closed = ClockStop(at(2026, 3, 3, 10), at(2026, 3, 5, 9))
    still = ClockStop(at(2026, 3, 6, 10), None)
    assert due_date(at(2026, 3, 2, 9), wd(5), CAL, [still]) is None
    assert due_date(at(2026, 3, 2, 9), wd(5), CAL, [closed, still]) is None
    assert due_date(at(2026, 3, 2, 9), SAME_DAY, CAL, [still]) is None
    assert due_date(at(2026, 3, 2, 9), cd(5), CAL, [still]) is None


def test_stop_at_the_receipt_instant_is_allowed() -> None:
    received = at(2026, 3, 2, 9)
    stop = ClockStop(received, at(2026, 3, 3, 9))  # removes Tue 3
    assert due_date(received, wd(1), CAL, [stop]) == date(2026, 3, 4)


# --------------------------------------------------------------------------------------------
# Invalid inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "received, stops, match",
    [
        (datetime(2026, 3, 2, 9), (), "timezone-aware"),
        (at(2026, 3, 2, 9), [ClockStop(datetime(2026, 3, 3, 9), at(2026, 3, 4))], "stops\\[0\\].start"),
        (at(2026, 3, 2, 9), [ClockStop(at(2026, 3, 3), datetime(2026, 3, 4))], "stops\\[0\\].end"),
        (at(2026, 3, 2, 9), [ClockStop(at(2026, 3, 2, 8), at(2026, 3, 4))], "before the receipt"),
        (at(2026, 3, 2, 9), [ClockStop(at(2026, 3, 4), at(2026, 3, 3))], "before it starts"),
        (at(2026, 3, 2, 9), [ClockStop(at(2026, 3, 3), at(2026, 3, 4)), "x"], "stops\\[1\\]"),
        (at(2014, 12, 30, 9), (), "outside the calendar years"),
    ],
)
def test_due_date_rejects_invalid_input(received: datetime, stops: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        due_date(received, wd(3), CAL, stops)


def test_open_stop_is_still_validated() -> None:
    with pytest.raises(ValueError, match="before the receipt"):
        due_date(at(2026, 3, 2, 9), wd(3), CAL, [ClockStop(at(2026, 3, 1), None)])


def test_calendar_rejects_out_of_range_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="outside"):
        CAL.is_working_day(date(2041, 1, 2))
    with pytest.raises(ValueError, match="outside"):
        CAL.is_working_day(date(2014, 12, 31))
    with pytest.raises(ValueError, match="beyond"):
        CAL.next_working_day(date(2040, 12, 31))
    with pytest.raises(ValueError, match="beyond"):
        due_date(at(2040, 12, 20), wd(30), CAL)
    with pytest.raises(ValueError):
        CAL.add_working_days(date(2026, 3, 2), -1)
    with pytest.raises(ValueError):
        WorkingCalendar(years=range(2026, 2026))
    with pytest.raises(ValueError):
        WorkingCalendar(years=range(2026, 2030, 2))


def test_small_year_range_calendar() -> None:
    small = WorkingCalendar(years=range(2026, 2027))
    assert small.add_working_days(date(2026, 2, 13), 3) == date(2026, 2, 25)
    with pytest.raises(ValueError):
        small.is_working_day(date(2027, 1, 4))


@pytest.mark.parametrize(
    "kind, days",
    [(WD, 0), (WD, 366), (CD, -1), (TimeLimitKind.SAME_DAY, 1), (WD, True), (WD, 1.5), ("weeks", 2)],
)
def test_time_limit_rejects_invalid_values(kind: object, days: object) -> None:
    with pytest.raises(ValueError):
        TimeLimit(kind, days)  # type: ignore[arg-type]


def test_time_limit_accepts_kind_as_plain_string() -> None:
    assert TimeLimit("working_days", 3) == wd(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Basic calendar queries
# --------------------------------------------------------------------------------------------


def test_calendar_queries() -> None:
    assert CAL.add_working_days(date(2026, 3, 7), 0) == date(2026, 3, 9)  # Saturday -> Monday
    assert CAL.add_working_days(date(2026, 3, 9), 0) == date(2026, 3, 9)
    assert CAL.add_working_days(date(2026, 3, 9), 1) == date(2026, 3, 10)
    assert CAL.next_working_day(date(2026, 3, 6)) == date(2026, 3, 9)
    assert CAL.working_days_between(date(2026, 3, 6), date(2026, 3, 9)) == 1
    assert CAL.working_days_between(date(2026, 3, 9), date(2026, 3, 9)) == 0
    assert CAL.working_days_between(date(2026, 3, 9), date(2026, 3, 2)) == 0
    assert CAL.day_off_name(date(2026, 3, 7)) == "Thứ bảy"
    assert CAL.day_off_name(date(2026, 3, 8)) == "Chủ nhật"
    assert CAL.day_off_name(date(2026, 3, 9)) is None
    assert CAL.day_off_name(date(2026, 9, 2)) == "Quốc khánh"


# --------------------------------------------------------------------------------------------
# parse_time_limit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3 working days", wd(3)),
        ("1 working day", wd(1)),
        ("  3   WORKING   Days ", wd(3)),
        ("15 days", cd(15)),
        ("1 day", cd(1)),
        ("365 Days", cd(365)),
        ("same day", SAME_DAY),
        ("Same Day", SAME_DAY),
        ("3 ngày làm việc", wd(3)),
        ("3 NGÀY LÀM VIỆC", wd(3)),
        (unicodedata.normalize("NFD", "5 ngày làm việc"), wd(5)),
        ("15 ngày", cd(15)),
        ("trong ngày", SAME_DAY),
        ("Trong ngày", SAME_DAY),
    ],
)
def test_parse_time_limit_accepted_forms(text: str, expected: TimeLimit) -> None:
    assert parse_time_limit(text) == expected


@pytest.mark.parametrize(
    "limit, text",
    [(wd(3), "3 working days"), (wd(1), "1 working day"), (cd(15), "15 days"), (cd(1), "1 day"), (SAME_DAY, "same day")],
)
def test_time_limit_canonical_text(limit: TimeLimit, text: str) -> None:
    assert str(limit) == text
    assert parse_time_limit(text) == limit


@pytest.mark.parametrize(
    "text",
    ["", "   ", "abc", "0 days", "3 weeks", "-1 working days", "366 days", "1.5 days", "working days", "3", "3 ngày lễ"],
)
def test_parse_time_limit_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_time_limit(text)
    message = str(info.value)
    assert repr(text) in message
    assert "same day" in message and "ngày làm việc" in message


def test_parse_time_limit_rejects_non_text() -> None:
    with pytest.raises(ValueError):
        parse_time_limit(None)  # type: ignore[arg-type]


@given(st.sampled_from(list(TimeLimitKind)), st.integers(1, 365))
def test_time_limit_text_round_trip(kind: TimeLimitKind, days: int) -> None:
    limit = TimeLimit(kind, 0 if kind is TimeLimitKind.SAME_DAY else days)
    assert parse_time_limit(str(limit)) == limit


# --------------------------------------------------------------------------------------------
# parse_overrides / load_overrides
# --------------------------------------------------------------------------------------------


def entry(d: object, name: object = "x") -> dict:
    return {"date": d, "name": name}


def test_parse_overrides_accepts_empty_forms() -> None:
    assert parse_overrides(None) == CalendarOverrides()
    assert parse_overrides({"years": None}) == CalendarOverrides()
    result = parse_overrides({"years": {2027: None, "2026": {"days_off": None, "working_days": []}}})
    assert [y.year for y in result.years] == [2026, 2027]
    assert result.days_off() == {} and result.working_days() == {}


def test_parse_overrides_reads_entries() -> None:
    assert TEST_OVERRIDES.days_off() == {
        date(2026, 8, 22): "Huỷ làm bù",
        date(2027, 4, 29): "Nghỉ hoán đổi 29/4",
    }
    assert TEST_OVERRIDES.working_days()[date(2027, 2, 6)] == "Trực Tết"


@pytest.mark.parametrize(
    "data, expected",
    [
        ([1, 2], ["src.yml", "mapping"]),
        ({"year": {}}, ["src.yml", "unknown key 'year'"]),
        ({"years": [2026]}, ["src.yml", "years"]),
        ({"years": {"abc": {}}}, ["src.yml", "years.abc", "year"]),
        ({"years": {2026: {"days": []}}}, ["years.2026", "unknown key 'days'"]),
        ({"years": {2026: []}}, ["years.2026", "mapping"]),
        ({"years": {2026: {"days_off": {"date": "2026-01-02"}}}}, ["years.2026.days_off", "list"]),
        ({"years": {2026: {"days_off": ["2026-01-02"]}}}, ["years.2026.days_off[0]", "mapping"]),
        (
            {"years": {2026: {"days_off": [entry(date(2026, 1, 2)), entry(date(2025, 12, 31))]}}},
            ["src.yml", "years.2026.days_off[1].date", "outside its year 2026"],
        ),
        (
            {"years": {2026: {"working_days": [entry(date(2026, 1, 10)), entry(date(2026, 1, 12))]}}},
            ["years.2026.working_days[1].date", "Saturday or Sunday", "Monday"],
        ),
        (
            {"years": {2026: {"days_off": [entry(date(2026, 1, 10))], "working_days": [entry(date(2026, 1, 10))]}}},
            ["years.2026.working_days[0].date", "both", "days_off[0]"],
        ),
        (
            {"years": {2026: {"days_off": [{"date": date(2026, 1, 2)}]}}},
            ["years.2026.days_off[0].name", "missing"],
        ),
        (
            {"years": {2026: {"days_off": [{"name": "x"}]}}},
            ["years.2026.days_off[0].date", "missing"],
        ),
        (
            {"years": {2026: {"days_off": [entry(date(2026, 1, 2), "  ")]}}},
            ["years.2026.days_off[0].name", "non-empty"],
        ),
        (
            {"years": {2026: {"days_off": [entry(date(2026, 1, 2), 5)]}}},
            ["years.2026.days_off[0].name"],
        ),
        (
            {"years": {2026: {"days_off": [{"date": date(2026, 1, 2), "name": "x", "note": "y"}]}}},
            ["years.2026.days_off[0]", "unknown key 'note'"],
        ),
        (
            {"years": {2026: {"days_off": [entry("2026-13-01")]}}},
            ["years.2026.days_off[0].date", "YYYY-MM-DD"],
        ),
        (
            {"years": {2026: {"days_off": [entry(datetime(2026, 1, 2, 8))]}}},
            ["years.2026.days_off[0].date", "without a time"],
        ),
        (
            {"years": {2026: {"days_off": [entry(date(2026, 1, 2)), entry(date(2026, 1, 5)), entry(date(2026, 1, 2))]}}},
            ["years.2026.days_off[2].date", "twice", "days_off[0]"],
        ),
        ({"years": {2026: {}, "2026": {}}}, ["years.2026", "twice"]),
    ],
)
def test_parse_overrides_errors_name_entry_and_field(data: object, expected: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse_overrides(data, source="src.yml")
    message = str(info.value)
    assert message.startswith("src.yml")
    for part in expected:
        assert part in message


def test_packaged_overrides_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OVERRIDES_ENV, raising=False)
    overrides = load_overrides()
    assert isinstance(overrides, CalendarOverrides)
    assert {2026, 2027} <= {y.year for y in overrides.years}
    WorkingCalendar(overrides)  # consistent with the calendar


YAML_TEXT = """\
# test file
years:
  2027:
    days_off:
      - date: 2027-04-29
        name: Nghỉ hoán đổi
    working_days:
      - date: 2027-04-24
        name: Làm bù
"""


def test_load_overrides_from_path_and_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "o.yml"
    path.write_text(YAML_TEXT, encoding="utf-8")
    expected = {date(2027, 4, 29): "Nghỉ hoán đổi"}
    assert load_overrides(path).days_off() == expected
    assert load_overrides(str(path)).working_days() == {date(2027, 4, 24): "Làm bù"}
    monkeypatch.setenv(OVERRIDES_ENV, str(path))
    assert load_overrides().days_off() == expected


def test_load_overrides_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(YAML_TEXT.replace("2027-04-24", "2027-04-26"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yml: years\.2027\.working_days\[0\]\.date"):
        load_overrides(bad)
    dup = tmp_path / "dup.yml"
    dup.write_text("years:\n  2027: {}\n  2027: {}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dup\.yml.*duplicate key 2027"):
        load_overrides(dup)
    broken = tmp_path / "broken.yml"
    broken.write_text("years: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.yml"):
        load_overrides(broken)


# --------------------------------------------------------------------------------------------
# classify, local_date, overdue_at
# --------------------------------------------------------------------------------------------


def test_classify() -> None:
    due = date(2026, 3, 10)
    assert classify(at(2026, 3, 9, 23, 59), due) == "early"
    assert classify(at(2026, 3, 10, 0, 0), due) == "on_time"
    assert classify(at(2026, 3, 10, 23, 59), due) == "on_time"
    assert classify(datetime(2026, 3, 10, 16, 59, tzinfo=UTC), due) == "on_time"
    assert classify(datetime(2026, 3, 10, 17, 0, tzinfo=UTC), due) == "late"  # 00:00 on the 11th
    with pytest.raises(ValueError):
        classify(datetime(2026, 3, 10, 9), due)


def test_local_date() -> None:
    assert local_date(datetime(2026, 3, 9, 17, 30, tzinfo=UTC)) == date(2026, 3, 10)
    assert local_date(datetime(2026, 3, 9, 16, 59, tzinfo=UTC)) == date(2026, 3, 9)
    with pytest.raises(ValueError):
        local_date(datetime(2026, 3, 9, 16, 59))


def test_overdue_at() -> None:
    moment = overdue_at(date(2026, 3, 10))
    assert moment == datetime(2026, 3, 10, 17, 0, tzinfo=UTC)
    assert moment.utcoffset() == timedelta(0)
    assert moment.astimezone(TZ).replace(tzinfo=None) == datetime(2026, 3, 11, 0, 0)
    assert classify(moment, date(2026, 3, 10)) == "late"
    assert classify(moment - timedelta(microseconds=1), date(2026, 3, 10)) == "on_time"


def test_deadline_state_is_overdue_from_the_instant_overdue_at_gives() -> None:
    due = date(2026, 3, 10)
    assert deadline_state(due, local_date(overdue_at(due))) == OVERDUE
    assert deadline_state(due, local_date(overdue_at(due) - timedelta(microseconds=1))) == WITHIN
    assert deadline_state(due, date(2026, 3, 9), warn_until=date(2026, 3, 10)) == AT_RISK
    assert deadline_state(due, date(2026, 3, 9), warn_until=date(2026, 3, 9)) == WITHIN
    assert deadline_state(due, date(2026, 3, 11), warn_until=date(2026, 3, 13)) == OVERDUE
    assert deadline_state(None, date(2030, 1, 1)) == WITHIN


# --------------------------------------------------------------------------------------------
# Properties and speed
# --------------------------------------------------------------------------------------------

receipts = st.datetimes(
    min_value=datetime(2016, 1, 1), max_value=datetime(2038, 12, 31), timezones=st.just(TZ)
)


@settings(max_examples=150, deadline=None)
@given(receipts, st.integers(1, 364))
def test_working_days_due_is_working_after_receipt_and_monotone(received: datetime, n: int) -> None:
    due = due_date(received, wd(n), CAL)
    following = due_date(received, wd(n + 1), CAL)
    assert due is not None and following is not None
    assert CAL.is_working_day(due)
    assert due > local_date(received)
    assert due < following
    assert CAL.working_days_between(local_date(received), due) == n


@settings(max_examples=100, deadline=None)
@given(receipts, st.integers(1, 60), st.integers(0, 72 * 60), st.integers(0, 30 * 24 * 60))
def test_stops_never_bring_the_due_date_forward(received: datetime, n: int, offset: int, length: int) -> None:
    start = received + timedelta(minutes=offset)
    stop = ClockStop(start, start + timedelta(minutes=length))
    for limit in (wd(n), cd(n), SAME_DAY):
        plain = due_date(received, limit, CAL)
        stopped = due_date(received, limit, CAL, [stop])
        assert plain is not None and stopped is not None
        assert stopped >= plain
        assert CAL.is_working_day(stopped)


@settings(max_examples=100, deadline=None)
@given(receipts, st.integers(1, 365))
def test_calendar_days_due_is_working_and_not_before_the_limit(received: datetime, n: int) -> None:
    due = due_date(received, cd(n), CAL)
    assert due is not None and CAL.is_working_day(due)
    target = local_date(received) + timedelta(days=n)
    assert due >= target
    assert CAL.working_days_between(target, due) <= 1  # moved to the first working day only


def test_due_date_with_a_stop_is_the_same_on_every_call() -> None:
    """Its speed is measured in bench/timings.py (``due_date``); here, that it is a pure function."""
    received = at(2026, 2, 13, 10)
    stops = [ClockStop(at(2026, 2, 24, 9), at(2026, 3, 2, 9))]
    first = due_date(received, wd(15), CAL, stops)
    assert first is not None and CAL.is_working_day(first)
    assert first > due_date(received, wd(15), CAL)          # the stop moved it
    assert {due_date(received, wd(15), CAL, stops) for _ in range(200)} == {first}


# --------------------------------------------------------------------------------------------
# The shipped overrides: the New Year swap of 2026 (official letter 12729/VPCP-KGVX)
# --------------------------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

import motcua.contracts.calendar as calendar_module  # noqa: E402
from motcua.contracts.calendar import CALENDAR_YEARS, year_days  # noqa: E402

SHIPPED_FILE = Path(calendar_module.__file__).parent / "data" / "calendar-overrides.yml"
SHIPPED = load_overrides(SHIPPED_FILE)  # the path given: independent of MOTCUA_CALENDAR_OVERRIDES
CAL_SHIPPED = WorkingCalendar(SHIPPED)


def test_new_year_2026_swap_friday_2_january_off_saturday_10_january_worked() -> None:
    assert not CAL_SHIPPED.is_working_day(date(2026, 1, 2))
    assert CAL_SHIPPED.day_off_name(date(2026, 1, 2)).startswith("Nghỉ hoán đổi Tết Dương lịch")
    assert CAL_SHIPPED.is_working_day(date(2026, 1, 10))
    # The package alone does not know the swap.
    assert CAL.is_working_day(date(2026, 1, 2)) and not CAL.is_working_day(date(2026, 1, 10))


@pytest.mark.parametrize("received, limit, due", [
    # 31/12 (Wed) + 3: 1/1 holiday, 2/1 swapped off, weekend -> 5/1, 6/1, 7/1.
    (at(2025, 12, 31, 9), wd(3), date(2026, 1, 7)),
    (at(2025, 12, 31, 9), wd(1), date(2026, 1, 5)),
    # 9/1 (Fri) + 1: Saturday 10/1 is worked.
    (at(2026, 1, 9, 9), wd(1), date(2026, 1, 10)),
    (at(2026, 1, 9, 9), wd(2), date(2026, 1, 12)),
    # Same day on Friday 2/1 -> the next working day is Monday 5/1; on Saturday 10/1 -> that day.
    (at(2026, 1, 2, 9), SAME_DAY, date(2026, 1, 5)),
    (at(2026, 1, 10, 9), SAME_DAY, date(2026, 1, 10)),
    # A calendar-days limit ending on 2/1 moves to Monday 5/1.
    (at(2025, 12, 26, 9), cd(7), date(2026, 1, 5)),
])
def test_early_january_2026_matches_the_official_calendar(received, limit, due) -> None:
    assert due_date(received, limit, CAL_SHIPPED) == due


def test_early_january_2026_without_the_swap_for_comparison() -> None:
    assert due_date(at(2025, 12, 31, 9), wd(3), CAL) == date(2026, 1, 6)
    assert due_date(at(2026, 1, 9, 9), wd(1), CAL) == date(2026, 1, 12)


def test_every_shipped_override_cites_its_source() -> None:
    entries = [o for y in SHIPPED.years for o in (*y.days_off, *y.working_days)]
    assert entries, "the shipped file has overrides"
    for o in entries:
        assert o.source.strip(), f"{o.day}: no source"
    swap = {o.day: o.source for o in entries if o.day.year == 2026}
    assert set(swap) == {date(2026, 1, 2), date(2026, 1, 10)}
    assert all("12729/VPCP-KGVX" in s and "[verify" in s for s in swap.values())


def test_the_shipped_file_notes_24_november_as_the_package_s_only() -> None:
    notes = {n.day: n.note for y in SHIPPED.years for n in y.notes}
    assert date(2026, 11, 24) in notes and "holidays" in notes[date(2026, 11, 24)]
    # A note changes nothing: 24/11 stays the package's day off.
    assert not CAL_SHIPPED.is_working_day(date(2026, 11, 24))
    assert CAL_SHIPPED.day_off_name(date(2026, 11, 24)) == CAL.day_off_name(date(2026, 11, 24))


def test_source_and_notes_are_optional_and_parsed() -> None:
    parsed = parse_overrides({"years": {2026: {
        "days_off": [{"date": date(2026, 1, 2), "name": "x", "source": "  CV  1/VPCP \n"}],
        "working_days": [{"date": date(2026, 1, 10), "name": "y"}],
        "notes": [{"date": "2026-11-24", "note": " to check "}],
    }}}, source="s.yml")
    year = parsed.years[0]
    assert year.days_off[0].source == "CV 1/VPCP"
    assert year.working_days[0].source == ""
    assert [(n.day, n.note) for n in year.notes] == [(date(2026, 11, 24), "to check")]
    assert parsed.origin == "s.yml"
    # The origin is not part of equality: the same decisions from two files are the same decisions.
    assert parse_overrides({"years": None}, source="a.yml") == parse_overrides({"years": None}, source="b.yml")


@pytest.mark.parametrize("body, expected", [
    ({"days_off": [{"date": date(2026, 1, 2), "name": "x", "source": " "}]}, "years.2026.days_off[0].source"),
    ({"days_off": [{"date": date(2026, 1, 2), "name": "x", "source": 12729}]}, "years.2026.days_off[0].source"),
    ({"notes": {"date": date(2026, 1, 2)}}, "years.2026.notes"),
    ({"notes": [{"date": date(2026, 1, 2)}]}, "years.2026.notes[0].note: missing"),
    ({"notes": [{"note": "x"}]}, "years.2026.notes[0].date: missing"),
    ({"notes": [{"date": date(2027, 1, 2), "note": "x"}]}, "outside its year 2026"),
    ({"notes": [{"date": date(2026, 1, 2), "note": ""}]}, "years.2026.notes[0].note"),
    ({"notes": [{"date": date(2026, 1, 2), "note": "x", "name": "y"}]}, "unknown key 'name'"),
    ({"notes": [{"date": date(2026, 1, 2), "note": "x"}, {"date": date(2026, 1, 2), "note": "y"}]},
     "years.2026.notes[1].date"),
])
def test_bad_source_or_notes_name_the_field(body, expected) -> None:
    with pytest.raises(ValueError) as info:
        parse_overrides({"years": {2026: body}}, source="src.yml")
    assert str(info.value).startswith("src.yml") and expected in str(info.value)


def test_year_days_lists_package_and_overrides_days_in_order_with_their_origin() -> None:
    days = year_days(2026, SHIPPED)
    assert [d.day for d in days] == sorted(d.day for d in days)
    by_day = {d.day: d for d in days}
    assert (by_day[date(2026, 1, 1)].origin, by_day[date(2026, 1, 1)].name) == ("holidays", "Tết Dương lịch")
    assert by_day[date(2026, 1, 1)].source.startswith("holidays ")
    swap_off, swap_work = by_day[date(2026, 1, 2)], by_day[date(2026, 1, 10)]
    assert (swap_off.origin, swap_off.working, swap_work.origin, swap_work.working) == \
        ("overrides", False, "overrides", True)
    assert "12729/VPCP-KGVX" in swap_off.source and swap_off.file == str(SHIPPED_FILE)
    assert by_day[date(2026, 8, 22)].working and by_day[date(2026, 8, 22)].origin == "holidays"
    assert by_day[date(2026, 11, 24)].origin == "holidays" and by_day[date(2026, 11, 24)].note


def test_year_days_shows_an_override_that_cancels_a_package_day() -> None:
    day = {d.day: d for d in year_days(2026, TEST_OVERRIDES)}[date(2026, 8, 22)]
    assert (day.working, day.origin, day.name, day.file) == (False, "overrides", "Huỷ làm bù", "test.yml")


@settings(max_examples=30, deadline=None)
@given(st.integers(CALENDAR_YEARS[0], CALENDAR_YEARS[-1]))
def test_year_days_agrees_with_the_calendar(year: int) -> None:
    days = year_days(year, TEST_OVERRIDES)
    for d in days:
        assert d.day.year == year
        assert CAL_OVR.is_working_day(d.day) == d.working
        assert d.origin in ("holidays", "overrides")
    # Every weekday off and every weekend day worked is listed: nothing hides outside the list.
    listed = {d.day for d in days}
    day = date(year, 1, 1)
    while day.year == year:
        unusual = CAL_OVR.is_working_day(day) == (day.weekday() >= 5)
        if unusual:
            assert day in listed, day
        day += timedelta(days=1)


@pytest.mark.parametrize("year", [2014, 2041, "2026", True, 2026.0])
def test_year_days_refuses_a_year_outside_the_calendar(year) -> None:
    with pytest.raises(ValueError, match="year must be an integer from 2015 to 2040"):
        year_days(year)
