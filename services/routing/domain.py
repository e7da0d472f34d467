"""Inter-agency routing, free of I/O: the plan of a dossier's steps, who may act on what,
deadlines of the dossier and of each step with clock stops, overdue and at-risk, the new
date an apology proposes, and the figures of report II.06a."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping, Sequence

from motcua.contracts.refusals import Conflict, Forbidden, Invalid, Refusal
from motcua.contracts.calendar import (AT_RISK, OVERDUE, WITHIN, ClockStop, TimeLimit, TimeLimitKind,  # noqa: F401
                                      WorkingCalendar, classify, deadline_state, due_date, local_date,
                                      parse_time_limit)


# Routing's refusals: a field, a reason, an HTTP status; nothing changed.
RoutingError = Refusal


# --- the plan --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedStep:
    stage: int
    position: int
    agency: str
    days: int
    parallel: bool


def plan(steps: Sequence[Mapping], receiving_unit: str) -> list[PlannedStep]:
    """The steps of a pinned procedure version, in stages; ``self`` is the receiving unit."""
    planned = []
    for stage, entry in enumerate(steps):
        group = entry["parallel"] if "parallel" in entry else [entry]
        for position, step in enumerate(group):
            agency = receiving_unit if step["agency"] == "self" else step["agency"]
            planned.append(PlannedStep(stage, position, agency, int(step["days"]), "parallel" in entry))
    if not planned:
        raise Invalid("steps", "a procedure needs at least one step")
    return planned


# --- steps and their states ------------------------------------------------------------------

PENDING = "pending"          # its stage has not been reached
HANDED_OVER = "handed_over"  # given to the agency, not yet accepted
HELD = "held"                # the agency accepted it and works on it
DONE = "done"
STOPPED = "stopped"          # refused or stopped by the agency

RESULTS = ("done", "needs_supplement", "refuse", "stop")


def require_holder(step_agency: str, actor_unit: str, step_id: int) -> None:
    if step_agency != actor_unit:
        raise Forbidden("step", f"step {step_id} is held by {step_agency}, not by {actor_unit}")


def require_state(step_state: str, allowed: Iterable[str], action: str, step_id: int) -> None:
    allowed = tuple(allowed)
    if step_state not in allowed:
        raise Conflict("step", f"cannot {action} step {step_id}: it is {step_state.replace('_', ' ')}"
                               f" (allowed when {' or '.join(a.replace('_', ' ') for a in allowed)})")


def stage_finished(states: Iterable[str]) -> bool:
    return all(state == DONE for state in states)


# --- time ------------------------------------------------------------------------------------

def step_limit(days: int) -> TimeLimit:
    """A step's share: N working days, or the same day for a 0-day share."""
    return TimeLimit(TimeLimitKind.WORKING_DAYS, days) if days > 0 else TimeLimit(TimeLimitKind.SAME_DAY, 0)


def stops_of(raw: Sequence[Mapping], since: datetime | None = None) -> list[ClockStop]:
    """Clock stops as stored ({start, end} ISO strings), those that end after ``since``, clipped to it."""
    stops = []
    for stop in raw:
        if stop.get("start") is None:
            continue        # an end that arrived before its start: not a stop yet
        start = datetime.fromisoformat(stop["start"])
        end = datetime.fromisoformat(stop["end"]) if stop.get("end") else None
        if since is not None:
            if end is not None and end <= since:
                continue
            start = max(start, since)
        stops.append(ClockStop(start, end))
    return stops


def clock_stopped(raw: Sequence[Mapping]) -> bool:
    return bool(raw) and raw[-1].get("end") is None and raw[-1].get("start") is not None


def dossier_due(received_at: datetime, time_limit: str, calendar: WorkingCalendar,
                stops: Sequence[Mapping]) -> date | None:
    return due_date(received_at, parse_time_limit(time_limit), calendar, stops_of(stops))


def step_due(handed_over_at: datetime, days: int, calendar: WorkingCalendar, stops: Sequence[Mapping]) -> date | None:
    return due_date(handed_over_at, step_limit(days), calendar, stops_of(stops, since=handed_over_at))


def is_overdue(due: date | None, now: datetime) -> bool:
    return deadline_state(due, local_date(now)) == OVERDUE


def at_risk(due: date | None, now: datetime, calendar: WorkingCalendar, warning_working_days: int) -> bool:
    today = local_date(now)
    return deadline_state(due, today, calendar.add_working_days(today, warning_working_days)) == AT_RISK


