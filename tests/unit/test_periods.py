"""The one reporting period (motcua/contracts/periods.py) that every service's reports take."""
from datetime import date, datetime, timedelta

import pytest

from motcua.contracts.calendar import TZ
from motcua.contracts.periods import MAX_DAYS, parse_period
from motcua.contracts.refusals import Invalid


def test_both_days_are_included_as_local_midnights():
    period = parse_period("2026-03-01", "2026-03-31")
    assert (period.first, period.last) == (date(2026, 3, 1), date(2026, 3, 31))
    assert period.begin == datetime(2026, 3, 1, tzinfo=TZ)
    assert period.end == datetime(2026, 4, 1, tzinfo=TZ)
    one_day = parse_period("2026-03-16", "2026-03-16")
    assert (one_day.end - one_day.begin, one_day.begin.utcoffset()) == (timedelta(days=1), timedelta(hours=7))


def test_a_leap_year_is_the_longest_period():
    assert parse_period("2028-01-01", "2028-12-31").end == datetime(2029, 1, 1, tzinfo=TZ)
    assert (parse_period("2028-01-01", "2028-12-31").last - date(2028, 1, 1)).days + 1 == MAX_DAYS
    with pytest.raises(Invalid) as error:
        parse_period("2026-01-01", "2027-01-02")
    assert error.value.field == "to" and "366" in error.value.reason


@pytest.mark.parametrize("start, end, field", [
    ("2026-13-01", "2026-12-31", "from"), (None, "2026-12-31", "from"), (20260101, "2026-12-31", "from"),
    ("2026-01-01", "31/12/2026", "to"), ("2026-01-01", None, "to"), ("2026-03-02", "2026-03-01", "to")])
def test_bad_dates_are_refused_with_their_field(start, end, field):
    with pytest.raises(Invalid) as error:
        parse_period(start, end)
    assert error.value.field == field
    assert error.value.status == 400


def test_field_names_follow_the_caller():
    with pytest.raises(Invalid) as error:
        parse_period("2026-01-01", "x", start_field="--from", end_field="--to")
    assert error.value.field == "--to"
