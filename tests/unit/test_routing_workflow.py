"""The ``Workflow`` aggregate's rules, property-based: the agency at fault for a delay is the one
that held the dossier past its share; a clock stopped twice extends the deadline by both stops;
overdue is detected once per breach."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import TZ, default_calendar
from motcua.contracts.events import new_event
from services.routing.domain import HANDED_OVER, HELD
from services.routing.workflow import Step, Workflow, agency_at_fault

CAL = default_calendar()
DISTRICT = "000.00.20.H29"
AGENCIES = [f"000.{40 + i}.20.H29" for i in range(6)]
MONDAY = date(2026, 3, 2)


def nine(day: date) -> datetime:
    return datetime.combine(day, time(9), tzinfo=TZ)


def working(n: int) -> date:
    """The n-th working day after the receipt (0: the receipt day)."""
    return CAL.add_working_days(MONDAY, n)


def start(stages: list[list[tuple[str, int]]], time_limit: int) -> Workflow:
    steps = [{"parallel": [{"agency": a, "days": d} for a, d in group]} if len(group) > 1 else
             {"agency": group[0][0], "days": group[0][1]} for group in stages]
    event = new_event("dossier.received", {
        "code": "C-1", "procedure_code": "P", "procedure_version": 1, "channel": "in_person",
        "received_at": nine(MONDAY).isoformat(), "appointment_date": working(time_limit).isoformat(),
        "time_limit": f"{time_limit} working days", "handling_agency": AGENCIES[0], "applicant": {"name": "A"},
        "quantities": {}, "secret": "x"}, DISTRICT)
    workflow, _ = Workflow.start(event, {"name": "P", "field": "F", "steps": steps}, nine(MONDAY), CAL)
    for number, step in enumerate(workflow.steps, 1):
        step.id = number          # what the repository gives on the first save
    return workflow


# --- the agency at fault ------------------------------------------------------------------------

@st.composite
def routes(draw):
    """Stages of distinct agencies (some in parallel), how long each finished stage took (within
    its share), and the stage whose agency (one of them) is still holding the dossier."""
    agencies = draw(st.permutations(AGENCIES))
    sizes = draw(st.lists(st.integers(1, 2), min_size=1, max_size=3))
    stages, used = [], 0
    for size in sizes:
        stages.append([(agencies[used + i], draw(st.integers(1, 5))) for i in range(size)])
        used += size
    late_stage = draw(st.integers(0, len(stages) - 1))
    late_agency = draw(st.sampled_from([a for a, _ in stages[late_stage]]))
    took = [draw(st.integers(0, min(d for _, d in group))) for group in stages[:late_stage]]
    return stages, took, late_stage, late_agency


@settings(max_examples=60, deadline=None)
@given(routes())
def test_the_agency_at_fault_is_the_one_that_held_the_dossier_past_its_share(route):
    stages, took, late_stage, late_agency = route
    limit = sum(max(d for _, d in group) for group in stages)
    workflow = start(stages, limit)
    day = 0
    for stage, group in enumerate(stages[:late_stage + 1]):
        for step in (s for s in workflow.steps if s.stage == stage):
            workflow.accept(Actor("cán bộ", step.agency), step.id, nine(working(day)))
        if stage == late_stage:
            break
        day += took[stage]          # within the stage's share: nobody late yet
        for step in (s for s in workflow.steps if s.stage == stage):
            workflow.complete(Actor("cán bộ", step.agency), step.id, {"result": "done"}, nine(working(day)), CAL)
            assert step.result_class in ("early", "on_time")
        workflow.transfer(Actor("cán bộ", group[0][0]), {}, nine(working(day)), CAL)
    # Every other agency of the late stage finishes within its share; the late one keeps it.
    for step in (s for s in workflow.steps if s.stage == late_stage and s.agency != late_agency):
        workflow.complete(Actor("cán bộ", step.agency), step.id, {"result": "done"}, nine(working(day)), CAL)
    after = working(limit + 1)
    events = workflow.scan(nine(after), CAL, 1)
    overdue = [e for e in events if e.type == "dossier.overdue"]
    assert len(overdue) == 1 and overdue[0].payload["agency"] == late_agency == workflow.overdue_agency
    late = next(s for s in workflow.steps if s.agency == late_agency and s.stage == late_stage)
    assert late.due_date < after                   # it is the one past its share


@given(st.lists(st.integers(0, 20), min_size=1, max_size=5, unique=True), st.integers(1, 20))
def test_among_open_steps_the_one_past_its_share_answers(offsets, past):
    today = date(2026, 4, 1)
    steps = [Step(stage=1, position=i, parallel=True, agency=AGENCIES[i], days=1, state=HELD if i % 2 else HANDED_OVER,
                  id=i + 1, due_date=today + timedelta(days=o)) for i, o in enumerate(offsets)]
    late = steps[len(steps) // 2]
    late.due_date = today - timedelta(days=past)
    assert agency_at_fault(steps, 1, today) == late.agency


# --- clock stops --------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(st.integers(2, 30), st.data())
def test_a_clock_stopped_twice_extends_the_deadline_by_both_stops(limit, data):
    first_at = data.draw(st.integers(0, limit - 1))
    first_len = data.draw(st.integers(1, 6))
    second_at = data.draw(st.integers(first_at + first_len, limit - 1 + first_len))
    second_len = data.draw(st.integers(1, 6))
    reasons = data.draw(st.permutations(["supplement", "obligation"]))
    workflow = start([[(AGENCIES[1], limit)]], limit)
    step = workflow.steps[0]
    assert (workflow.due_date, step.due_date) == (working(limit), working(limit))
    for reason, at, length in ((reasons[0], first_at, first_len), (reasons[1], second_at, second_len)):
        workflow.stop_clock(reason, nine(working(at)), CAL)
        assert workflow.clock_stopped and workflow.due_date is None and step.due_date is None
        workflow.restart_clock(reason, nine(working(at + length)), CAL)
        assert not workflow.clock_stopped
    extended = CAL.add_working_days(working(limit), first_len + second_len)
    assert workflow.due_date == extended
    assert step.due_date == extended              # handed over at receipt with the whole limit


# --- overdue once per breach ----------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(st.integers(1, 10), st.lists(st.integers(0, 24 * 30), min_size=1, max_size=25))
def test_overdue_is_detected_once_per_breach(limit, hours):
    workflow = start([[(AGENCIES[1], limit)]], limit)
    events = []
    for hour in sorted(hours):
        events += workflow.scan(nine(MONDAY) + timedelta(hours=hour), CAL, 1)
    count = {kind: sum(1 for e in events if e.type == kind)
             for kind in ("dossier.overdue", "dossier.step_overdue", "dossier.at_risk", "dossier.apology_missing")}
    last = (nine(MONDAY) + timedelta(hours=max(hours))).astimezone(TZ).date()
    breached = last > working(limit)
    assert count["dossier.overdue"] == int(breached) == count["dossier.step_overdue"]
    assert count["dossier.at_risk"] <= 1 and count["dossier.apology_missing"] <= 1
    assert (workflow.overdue_at is not None) == breached
    if breached:
        assert workflow.overdue_agency == AGENCIES[1]
        # Scanning again, much later: no new breach; the missing apology flagged once in all.
        later = [e.type for days in (90, 91) for e in workflow.scan(nine(MONDAY) + timedelta(days=days), CAL, 1)]
        assert "dossier.overdue" not in later and "dossier.step_overdue" not in later
        assert count["dossier.apology_missing"] + later.count("dossier.apology_missing") == 1