def hand_over_class(at: datetime, due: date | None) -> str:
    return classify(at, due) if due is not None else "on_time"


def limit_share(received_at: datetime, resolved_at: datetime, due: date, calendar: WorkingCalendar) -> float:
    """The share of the legal limit used, so procedures of 1 and 30 days compare: 1.0 is the
    deadline (resolved on the due date), below is early, above is late. Counted in working days,
    from the receipt date, with one added on both sides so that same-day procedures work too."""
    start, end = local_date(received_at), local_date(resolved_at)
    allowed = calendar.working_days_between(start, due) if due > start else 0
    used = calendar.working_days_between(start, end) if end > start else 0
    if end > due and used <= allowed:
        used = allowed + 1    # late on a day off after the deadline: still past 1.0
    return (used + 1) / (allowed + 1)


def proposed_return_date(now: datetime, remaining_days: int, calendar: WorkingCalendar) -> date:
    """The new date an apology proposes: the work that remains, counted from today (at least
    the next working day: an apology never promises the past)."""
    return calendar.add_working_days(local_date(now), max(remaining_days, 1))


def remaining_days(steps: Sequence[Mapping], current_stage: int) -> int:
    """Working days left in the plan: the current stage's longest unfinished step, then every later stage."""
    by_stage: dict[int, int] = {}
    for step in steps:
        if step["stage"] < current_stage or step["state"] in (DONE, STOPPED):
            continue
        by_stage[step["stage"]] = max(by_stage.get(step["stage"], 0), step["days"])
    return sum(by_stage.values())


# --- report II.06a (Circular 01/2020/TT-VPCP) ------------------------------------------------

@dataclass
class II06a:
    """One row of form II.06a; (3) = (4) + (5) + (6), (7) = (8) + (9) + (10), (11) = (12) + (13), (3) = (7) + (11)."""
    online: int = 0            # (4)
    in_person_or_post: int = 0  # (5)
    carried_over: int = 0      # (6)
    early: int = 0             # (8)
    on_time: int = 0           # (9)
    late: int = 0              # (10)
    within_deadline: int = 0   # (12)
    overdue: int = 0           # (13)
    label: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def received(self) -> int:     # (3)
        return self.online + self.in_person_or_post + self.carried_over

    @property
    def resolved(self) -> int:     # (7)
        return self.early + self.on_time + self.late

    @property
    def pending(self) -> int:      # (11)
        return self.within_deadline + self.overdue

    @property
    def balanced(self) -> bool:
        return self.received == self.resolved + self.pending

    def rates(self) -> dict:
        """Decision 766/QĐ-TTg indicators, ratios 0..1 (None when there is nothing to divide)."""
        new = self.online + self.in_person_or_post
        return {
            "on_time_rate": (self.early + self.on_time) / self.resolved if self.resolved else None,
            "overdue_rate": (self.late + self.overdue) / self.received if self.received else None,
            "online_rate": self.online / new if new else None,
        }

    def as_dict(self) -> dict:
        return {"label": self.label, "received": self.received, "online": self.online,
                "in_person_or_post": self.in_person_or_post, "carried_over": self.carried_over,
                "resolved": self.resolved, "early": self.early, "on_time": self.on_time, "late": self.late,
                "pending": self.pending, "within_deadline": self.within_deadline, "overdue": self.overdue,
                "balanced": self.balanced, **self.rates()}

    def add(self, other: "II06a") -> None:
        for name in ("online", "in_person_or_post", "carried_over", "early", "on_time", "late",
                     "within_deadline", "overdue"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def classify_for_report(*, received_at: datetime, channel: str, resolved_at: datetime | None,
                        result_class: str | None, due: date | None, start: datetime, end: datetime) -> dict[str, int]:
    """Where one dossier falls in the report of the period [start, end): the columns it adds 1 to."""
    columns: dict[str, int] = {}
    if received_at >= end or (resolved_at is not None and resolved_at < start):
        return columns
    if received_at < start:
        columns["carried_over"] = 1
    elif channel == "online":
        columns["online"] = 1
    else:
        columns["in_person_or_post"] = 1
    if resolved_at is not None and resolved_at < end:
        columns[result_class or "on_time"] = 1
    elif due is not None and local_date(end - timedelta(microseconds=1)) > due:
        columns["overdue"] = 1          # still pending when the period ends, past its due date
    else:
        columns["within_deadline"] = 1
    return columns
