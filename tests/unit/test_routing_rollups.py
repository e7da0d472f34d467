"""Report II.06a's roll-ups, in memory: what one dossier adds (reports.daily_contributions) summed over
the days before and within a period gives the columns the pure rule (domain.classify_for_report) gives
it; the spans that cover a period (store.span_ranges) cover each of its days once; a save's deltas
(reports.rollup_deltas) take the old contribution away and add the new one."""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from motcua.contracts.calendar import TZ
from motcua.contracts.periods import Period
from services.routing import reports, store
from services.routing.domain import classify_for_report

DAY = timedelta(days=1)
COUNTED = ("online", "in_person_or_post", "carried_over", "early", "on_time", "late", "within_deadline", "overdue")


def _days(ranges) -> list[tuple[str, date]]:
    """Every (span, first day) row a list of ranges selects, and the days those rows stand for."""
    out = []
    for span, lo, hi in ranges:
        day = lo
        while day <= hi:
            following = (day + DAY if span == "day" else store._next_month(day) if span == "month"
                         else date(day.year + 1, 1, 1))
            out.append((span, day, following))
            day = following
    return out


def figures(contributions: dict, first: date, last: date) -> Counter:
    """The report's columns summed from daily contributions, as store.rollup_report_rows sums them."""
    sums = Counter()
    for (day, _unit, _field, channel), counters in contributions.items():
        if day < first:
            sums["carried_over"] += counters.get("pending_change", 0)
        if day <= last:
            sums["pending"] += counters.get("pending_change", 0)
            sums["overdue"] += counters.get("overdue_change", 0)
        if first <= day <= last:
            sums["online" if channel == "online" else "in_person_or_post"] += counters.get("received", 0)
            for name in reports.CLASSES:
                sums[name] += counters.get(name, 0)
    sums["within_deadline"] = sums.pop("pending", 0) - sums["overdue"]
    return Counter({k: v for k, v in sums.items() if v})


moments = st.datetimes(min_value=datetime(2025, 11, 1), max_value=datetime(2027, 2, 1), timezones=st.just(TZ))


@st.composite
def dossiers(draw):
    received = draw(moments)
    later = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60))
    resolved = draw(st.one_of(st.none(), st.builds(lambda d: received + d, later)))
    return {"unit": "u", "field": "f", "channel": draw(st.sampled_from(["online", "in_person", "post"])),
            "received_at": received, "resolved_at": resolved,
            "due_date": draw(st.one_of(st.none(), st.builds(lambda n: received.date() + timedelta(days=n),
                                                            st.integers(min_value=-2, max_value=40)))),
            "result_class": None if resolved is None else draw(st.sampled_from([None, "early", "on_time", "late"]))}


@settings(max_examples=300, deadline=None)
@given(dossier=dossiers(), first=st.dates(min_value=date(2025, 10, 1), max_value=date(2027, 3, 1)),
       length=st.integers(min_value=0, max_value=400))
def test_one_dossiers_roll_ups_give_its_columns_of_any_period(dossier, first, length):
    last = first + timedelta(days=length)
    period = Period(first, last)
    expected = classify_for_report(received_at=dossier["received_at"], channel=dossier["channel"],
                                   resolved_at=dossier["resolved_at"], result_class=dossier["result_class"],
                                   due=dossier["due_date"], start=period.begin, end=period.end)
    assert figures(reports.daily_contributions(dossier), first, last) == Counter(expected)


@given(first=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
       length=st.integers(min_value=0, max_value=800))
def test_the_spans_of_a_period_cover_its_days_once_and_those_before_it(first, length):
    last = first + timedelta(days=length)
    during = _days(store.span_ranges(first, last))
    assert during[0][1] == first and during[-1][2] == last + DAY
    assert all(a[2] == b[1] for a, b in zip(during, during[1:]))          # contiguous, no overlap
    assert len(store.span_ranges(first, last)) <= 5
    before = store.before_ranges(first)
    assert before[0] == ("year", None, date(first.year - 1, 12, 31))
    rest = _days(before[1:])
    if rest:
        assert rest[0][1] == date(first.year, 1, 1) and rest[-1][2] == first
        assert all(a[2] == b[1] for a, b in zip(rest, rest[1:]))
    else:
        assert first == date(first.year, 1, 1)


