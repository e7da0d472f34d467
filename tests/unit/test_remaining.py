"""The time left as a person reads it (``motcua.contracts.remaining``): working time within the
unit's office hours, over weekends, Tết, make-up Saturdays, a deadline passed, a stopped clock."""
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from motcua.contracts.calendar import TZ, default_calendar
from motcua.contracts.remaining import (DEFAULT_OFFICE_HOURS, STOPPED_TEXT, OfficeHours, remaining_minutes,
                                        remaining_text, working_minutes)

CAL = default_calendar()
HOURS = DEFAULT_OFFICE_HOURS


def at(y, m, d, hh=0, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=TZ)


def text(now, due, hours=HOURS, stopped=False):
    return remaining_text(now, due, CAL, hours, clock_stopped=stopped)


# Monday 7 Dec 2026 .. Friday 11 Dec 2026: an ordinary week.
@pytest.mark.parametrize("now, due, expected", [
    (at(2026, 12, 7, 14), date(2026, 12, 9), "còn 2 ngày 3 giờ làm việc"),        # the example
    (at(2026, 12, 7, 12), date(2026, 12, 9), "còn 2 ngày 4 giờ làm việc"),        # lunch counts nothing
    (at(2026, 12, 7, 6), date(2026, 12, 9), "còn 3 ngày làm việc"),               # before the office opens
    (at(2026, 12, 9, 16, 15), date(2026, 12, 9), "còn 45 phút làm việc"),
    (at(2026, 12, 9, 11, 29), date(2026, 12, 9), "còn 4 giờ làm việc"),           # 4 h 1 min: minutes dropped
    (at(2026, 12, 9, 17, 30), date(2026, 12, 9), "đến hạn hôm nay"),              # the office closed
    (at(2026, 12, 11, 18), date(2026, 12, 14), "còn 1 ngày làm việc"),            # the weekend counts nothing
    (at(2026, 12, 12, 10), date(2026, 12, 11), "quá hạn dưới 1 giờ"),             # overdue since Saturday 0:00
    (at(2026, 12, 14, 17), date(2026, 12, 11), "quá hạn 1 ngày"),                 # the example
    (at(2026, 12, 15, 10, 30), date(2026, 12, 11), "quá hạn 1 ngày 3 giờ"),
    (at(2026, 12, 14, 9), date(2026, 12, 11), "quá hạn 1 giờ"),
])
def test_an_ordinary_week(now, due, expected):
    assert text(now, due) == expected


def test_tet_counts_nothing():
    # Tết 2026: off 14-22 Feb (weekdays 16-20). Friday 13 Feb 9:30 to Tuesday 24 Feb's close:
    # 6 h that Friday, then Monday 23 and Tuesday 24.
    assert text(at(2026, 2, 13, 9, 30), date(2026, 2, 24)) == "còn 2 ngày 6 giờ làm việc"
    assert remaining_minutes(at(2026, 2, 13, 9, 30), date(2026, 2, 24), CAL, HOURS) == 2 * 480 + 360


def test_a_make_up_saturday_counts_and_the_day_it_pays_back_does_not():
    # New Year 2026: Friday 2 Jan off, Saturday 10 Jan a working day.
    assert not CAL.is_working_day(date(2026, 1, 2)) and CAL.is_working_day(date(2026, 1, 10))
    assert text(at(2026, 1, 9, 17), date(2026, 1, 12)) == "còn 2 ngày làm việc"
    assert text(at(2026, 1, 1, 8), date(2026, 1, 5)) == "còn 1 ngày làm việc"


def test_a_deadline_on_a_day_off_is_read_to_the_end_of_that_day():
    # Due dates fall on working days (the rule moves them); a day off as due date still gives a
    # defined answer: no working time on it, overdue from the next morning.
    assert text(at(2026, 12, 11, 17, 30), date(2026, 12, 12)) == "đến hạn"
    assert text(at(2026, 12, 14, 8, 30), date(2026, 12, 12)) == "quá hạn 1 giờ"


def test_a_stopped_clock_says_so_and_no_due_date_says_nothing():
    assert text(at(2026, 12, 7, 9), None, stopped=True) == STOPPED_TEXT
    assert text(at(2026, 12, 7, 9), date(2026, 12, 1), stopped=True) == STOPPED_TEXT
    assert text(at(2026, 12, 7, 9), None) is None


def test_a_units_own_office_hours():
    hours = OfficeHours.parse("07:00-11:00,13:30-17:30")
    assert hours.minutes_per_day == 480
    assert text(at(2026, 12, 9, 17), date(2026, 12, 9), hours) == "còn 30 phút làm việc"
    short = OfficeHours.parse("08:00-12:00")          # a half-day office: a day is 4 hours
    assert text(at(2026, 12, 7, 8), date(2026, 12, 8), short) == "còn 2 ngày làm việc"
    assert text(at(2026, 12, 7, 10), date(2026, 12, 8), short) == "còn 1 ngày 2 giờ làm việc"


def test_instants_in_utc_are_read_in_local_time():
    now = datetime(2026, 12, 7, 7, 0, tzinfo=timezone.utc)          # 14:00 in Hồ Chí Minh City
    assert text(now, date(2026, 12, 9)) == "còn 2 ngày 3 giờ làm việc"


@pytest.mark.parametrize("bad, reason", [
    ("", "periods such as"), (None, "periods such as"), ("7h30-11h30", "not a period"),
    ("11:30-07:30", "ends before it starts"), ("07:30-11:30, 11:00-17:00", "starts before the previous"),
    ("07:30-24:00", "past 23"), ("07:30-11:30,", "not a period"),
])
def test_office_hours_refused_with_the_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        OfficeHours.parse(bad)


def test_office_hours_read_back_as_written():
    assert str(OfficeHours.parse(" 7:30-11:30 ,13:00-17:00")) == "07:30-11:30, 13:00-17:00"


instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 6, 30)).map(
    lambda d: d.replace(tzinfo=TZ))


@settings(max_examples=300, deadline=None)
@given(instants, instants, instants)
def test_working_time_adds_up_and_never_exceeds_the_office_hours(a, b, c):
    a, b, c = sorted((a, b, c))
    assert working_minutes(a, c, CAL, HOURS) == working_minutes(a, b, CAL, HOURS) + working_minutes(b, c, CAL, HOURS)
    whole_days = (c.date() - a.date()).days + 1
    assert 0 <= working_minutes(a, c, CAL, HOURS) <= whole_days * HOURS.minutes_per_day


@settings(max_examples=200, deadline=None)
@given(instants, st.integers(min_value=0, max_value=40))
def test_one_day_later_one_working_day_less(now, days):
    """A day of office hours passes between the same time on two consecutive working days."""
    today = now.date()
    if not CAL.is_working_day(today):
        return
    due = CAL.add_working_days(today, days)
    tomorrow = CAL.next_working_day(today)
    later = datetime.combine(tomorrow, now.timetz())
    before, after = (remaining_minutes(x, due, CAL, HOURS) for x in (now, later))
    assert before - after == HOURS.minutes_per_day
