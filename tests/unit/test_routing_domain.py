"""Routing's pure rules (services/routing/domain.py, workflow.agency_at_fault, reports.as_csv)
against the domain reference §3, §5 and §6.

Every expected value is written by hand from the calendar: March 2026 has no holiday (Mon 2 Mar is a
Monday); Tết 2026 is Mon 16 – Fri 20 Feb; 30 Apr and 1 May 2026 are Thursday and Friday. The calendar
is the package's only (no operator overrides), as in test_calendar.py.

The tests of the bugs a first review found (at-risk one day late, a late result on a day off) stay as regressions.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motcua.contracts.periods import parse_period
from motcua.contracts.calendar import TZ, ClockStop, TimeLimit, TimeLimitKind, WorkingCalendar, local_date
from services.routing import domain, reports, store
from services.routing.domain import (DONE, HANDED_OVER, HELD, PENDING, STOPPED, II06a, PlannedStep,
                                     classify_for_report)
from services.routing.workflow import agency_at_fault

UTC = timezone.utc
CAL = WorkingCalendar()
UNIT = "000.05.20.H29"
TAX, LAND = "Chi cục Thuế", "Chi nhánh Văn phòng Đăng ký đất đai"


def at(y, m, d, hh=10, mm=0, ss=0, us=0) -> datetime:
    """An instant in Vietnam local time."""
    return datetime(y, m, d, hh, mm, ss, us, tzinfo=TZ)


def iso(instant: datetime) -> str:
    return instant.isoformat()


def stop(start: datetime, end: datetime | None, reason="supplement") -> dict:
    """A clock stop as flow stores it in workflows.clock_stops."""
    return {"start": iso(start), "end": iso(end) if end else None, "reason": reason}


# --- the plan ---------------------------------------------------------------------------------

def test_plan_numbers_stages_and_positions_and_replaces_self():
    steps = [{"agency": "self", "days": 1},
             {"parallel": [{"agency": TAX, "days": 3}, {"agency": "self", "days": "5"}]},
             {"agency": LAND, "days": 2},
             {"parallel": [{"agency": "Công an quận", "days": 4}]},
             {"agency": "self", "days": 0}]
    assert domain.plan(steps, UNIT) == [
        PlannedStep(0, 0, UNIT, 1, False),
        PlannedStep(1, 0, TAX, 3, True),
        PlannedStep(1, 1, UNIT, 5, True),
        PlannedStep(2, 0, LAND, 2, False),
        PlannedStep(3, 0, "Công an quận", 4, True),
        PlannedStep(4, 0, UNIT, 0, False),
    ]


def test_plan_of_one_same_day_step_at_the_desk():
    assert domain.plan([{"agency": "self", "days": 0}], "000.00.20.H29") == [
        PlannedStep(0, 0, "000.00.20.H29", 0, False)]


def test_plan_without_steps_is_invalid():
    with pytest.raises(domain.Invalid) as error:
        domain.plan([], UNIT)
    assert (error.value.field, error.value.status) == ("steps", 400)


# --- who may act on what ----------------------------------------------------------------------

def test_require_holder():
    assert domain.require_holder(TAX, TAX, 7) is None
    with pytest.raises(domain.Forbidden) as error:
        domain.require_holder(TAX, UNIT, 7)
    assert error.value.status == 403
    assert str(error.value) == f"step: step 7 is held by {TAX}, not by {UNIT}"


def test_require_state():
    assert domain.require_state(HELD, [HELD], "complete", 3) is None
    with pytest.raises(domain.Conflict) as error:
        domain.require_state(HANDED_OVER, (HELD, DONE), "complete", 3)
    assert error.value.status == 409
    assert str(error.value) == "step: cannot complete step 3: it is handed over (allowed when held or done)"
    with pytest.raises(domain.Conflict):
        domain.require_state(DONE, iter([HANDED_OVER]), "accept", 3)


def test_stage_finished_only_when_every_step_is_done():
    assert domain.stage_finished([DONE, DONE])
    assert not domain.stage_finished([DONE, HELD])
    assert not domain.stage_finished([DONE, STOPPED])
    assert not domain.stage_finished([PENDING])


# --- clock stops ------------------------------------------------------------------------------

def test_step_limit():
    assert domain.step_limit(3) == TimeLimit(TimeLimitKind.WORKING_DAYS, 3)
    assert domain.step_limit(1) == TimeLimit(TimeLimitKind.WORKING_DAYS, 1)
    assert domain.step_limit(0) == TimeLimit(TimeLimitKind.SAME_DAY, 0)


def test_stops_of_without_since_keeps_every_stop():
    raw = [stop(at(2026, 3, 2, 9), at(2026, 3, 4, 10)), stop(at(2026, 3, 5, 9), None, "obligation")]
    assert domain.stops_of(raw) == [ClockStop(at(2026, 3, 2, 9), at(2026, 3, 4, 10)),
                                    ClockStop(at(2026, 3, 5, 9), None)]


def test_stops_of_clips_to_since():
    since = at(2026, 3, 3, 10)
    raw = [stop(at(2026, 3, 2, 9), at(2026, 3, 3, 9)),      # ended before: dropped
           stop(at(2026, 3, 3, 9), at(2026, 3, 3, 10)),     # ended exactly at since: dropped
           stop(at(2026, 3, 3, 9), at(2026, 3, 4, 10)),     # overlaps: starts at since
           stop(at(2026, 3, 5, 9), at(2026, 3, 6, 9)),      # after: unchanged
           stop(at(2026, 3, 2, 8), None)]                   # still open, started before: starts at since
    assert domain.stops_of(raw, since=since) == [ClockStop(since, at(2026, 3, 4, 10)),
                                                 ClockStop(at(2026, 3, 5, 9), at(2026, 3, 6, 9)),
                                                 ClockStop(since, None)]


def test_clock_stopped_reads_the_last_stop():
    assert domain.clock_stopped([]) is False
    assert domain.clock_stopped([stop(at(2026, 3, 2), None)]) is True
    assert domain.clock_stopped([stop(at(2026, 3, 2), at(2026, 3, 3))]) is False
    assert domain.clock_stopped([stop(at(2026, 3, 2), at(2026, 3, 3)), stop(at(2026, 3, 4), None)]) is True


# --- step due dates ---------------------------------------------------------------------------

def test_step_due_counts_working_days_after_the_hand_over():
    assert domain.step_due(at(2026, 3, 2, 10), 5, CAL, []) == date(2026, 3, 9)     # Mon + 5 -> next Mon
    assert domain.step_due(at(2026, 3, 6, 16), 1, CAL, []) == date(2026, 3, 9)     # Fri + 1 -> Mon
    assert domain.step_due(at(2026, 3, 7, 10), 1, CAL, []) == date(2026, 3, 9)     # handed over on a Saturday
    # Thu 12 Feb 2026 + 3: Fri 13, (Tết 16–20 Feb), Mon 23, Tue 24.
    assert domain.step_due(at(2026, 2, 12, 10), 3, CAL, []) == date(2026, 2, 24)
    # Wed 29 Apr 2026 + 1: 30 Apr and 1 May off -> Mon 4 May.
    assert domain.step_due(at(2026, 4, 29, 10), 1, CAL, []) == date(2026, 5, 4)


@pytest.mark.parametrize("handed_over, due", [
    (at(2026, 3, 6, 8), date(2026, 3, 6)),
    (at(2026, 3, 6, 15, 0, 0), date(2026, 3, 6)),            # at 15:00 sharp: still the same day
    (at(2026, 3, 6, 15, 0, 1), date(2026, 3, 9)),            # after 15:00 on a Friday: Monday
    (at(2026, 3, 6, 15, 30), date(2026, 3, 9)),
    (datetime(2026, 3, 6, 8, 30, tzinfo=UTC), date(2026, 3, 9)),   # 15:30 local, given in UTC
    (datetime(2026, 3, 6, 7, 30, tzinfo=UTC), date(2026, 3, 6)),   # 14:30 local, given in UTC
    (at(2026, 2, 13, 15, 30), date(2026, 2, 23)),            # Friday before Tết, after 15:00
    (at(2026, 2, 17, 9), date(2026, 2, 23)),                 # during Tết
])
def test_step_due_of_a_same_day_share(handed_over, due):
    assert domain.step_due(handed_over, 0, CAL, []) == due


def test_a_step_handed_over_after_a_stop_ended_is_not_moved_by_it():
    stops = [stop(at(2026, 3, 2, 9), at(2026, 3, 4, 10))]
    # Thu 5 Mar + 2: Fri 6, Mon 9 — as if there had been no stop.
    assert domain.step_due(at(2026, 3, 5, 10), 2, CAL, stops) == date(2026, 3, 9)
    assert domain.step_due(at(2026, 3, 4, 10), 2, CAL, stops) == date(2026, 3, 6)   # handed over as it ended
    # A same-day share handed over on Monday morning, after a stop that ended on Friday at 16:00.
    friday = [stop(at(2026, 3, 6, 9), at(2026, 3, 6, 16))]
    assert domain.step_due(at(2026, 3, 9, 9), 0, CAL, friday) == date(2026, 3, 9)


def test_a_stop_running_at_the_hand_over_counts_from_the_hand_over():
    stops = [stop(at(2026, 3, 2, 9), at(2026, 3, 4, 10))]
    # Handed over Tue 3 Mar during the stop: Wed 4 is not counted; Thu 5, Fri 6.
    assert domain.step_due(at(2026, 3, 3, 10), 2, CAL, stops) == date(2026, 3, 6)


def test_a_stop_after_the_hand_over_moves_the_step():
    # Mon 2 + 2 = Wed 4; Wed 4 and Thu 5 are stopped: Tue 3, Fri 6.
    stops = [stop(at(2026, 3, 3, 9), at(2026, 3, 5, 9))]
    assert domain.step_due(at(2026, 3, 2, 10), 2, CAL, stops) == date(2026, 3, 6)
    # A same-day share whose clock restarts after 15:00: the next working day.
    assert domain.step_due(at(2026, 3, 2, 9), 0, CAL, [stop(at(2026, 3, 2, 10), at(2026, 3, 2, 16))]) \
        == date(2026, 3, 3)


def test_no_step_due_date_while_the_clock_is_stopped():
    assert domain.step_due(at(2026, 3, 2, 10), 2, CAL, [stop(at(2026, 3, 2, 8), None)]) is None
    assert domain.step_due(at(2026, 3, 2, 10), 2, CAL, [stop(at(2026, 3, 3, 8), None)]) is None


# --- dossier due dates ------------------------------------------------------------------------

def test_dossier_due_without_stops():
    assert domain.dossier_due(at(2026, 3, 2, 10), "5 working days", CAL, []) == date(2026, 3, 9)
    assert domain.dossier_due(at(2026, 3, 2, 10), "5 ngày làm việc", CAL, []) == date(2026, 3, 9)
    assert domain.dossier_due(at(2026, 3, 6, 16), "trong ngày", CAL, []) == date(2026, 3, 9)
    assert domain.dossier_due(at(2026, 3, 2, 10), "15 days", CAL, []) == date(2026, 3, 17)


def test_a_dossier_due_date_moved_by_two_separate_stops():
    received = at(2026, 3, 2, 10)
    first = stop(at(2026, 3, 3, 9), at(2026, 3, 5, 14))      # Wed 4, Thu 5 not counted
    second = stop(at(2026, 3, 9, 9), at(2026, 3, 10, 14))    # Tue 10 not counted
    assert domain.dossier_due(received, "5 working days", CAL, [first]) == date(2026, 3, 11)
    # Counted: Tue 3 | Fri 6, Mon 9 | Wed 11, Thu 12.
    assert domain.dossier_due(received, "5 working days", CAL, [first, second]) == date(2026, 3, 12)
    assert domain.dossier_due(received, "5 working days", CAL, [first, second, stop(at(2026, 3, 11, 9), None)]) \
        is None


# --- overdue and at risk ----------------------------------------------------------------------

@pytest.mark.parametrize("now, overdue", [
    (at(2026, 3, 8, 12), False),
    (at(2026, 3, 9, 23, 59), False),
    (at(2026, 3, 9, 23, 59, 59, 999999), False),
    (at(2026, 3, 10, 0, 0), True),
    (datetime(2026, 3, 9, 16, 59, 59, tzinfo=UTC), False),   # 23:59:59 local
    (datetime(2026, 3, 9, 17, 0, 0, tzinfo=UTC), True),      # 00:00 local on the 10th
    (datetime(2026, 3, 9, 2, 0, tzinfo=UTC), False),
])
def test_is_overdue_from_local_midnight_after_the_due_date(now, overdue):
    assert domain.is_overdue(date(2026, 3, 9), now) is overdue


def test_no_due_date_is_never_overdue():
    assert domain.is_overdue(None, at(2030, 1, 1)) is False


@pytest.mark.parametrize("due, now, warning, risk", [
    (date(2026, 3, 10), at(2026, 3, 10, 8), 1, True),               # the due date itself
    (date(2026, 3, 10), at(2026, 3, 10, 23, 59), 1, True),
    (date(2026, 3, 10), at(2026, 3, 11, 0, 0), 1, False),           # overdue now, not "at risk"
    (date(2026, 3, 11), at(2026, 3, 9, 10), 1, False),              # two working days before
    (date(2026, 3, 9), at(2026, 3, 5, 10), 1, False),               # Thu before a Monday deadline
    (date(2026, 2, 23), at(2026, 2, 12, 10), 1, False),             # Thu before Tết, due after it
    (date(2026, 3, 11), at(2026, 3, 10, 10), 2, True),
    (date(2026, 3, 11), at(2026, 3, 6, 10), 2, False),              # three working days before
    (date(2026, 3, 10), at(2026, 3, 10, 8), 0, True),               # warning 0: on the due date only
    (date(2026, 3, 10), at(2026, 3, 9, 8), 0, False),
    (None, at(2026, 3, 10), 1, False),
])
def test_at_risk(due, now, warning, risk):
    assert domain.at_risk(due, now, CAL, warning) is risk


AT_RISK_BUG = ("domain.at_risk is one working day short: with warning_working_days=1 it is true only on "
               "the due date itself (working_days_between(today, due) < 1), while flow.scan warns for "
               "due <= add_working_days(today, 1), i.e. one working day before")


@pytest.mark.parametrize("due, now, warning", [
    (date(2026, 3, 10), at(2026, 3, 9, 10), 1),                     # Mon, due Tue
    (date(2026, 3, 9), at(2026, 3, 6, 10), 1),                      # Fri, due Mon (across the weekend)
    (date(2026, 3, 9), at(2026, 3, 7, 10), 1),                      # Sat, due Mon
    (date(2026, 2, 23), at(2026, 2, 13, 10), 1),                    # Fri before Tết, due the Monday after
    (date(2026, 2, 23), at(2026, 2, 18, 10), 1),                    # during Tết
    (date(2026, 3, 11), at(2026, 3, 9, 10), 2),                     # two working days before, warning 2
])
def test_at_risk_one_warning_period_before_the_deadline(due, now, warning):
    today = local_date(now)
    assert today < due <= CAL.add_working_days(today, warning)     # what flow.scan would warn about
    assert domain.at_risk(due, now, CAL, warning) is True


def test_hand_over_class():
    due = date(2026, 3, 9)
    assert domain.hand_over_class(at(2026, 3, 6, 16), due) == "early"
    assert domain.hand_over_class(at(2026, 3, 9, 23, 59), due) == "on_time"
    assert domain.hand_over_class(at(2026, 3, 10, 0, 0), due) == "late"
    assert domain.hand_over_class(datetime(2026, 3, 9, 17, 0, tzinfo=UTC), due) == "late"
    assert domain.hand_over_class(datetime(2026, 3, 8, 17, 0, tzinfo=UTC), due) == "on_time"
    assert domain.hand_over_class(at(2026, 3, 20), None) == "on_time"


# --- share of the legal limit -----------------------------------------------------------------

@pytest.mark.parametrize("received, resolved, due, share", [
    # 5 working days, received Mon 2 Mar, due Mon 9 Mar: denominator 5 + 1.
    (at(2026, 3, 2, 10), at(2026, 3, 9, 17), date(2026, 3, 9), 1.0),
    (at(2026, 3, 2, 10), at(2026, 3, 9, 23, 59), date(2026, 3, 9), 1.0),
    (at(2026, 3, 2, 10), datetime(2026, 3, 9, 16, 59, tzinfo=UTC), date(2026, 3, 9), 1.0),
    (at(2026, 3, 2, 10), at(2026, 3, 4, 10), date(2026, 3, 9), 3 / 6),
    (at(2026, 3, 2, 10), at(2026, 3, 2, 16), date(2026, 3, 9), 1 / 6),
    (at(2026, 3, 2, 10), at(2026, 3, 10, 8), date(2026, 3, 9), 7 / 6),
    (at(2026, 3, 2, 10), at(2026, 3, 16, 8), date(2026, 3, 9), 11 / 6),
    # Same-day procedures.
    (at(2026, 3, 2, 9), at(2026, 3, 2, 11), date(2026, 3, 2), 1.0),
    (at(2026, 3, 2, 9), at(2026, 3, 3, 8), date(2026, 3, 2), 2.0),
    (at(2026, 3, 6, 16), at(2026, 3, 9, 10), date(2026, 3, 9), 1.0),      # after 15:00 on Fri: Monday
    (at(2026, 3, 6, 16), at(2026, 3, 6, 16, 30), date(2026, 3, 9), 0.5),
    # Across Tết: Thu 12 Feb + 3 working days = Tue 24 Feb.
    (at(2026, 2, 12, 10), at(2026, 2, 24, 16), date(2026, 2, 24), 1.0),
    (at(2026, 2, 12, 10), at(2026, 2, 13, 16), date(2026, 2, 24), 2 / 4),
])
def test_limit_share(received, resolved, due, share):
    assert domain.limit_share(received, resolved, due, CAL) == pytest.approx(share, abs=1e-12)


def test_limit_share_orders_early_deadline_and_late():
    received, due = at(2026, 3, 2, 10), date(2026, 3, 9)
    early, deadline, late = (domain.limit_share(received, r, due, CAL)
                             for r in (at(2026, 3, 6, 10), at(2026, 3, 9, 10), at(2026, 3, 10, 10)))
    assert early < 1 == deadline < late


def test_limit_share_of_a_dossier_resolved_late_on_a_day_off():
    received, due, resolved = at(2026, 3, 2, 10), date(2026, 3, 6), at(2026, 3, 7, 10)   # due Fri, done Sat
    assert domain.hand_over_class(resolved, due) == "late"
    assert domain.limit_share(received, resolved, due, CAL) > 1


# --- the apology's new date and the work that remains -----------------------------------------

@pytest.mark.parametrize("now, remaining, proposed", [
    (at(2026, 3, 9, 10), 3, date(2026, 3, 12)),
    (at(2026, 3, 9, 10), 0, date(2026, 3, 10)),       # nothing left: the next working day, never today
    (at(2026, 3, 9, 10), -2, date(2026, 3, 10)),
    (at(2026, 3, 6, 16), 1, date(2026, 3, 9)),        # Friday -> Monday
    (at(2026, 3, 7, 10), 1, date(2026, 3, 9)),        # Saturday -> Monday
    (at(2026, 2, 13, 10), 2, date(2026, 2, 24)),      # Friday before Tết: Mon 23, Tue 24
    (at(2026, 2, 18, 10), 1, date(2026, 2, 23)),      # during Tết
    (at(2026, 4, 29, 10), 1, date(2026, 5, 4)),       # 30 Apr and 1 May off
    (datetime(2026, 3, 5, 17, 30, tzinfo=UTC), 1, date(2026, 3, 9)),   # Fri 00:30 local, given in UTC
])
def test_proposed_return_date(now, remaining, proposed):
    assert domain.proposed_return_date(now, remaining, CAL) == proposed


@settings(max_examples=100, deadline=None)
@given(now=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2039, 12, 31),
                        timezones=st.sampled_from([TZ, UTC])),
       remaining=st.integers(min_value=-3, max_value=60))
def test_proposed_return_date_is_a_later_working_day(now, remaining):
    proposed = domain.proposed_return_date(now, remaining, CAL)
    today = local_date(now)
    assert proposed > today
    assert CAL.is_working_day(proposed)
    assert CAL.working_days_between(today, proposed) == max(remaining, 1)


def _step(stage, days, state, agency="x"):
    return {"stage": stage, "days": days, "state": state, "agency": agency}


def test_remaining_days_takes_the_longest_open_step_of_a_parallel_stage():
    steps = [_step(0, 1, DONE), _step(1, 3, HELD, TAX), _step(1, 5, HANDED_OVER, LAND),
             _step(2, 2, PENDING), _step(3, 0, PENDING)]
    assert domain.remaining_days(steps, 1) == 5 + 2 + 0
    steps[2]["state"] = DONE                       # the land registry finished: the tax office's 3 days
    assert domain.remaining_days(steps, 1) == 3 + 2
    steps[1]["state"] = DONE                       # the whole stage is done, not advanced yet
    assert domain.remaining_days(steps, 1) == 2
    assert domain.remaining_days(steps, 2) == 2
    assert domain.remaining_days(steps, 3) == 0


def test_remaining_days_ignores_earlier_stages_and_stopped_steps():
    steps = [_step(0, 4, HELD), _step(1, 3, STOPPED), _step(1, 2, HELD), _step(2, 6, PENDING)]
    assert domain.remaining_days(steps, 1) == 2 + 6
    assert domain.remaining_days(steps, 0) == 4 + 2 + 6
    assert domain.remaining_days([_step(0, 2, DONE)], 0) == 0
    # With nothing left, the apology proposes the next working day.
    assert domain.proposed_return_date(at(2026, 3, 6, 10), domain.remaining_days([_step(0, 2, DONE)], 0),
                                       CAL) == date(2026, 3, 9)


# --- report II.06a ----------------------------------------------------------------------------

def test_ii06a_identities_and_rates():
    row = II06a(online=4, in_person_or_post=5, carried_over=6, early=3, on_time=5, late=2,
                within_deadline=4, overdue=1, label="Hộ tịch")
    assert (row.received, row.resolved, row.pending) == (4 + 5 + 6, 3 + 5 + 2, 4 + 1)
    assert row.balanced is True
    rates = row.rates()
    assert rates["on_time_rate"] == pytest.approx(8 / 10)
    assert rates["overdue_rate"] == pytest.approx(3 / 15)
    assert rates["online_rate"] == pytest.approx(4 / 9)
    assert row.as_dict() == {
        "label": "Hộ tịch", "received": 15, "online": 4, "in_person_or_post": 5, "carried_over": 6,
        "resolved": 10, "early": 3, "on_time": 5, "late": 2, "pending": 5, "within_deadline": 4, "overdue": 1,
        "balanced": True, "on_time_rate": pytest.approx(0.8), "overdue_rate": pytest.approx(0.2),
        "online_rate": pytest.approx(4 / 9)}


def test_ii06a_unbalanced_row():
    assert II06a(online=2, early=1).balanced is False
    assert II06a(online=1, overdue=2).balanced is False
    assert II06a(carried_over=1, overdue=1).balanced is True


def test_ii06a_rates_with_zero_denominators_are_none():
    assert II06a().rates() == {"on_time_rate": None, "overdue_rate": None, "online_rate": None}
    assert II06a().as_dict()["balanced"] is True
    only_carried = II06a(carried_over=2, within_deadline=2)
    assert only_carried.rates() == {"on_time_rate": None, "overdue_rate": 0.0, "online_rate": None}
    nothing_resolved_late = II06a(online=1, late=1)
    assert nothing_resolved_late.rates() == {"on_time_rate": 0.0, "overdue_rate": 1.0, "online_rate": 1.0}


def test_ii06a_add():
    total = II06a(label="Cộng")
    total.add(II06a(online=1, in_person_or_post=2, carried_over=3, early=4, on_time=5, late=6,
                    within_deadline=7, overdue=8))
    total.add(II06a(online=10, in_person_or_post=20, carried_over=30, early=40, on_time=50, late=60,
                    within_deadline=70, overdue=80))
    assert (total.online, total.in_person_or_post, total.carried_over, total.early, total.on_time, total.late,
            total.within_deadline, total.overdue, total.label) == (11, 22, 33, 44, 55, 66, 77, 88, "Cộng")


MARCH = (at(2026, 3, 1, 0, 0), at(2026, 4, 1, 0, 0))     # [start, end) of March 2026, local


def classify(received_at, channel="in_person", resolved_at=None, result_class=None, due=None, period=MARCH):
    return classify_for_report(received_at=received_at, channel=channel, resolved_at=resolved_at,
                               result_class=result_class, due=due, start=period[0], end=period[1])


@pytest.mark.parametrize("kwargs, columns", [
    # Carried over from February, resolved in March.
    ({"received_at": at(2026, 2, 20), "resolved_at": at(2026, 3, 5), "result_class": "early",
      "due": date(2026, 3, 6)}, {"carried_over": 1, "early": 1}),
    ({"received_at": at(2026, 2, 28, 23, 59, 59, 999999), "channel": "online", "due": date(2026, 3, 31)},
     {"carried_over": 1, "within_deadline": 1}),
    # New in March: online vs in person or post.
    ({"received_at": at(2026, 3, 1, 0, 0), "channel": "online", "due": date(2026, 3, 31)},
     {"online": 1, "within_deadline": 1}),
    ({"received_at": datetime(2026, 2, 28, 17, 30, tzinfo=UTC), "channel": "online", "due": date(2026, 3, 31)},
     {"online": 1, "within_deadline": 1}),                                   # 00:30 local on 1 March
    ({"received_at": at(2026, 3, 2), "channel": "in_person", "due": date(2026, 3, 31)},
     {"in_person_or_post": 1, "within_deadline": 1}),
    ({"received_at": at(2026, 3, 2), "channel": "post", "due": date(2026, 3, 31)},
     {"in_person_or_post": 1, "within_deadline": 1}),
    # Resolved inside the period, with its class (none recorded: on time).
    ({"received_at": at(2026, 3, 2), "resolved_at": at(2026, 3, 9), "result_class": "on_time",
      "due": date(2026, 3, 9)}, {"in_person_or_post": 1, "on_time": 1}),
    ({"received_at": at(2026, 3, 2), "resolved_at": at(2026, 3, 31, 23, 59, 59, 999999), "result_class": "late",
      "due": date(2026, 3, 9)}, {"in_person_or_post": 1, "late": 1}),
    ({"received_at": at(2026, 3, 2), "resolved_at": at(2026, 3, 3), "result_class": None,
      "due": date(2026, 3, 9)}, {"in_person_or_post": 1, "on_time": 1}),
    # Resolved after the period: pending at its end, within the deadline or overdue.
    ({"received_at": at(2026, 3, 20), "resolved_at": at(2026, 4, 1, 0, 0), "result_class": "early",
      "due": date(2026, 4, 3)}, {"in_person_or_post": 1, "within_deadline": 1}),
    ({"received_at": at(2026, 3, 20), "resolved_at": at(2026, 4, 2), "result_class": "late",
      "due": date(2026, 3, 30)}, {"in_person_or_post": 1, "overdue": 1}),
    # Pending at the end: due on the last day is still within the deadline; the day before is overdue.
    ({"received_at": at(2026, 3, 20), "due": date(2026, 3, 31)}, {"in_person_or_post": 1, "within_deadline": 1}),
    ({"received_at": at(2026, 3, 20), "due": date(2026, 3, 30)}, {"in_person_or_post": 1, "overdue": 1}),
    ({"received_at": at(2026, 2, 2), "due": date(2026, 2, 9)}, {"carried_over": 1, "overdue": 1}),
    ({"received_at": at(2026, 3, 20), "due": None}, {"in_person_or_post": 1, "within_deadline": 1}),
    # Outside the period: nothing.
    ({"received_at": at(2026, 4, 1, 0, 0), "due": date(2026, 4, 2)}, {}),
    ({"received_at": at(2026, 4, 5), "resolved_at": at(2026, 4, 6), "result_class": "early",
      "due": date(2026, 4, 8)}, {}),
    ({"received_at": at(2026, 2, 2), "resolved_at": at(2026, 2, 28, 23, 59, 59, 999999), "result_class": "early",
      "due": date(2026, 3, 2)}, {}),
    ({"received_at": at(2026, 2, 2), "resolved_at": datetime(2026, 2, 28, 16, 59, tzinfo=UTC),
      "result_class": "early", "due": date(2026, 3, 2)}, {}),                # 23:59 local on 28 Feb
    # Resolved exactly as the period starts: it counts.
    ({"received_at": at(2026, 2, 2), "resolved_at": at(2026, 3, 1, 0, 0), "result_class": "late",
      "due": date(2026, 2, 9)}, {"carried_over": 1, "late": 1}),
])
def test_classify_for_report(kwargs, columns):
    assert classify(**kwargs) == columns


def test_classify_for_a_period_of_one_day_given_in_utc():
    day = (datetime(2026, 3, 15, 17, 0, tzinfo=UTC), datetime(2026, 3, 16, 17, 0, tzinfo=UTC))  # 16 March local
    assert classify(at(2026, 3, 16, 9), due=date(2026, 3, 16), period=day) == {"in_person_or_post": 1,
                                                                                "within_deadline": 1}
    assert classify(at(2026, 3, 13, 9), due=date(2026, 3, 15), period=day) == {"carried_over": 1, "overdue": 1}
    assert classify(at(2026, 3, 16, 23, 59), due=date(2026, 3, 16), period=day) == {"in_person_or_post": 1,
                                                                                     "within_deadline": 1}
    assert classify(at(2026, 3, 17, 0, 0), due=date(2026, 3, 17), period=day) == {}


RECEIVED_SIDE = ("online", "in_person_or_post", "carried_over")
RESULT_SIDE = ("early", "on_time", "late", "within_deadline", "overdue")
instants = st.datetimes(min_value=datetime(2025, 12, 1), max_value=datetime(2026, 6, 30),
                        timezones=st.sampled_from([TZ, UTC]))


@settings(max_examples=150, deadline=None)
@given(received=instants, channel=st.sampled_from(["online", "in_person", "post"]),
       resolved_after=st.one_of(st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60))),
       result_class=st.sampled_from([None, "early", "on_time", "late"]),
       due_offset=st.one_of(st.none(), st.integers(min_value=-3, max_value=40)),
       start=instants, length=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=120)))
def test_each_dossier_lands_once_on_each_side_of_the_report(received, channel, resolved_after, result_class,
                                                           due_offset, start, length):
    resolved = None if resolved_after is None else received + resolved_after
    due = None if due_offset is None else local_date(received) + timedelta(days=due_offset)
    end = start + length
    columns = classify_for_report(received_at=received, channel=channel, resolved_at=resolved,
                                  result_class=result_class, due=due, start=start, end=end)
    assert set(columns) <= set(RECEIVED_SIDE) | set(RESULT_SIDE)
    assert set(columns.values()) <= {1}
    received_side = sum(columns.get(c, 0) for c in RECEIVED_SIDE)
    result_side = sum(columns.get(c, 0) for c in RESULT_SIDE)
    assert received_side in (0, 1)
    assert (received_side == 1) == (result_side == 1)
    assert received_side == result_side
    # It is in the report exactly when received before the end and not resolved before the start.
    assert bool(columns) == (received < end and (resolved is None or resolved >= start))
    row = II06a(**{name: columns.get(name, 0) for name in RECEIVED_SIDE + RESULT_SIDE})
    assert row.balanced


# --- the agency at fault ----------------------------------------------------------------------

def _s(id, stage, agency, state, due=None):
    return SimpleNamespace(id=id, stage=stage, agency=agency, state=state, due_date=due)


TODAY = date(2026, 3, 10)


def test_an_overdue_open_step_answers_for_the_delay():
    steps = [_s(1, 0, UNIT, DONE, date(2026, 3, 2)),
             _s(2, 1, TAX, HELD, date(2026, 3, 12)),
             _s(3, 1, LAND, HANDED_OVER, date(2026, 3, 9)),        # past its deadline
             _s(4, 1, "Công an quận", HELD, None)]
    assert agency_at_fault(steps, 1, TODAY) == LAND


def test_among_overdue_steps_the_earliest_deadline_then_the_first_step():
    steps = [_s(2, 1, TAX, HELD, date(2026, 3, 6)), _s(3, 1, LAND, HELD, date(2026, 3, 5))]
    assert agency_at_fault(steps, 1, TODAY) == LAND
    tied = [_s(5, 1, TAX, HELD, date(2026, 3, 5)), _s(3, 1, LAND, HELD, date(2026, 3, 5))]
    assert agency_at_fault(tied, 1, TODAY) == LAND                     # lower id


def test_without_an_overdue_step_the_open_step_with_the_earliest_deadline():
    steps = [_s(2, 1, TAX, HELD, date(2026, 3, 12)),
             _s(3, 1, LAND, HANDED_OVER, date(2026, 3, 10)),       # due today: not past it
             _s(4, 1, "Công an quận", HELD, None),
             _s(5, 1, "Bảo hiểm xã hội quận", DONE, date(2026, 3, 2))]   # done steps do not answer
    assert agency_at_fault(steps, 1, TODAY) == LAND
    assert agency_at_fault([_s(4, 1, "Công an quận", HELD, None), _s(6, 1, TAX, HELD, None)], 1, TODAY) \
        == "Công an quận"


def test_without_an_open_step_the_stage_first_agency():
    steps = [_s(1, 0, UNIT, DONE, date(2026, 3, 2)),
             _s(2, 1, TAX, DONE, date(2026, 3, 4)),
             _s(3, 1, LAND, STOPPED, date(2026, 3, 5)),
             _s(4, 2, "Công an quận", PENDING, None)]
    assert agency_at_fault(steps, 1, TODAY) == TAX
    assert agency_at_fault(steps, 2, TODAY) == "Công an quận"
    # A late open step of another stage does not count.
    assert agency_at_fault([*steps, _s(9, 0, "khác", HELD, date(2026, 3, 1))], 1, TODAY) == TAX


# --- reports.py: the report and the CSV -------------------------------------------------------

def test_ii06a_report_totals_and_csv(monkeypatch):
    rows = [SimpleNamespace(unit="000.01.20.H29", field="Chứng thực", online=1, in_person_or_post=3,
                            carried_over=0, early=2, on_time=1, late=0, within_deadline=1, overdue=0),
            SimpleNamespace(unit="000.01.20.H29", field="Hộ tịch", online=0, in_person_or_post=1,
                            carried_over=1, early=0, on_time=0, late=1, within_deadline=0, overdue=1),
            SimpleNamespace(unit="000.03.20.H29", field="Hộ tịch", online=0, in_person_or_post=0,
                            carried_over=1, early=0, on_time=0, late=0, within_deadline=1, overdue=0)]
    calls = []
    monkeypatch.setattr(store, "report_rows", lambda session, unit, start, end: calls.append((unit, start, end))
                        or rows)
    period = parse_period("2026-03-01", "2026-03-31")
    report = reports.ii06a(None, None, period)
    assert calls == [(None, period.begin, period.end)]
    assert (report["form"], report["from"], report["to"]) == ("II.06a", "2026-03-01", "2026-03-31")
    assert [u["unit"] for u in report["units"]] == ["000.01.20.H29", "000.03.20.H29"]
    ward1 = report["units"][0]
    assert [f["label"] for f in ward1["fields"]] == ["Chứng thực", "Hộ tịch"]
    assert {k: ward1["total"][k] for k in ("received", "resolved", "pending", "late", "overdue")} == \
        {"received": 6, "resolved": 4, "pending": 2, "late": 1, "overdue": 1}
    total = report["total"]
    assert (total["label"], total["received"], total["resolved"], total["pending"], total["balanced"]) == \
        ("Tổng cộng", 7, 4, 3, True)
    assert total["online_rate"] == pytest.approx(1 / 5)

    lines = reports.as_csv(report).splitlines()
    assert len(lines) == 1 + 2 + 1 + 1 + 1 + 1      # header, 2 fields + total, 1 field + total, grand total
    assert lines[0].startswith("Đơn vị,Lĩnh vực,(3) Tổng số hồ sơ tiếp nhận,(4) Trực tuyến,")
    assert lines[1] == "000.01.20.H29,Chứng thực,4,1,3,0,3,2,1,0,1,1,0,1.0000,0.0000,0.2500"
    assert lines[4] == "000.03.20.H29,Hộ tịch,1,0,0,1,0,0,0,0,1,1,0,,0.0000,"
    assert lines[5] == "000.03.20.H29,Cộng,1,0,0,1,0,0,0,0,1,1,0,,0.0000,"
    assert lines[-1] == ",Tổng cộng,7,1,4,2,4,2,1,1,3,2,1,0.7500,0.2857,0.2000"


# --- the dossier's deadline with its clock stops (routing keeps it; the desk counts it at receipt) ---

FRI_BEFORE_TET = at(2026, 2, 13, 10)   # Tết 2026: Mon 16 – Fri 20 Feb off; working again Mon 23


def stored_stop(start: str, end: str | None) -> dict:
    return {"start": start, "end": end, "reason": "supplement"}


def test_dossier_due_with_one_clock_stop():
    stops = [stored_stop("2026-02-23T09:00:00+07:00", "2026-02-25T14:00:00+07:00")]
    assert domain.dossier_due(FRI_BEFORE_TET, "3 working days", CAL, stops) == date(2026, 2, 27)


def test_dossier_due_with_a_stop_written_in_utc():
    # the same stop as above, stored with other offsets
    stops = [stored_stop("2026-02-23T02:00:00+00:00", "2026-02-25T07:00:00Z")]
    assert domain.dossier_due(FRI_BEFORE_TET, "3 working days", CAL, stops) == date(2026, 2, 27)
    # ends 2026-02-24T17:30Z, i.e. 00:30 on the 25th in Vietnam: the 25th is not counted
    stops = [stored_stop("2026-02-23T09:00:00+07:00", "2026-02-24T17:30:00+00:00")]
    assert domain.dossier_due(FRI_BEFORE_TET, "3 working days", CAL, stops) == date(2026, 2, 27)
    # ends 2026-02-24T16:30Z, i.e. 23:30 on the 24th in Vietnam: the 25th counts
    stops = [stored_stop("2026-02-23T09:00:00+07:00", "2026-02-24T16:30:00+00:00")]
    assert domain.dossier_due(FRI_BEFORE_TET, "3 working days", CAL, stops) == date(2026, 2, 26)


def test_dossier_due_with_two_stops():
    # counted: 23/2; stopped (23, 24]; counted 25/2; stopped (25, 27]; counted Mon 2/3
    stops = [stored_stop("2026-02-23T09:00:00+07:00", "2026-02-24T10:00:00+07:00"),
             stored_stop("2026-02-25T09:00:00+07:00", "2026-02-27T11:00:00+07:00")]
    assert domain.dossier_due(FRI_BEFORE_TET, "3 working days", CAL, stops) == date(2026, 3, 2)


def test_dossier_due_with_two_overlapping_stops_counts_the_overlap_once():
    stops = [stored_stop("2026-02-23T09:00:00+07:00", "2026-02-25T10:00:00+07:00"),
             stored_stop("2026-02-24T09:00:00+07:00", "2026-02-26T11:00:00+07:00")]
    assert domain.dossier_due(FRI_BEFORE_TET, "3 working days", CAL, stops) == date(2026, 3, 2)


def test_dossier_due_with_an_open_stop_is_none():
    stops = [stored_stop("2026-02-23T09:00:00+07:00", None)]
    assert domain.dossier_due(FRI_BEFORE_TET, "3 working days", CAL, stops) is None
    stops = [stored_stop("2026-02-23T09:00:00+07:00", "2026-02-24T09:00:00+07:00"),
             {"start": "2026-02-25T09:00:00+07:00"}]
    assert domain.dossier_due(FRI_BEFORE_TET, "3 working days", CAL, stops) is None


def test_dossier_due_same_day_after_a_stop_ending_after_15():
    stops = [stored_stop("2026-02-12T10:00:00+07:00", "2026-02-12T16:00:00+07:00")]
    assert domain.dossier_due(at(2026, 2, 12, 9), "trong ngày", CAL, stops) == date(2026, 2, 13)
    stops = [stored_stop("2026-02-12T10:00:00+07:00", "2026-02-12T14:00:00+07:00")]
    assert domain.dossier_due(at(2026, 2, 12, 9), "trong ngày", CAL, stops) == date(2026, 2, 12)