def test_a_year_is_one_span_and_a_quarter_three_months():
    assert store.span_ranges(date(2026, 1, 1), date(2026, 12, 31)) == [("year", date(2026, 1, 1), date(2026, 1, 1))]
    assert store.span_ranges(date(2026, 10, 1), date(2026, 12, 31)) == [
        ("month", date(2026, 10, 1), date(2026, 12, 1))]
    assert store.span_ranges(date(2025, 12, 30), date(2027, 1, 2)) == [
        ("day", date(2025, 12, 30), date(2025, 12, 31)), ("year", date(2026, 1, 1), date(2026, 1, 1)),
        ("day", date(2027, 1, 1), date(2027, 1, 2))]
    assert store.before_ranges(date(2026, 3, 16)) == [
        ("year", None, date(2025, 12, 31)), ("month", date(2026, 1, 1), date(2026, 2, 28)),
        ("day", date(2026, 3, 1), date(2026, 3, 15))]


RECEIVED = {"unit": "000.01.20.H29", "field": "Hộ tịch", "channel": "online",
            "received_at": datetime(2026, 3, 2, 9, tzinfo=TZ), "resolved_at": None, "due_date": date(2026, 3, 5),
            "result_class": None}


def _rows(deltas) -> dict:
    return {(r["span"], r["day"]): {k: v for k, v in r.items()
                                    if k not in ("span", "day", "unit", "field", "channel") and v}
            for r in deltas}


def test_a_receipt_adds_to_the_day_month_and_year_and_its_overdue_day():
    rows = _rows(reports.rollup_deltas(None, RECEIVED))
    assert rows == {
        ("day", date(2026, 3, 2)): {"received": 1, "pending_change": 1},
        ("day", date(2026, 3, 6)): {"overdue_change": 1},
        ("month", date(2026, 3, 1)): {"received": 1, "pending_change": 1, "overdue_change": 1},
        ("year", date(2026, 1, 1)): {"received": 1, "pending_change": 1, "overdue_change": 1}}


def test_a_save_that_changes_nothing_the_report_counts_writes_nothing():
    assert reports.rollup_deltas(RECEIVED, dict(RECEIVED)) == []
    assert reports.rollup_deltas(RECEIVED, dict(RECEIVED, state="processed", overdue_at=None)) == []


def test_a_clock_stop_takes_the_overdue_day_away_and_its_end_puts_a_later_one():
    stopped = dict(RECEIVED, due_date=None)
    assert _rows(reports.rollup_deltas(RECEIVED, stopped)) == {
        ("day", date(2026, 3, 6)): {"overdue_change": -1}, ("month", date(2026, 3, 1)): {"overdue_change": -1},
        ("year", date(2026, 1, 1)): {"overdue_change": -1}}
    restarted = dict(RECEIVED, due_date=date(2026, 4, 10))
    assert _rows(reports.rollup_deltas(stopped, restarted)) == {
        ("day", date(2026, 4, 11)): {"overdue_change": 1}, ("month", date(2026, 4, 1)): {"overdue_change": 1},
        ("year", date(2026, 1, 1)): {"overdue_change": 1}}


def test_resolved_late_ends_the_pending_and_overdue_days_and_counts_its_class():
    late = dict(RECEIVED, resolved_at=datetime(2026, 3, 9, 10, tzinfo=TZ), result_class="late", state="processed")
    rows = _rows(reports.rollup_deltas(RECEIVED, late))
    assert rows[("day", date(2026, 3, 9))] == {"late": 1, "pending_change": -1, "overdue_change": -1}
    assert rows[("year", date(2026, 1, 1))] == {"late": 1, "pending_change": -1, "overdue_change": -1}
    assert set(rows) == {("day", date(2026, 3, 9)), ("month", date(2026, 3, 1)), ("year", date(2026, 1, 1))}


def test_resolved_on_its_due_date_was_never_overdue():
    on_time = dict(RECEIVED, resolved_at=datetime(2026, 3, 5, 16, tzinfo=TZ), result_class="on_time")
    rows = _rows(reports.rollup_deltas(None, on_time))
    assert all("overdue_change" not in counters for counters in rows.values())
    assert rows[("year", date(2026, 1, 1))] == {"received": 1, "on_time": 1}


def test_deltas_come_in_key_order_each_key_once():
    moved = dict(RECEIVED, unit="000.03.20.H29", resolved_at=datetime(2027, 1, 4, tzinfo=TZ), result_class="late")
    deltas = reports.rollup_deltas(RECEIVED, moved)
    keys = [(r["span"], r["day"], r["unit"], r["field"], r["channel"]) for r in deltas]
    assert keys == sorted(set(keys))
