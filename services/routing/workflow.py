"""The ``Workflow`` aggregate: a dossier's inter-agency workflow with its steps, clock stops,
control slip (Mẫu 05) and action log. Plain Python: no I/O. Each command method checks the
state machine and the rules of law, changes the workflow in memory and returns the events it
causes; a unit of work saves the changes and those events together."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping, Sequence

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import TZ, WorkingCalendar, local_date
from motcua.contracts.documents import parse_documents
from motcua.contracts.events import Envelope, new_event
from motcua.contracts.refusals import Conflict, Forbidden, Invalid, NotFound
from motcua.contracts.remaining import OfficeHours, remaining_text
from motcua.contracts.reorganisations import Reorganisation
from services.routing import domain
from services.routing.domain import AT_RISK, DONE, HANDED_OVER, HELD, OVERDUE, PENDING, STOPPED, deadline_state

DESK = "Bộ phận tiếp nhận và trả kết quả"
OPEN = (HANDED_OVER, HELD)

def _iso(instant: datetime | None) -> str | None:
    return instant.astimezone(TZ).isoformat() if instant else None


def _date(value: date | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class Step:
    stage: int
    position: int
    parallel: bool
    agency: str
    days: int
    state: str = PENDING
    id: int | None = None          # given by the repository when the workflow is first saved
    handed_over_at: datetime | None = None
    handed_over_by: str | None = None
    accepted_at: datetime | None = None
    accepted_by: str | None = None
    completed_at: datetime | None = None
    completed_by: str | None = None
    result: str | None = None
    note: str | None = None
    due_date: date | None = None
    result_class: str | None = None
    overdue_at: datetime | None = None
    at_risk_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.state in OPEN


@dataclass
class Handover:
    """A row of the process-control slip (Mẫu 05), classified against the giver's own deadline."""
    from_agency: str
    to_agency: str
    at: datetime
    giver: str
    result_class: str
    step: Step | None = None       # the step handed over (None: back to the desk)
    receiver: str | None = None
    note: str | None = None
    id: int | None = None


@dataclass
class Action:
    at: datetime
    actor: str
    agency: str | None
    action: str
    step_id: int | None = None
    note: dict = field(default_factory=dict)
    id: int | None = None


def agency_at_fault(steps: Sequence, stage: int, today: date) -> str:
    """The agency that answers for a late dossier: the one that held it past its share. Among the
    current stage's open steps, the one with the earliest deadline (an overdue step has the
    earliest); if every step of the stage is finished, the stage's first agency, who should have
    handed the dossier on."""
    current = [s for s in steps if s.stage == stage]      # steps come in (stage, position) order
    open_steps = [s for s in current if s.state in OPEN]
    if open_steps:
        return min(open_steps, key=lambda s: (s.due_date or date.max, s.id or 0)).agency
    return current[0].agency


def one_working_day_before(now: datetime, calendar: WorkingCalendar) -> datetime:
    """The same local time on the previous working day: what was overdue before it has been so
    for a whole working day."""
    local = now.astimezone(TZ)
    day = local.date() - timedelta(days=1)
    while not calendar.is_working_day(day):
        day -= timedelta(days=1)
    return datetime.combine(day, local.time(), tzinfo=TZ)


def text_field(body: Any, key: str, *, required: bool = True) -> str | None:
    if not isinstance(body, Mapping):
        raise Invalid("body", "must be a JSON object")
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Invalid(key, "is required")
        return None
    if not isinstance(value, str):
        raise Invalid(key, f"must be text, got {type(value).__name__}")
    return " ".join(value.split())[:2000]


@dataclass
class Workflow:
    code: str
    unit: str                      # the receiving desk
    procedure_code: str
    procedure_version: int
    procedure_name: str
    field: str
    channel: str
    time_limit: str
    applicant_name: str
    received_at: datetime
    original_due_date: date
    due_date: date | None
    state: str = "running"         # running, processed, stopped, withdrawn
    stage: int = 0
    received_by: str | None = None
    clock_stops: list = field(default_factory=list)
    resolved_at: datetime | None = None
    result_class: str | None = None
    overdue_at: datetime | None = None
    overdue_agency: str | None = None
    apology: dict | None = None
    apology_missing_at: datetime | None = None
    steps: list[Step] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    # --- a reorganisation ------------------------------------------------------------------------

    def reorganised(self, reorganisation: Reorganisation, now: datetime) -> list[Envelope]:
        """Units merged (``catalog.units_reorganised``): a running workflow goes on at the
        successors, the receiving desk and each step not yet finished whose agency was dissolved,
        with their deadlines; each open step's move is a row of the control slip (Mẫu 05). What is
        finished stays with the unit that did it (its history, its place in report II.06a)."""
        if self.state != "running":
            return []
        name = reorganisation.name
        successor = reorganisation.successor(self.unit, self.procedure_code)
        if successor is not None:
            self._record(now, name, successor, "unit_reorganised",
                         note={"from": self.unit, "to": successor, "reorganisation": name})
            self.unit = successor
        for step in self.steps:
            to = reorganisation.successor(step.agency, self.procedure_code)
            if to is None or step.state not in (PENDING, *OPEN):
                continue
            if step.open:
                self.handovers.append(Handover(from_agency=step.agency, to_agency=to, at=now, giver=name, step=step,
                                               result_class="on_time", note=f"Sắp xếp đơn vị: {name}"))
            self._record(now, name, to, "step_reorganised", step_id=step.id,
                         note={"from": step.agency, "to": to, "reorganisation": name})
            step.agency = to
        if self.overdue_agency is not None:
            self.overdue_agency = reorganisation.successor(self.overdue_agency, self.procedure_code) \
                or self.overdue_agency
        return []

    # --- starting ------------------------------------------------------------------------------

    @classmethod
    def start(cls, event: Envelope, procedure: Mapping, now: datetime,
              calendar: WorkingCalendar) -> tuple["Workflow", list[Envelope]]:
        """On ``dossier.received``: the workflow of the pinned version; its first stage handed over."""
        p = event.payload
        received_at = datetime.fromisoformat(p["received_at"])
        workflow = cls(
            code=p["code"], unit=event.unit, procedure_code=p["procedure_code"],
            procedure_version=p["procedure_version"], procedure_name=procedure["name"], field=procedure["field"],
            channel=p["channel"], time_limit=p["time_limit"], applicant_name=p["applicant"]["name"],
            received_at=received_at, original_due_date=date.fromisoformat(p["appointment_date"]),
            # The deadline the desk counted at receipt (and printed on the receipt): routing keeps it
            # from here on, moving it with the clock stops and announcing each move.
            due_date=date.fromisoformat(p["appointment_date"]))
        workflow.steps = [Step(stage=s.stage, position=s.position, parallel=s.parallel, agency=s.agency, days=s.days)
                          for s in domain.plan(procedure["steps"], event.unit)]
        workflow._record(now, "desk", event.unit, "start", note={"procedure_version": p["procedure_version"]})
        events = workflow._hand_over_stage(0, from_agency=DESK, giver=DESK, at=received_at, giver_class="on_time",
                                           calendar=calendar, now=now)
        return workflow, events

    # --- helpers ---------------------------------------------------------------------------------

    def _event(self, type_: str, payload: dict, now: datetime) -> Envelope:
        return new_event(type_, payload, self.unit, occurred_at=now)

    def _record(self, at: datetime, actor: str, agency: str | None, action: str, *, step_id: int | None = None,
                note: dict | None = None) -> None:
        self.actions.append(Action(at=at, actor=actor, agency=agency, action=action, step_id=step_id,
                                   note=note or {}))

    def step(self, step_id: int) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def _hand_over_stage(self, stage: int, *, from_agency: str, giver: str, at: datetime, giver_class: str,
                         calendar: WorkingCalendar, now: datetime, note: str | None = None) -> list[Envelope]:
        agencies = []
        for step in self.steps:
            if step.stage != stage:
                continue
            step.state, step.handed_over_at, step.handed_over_by = HANDED_OVER, at, giver
            step.due_date = domain.step_due(at, step.days, calendar, self.clock_stops)
            self.handovers.append(Handover(from_agency=from_agency, to_agency=step.agency, at=at, giver=giver,
                                           step=step, result_class=giver_class, note=note))
            agencies.append(step.agency)
        self.stage = stage
        return [self._event("dossier.transferred", {"code": self.code, "from_agency": from_agency,
                                                     "to_agencies": agencies, "transferred_at": _iso(at)}, now)]

    @property
    def clock_stopped(self) -> bool:
        return domain.clock_stopped(self.clock_stops)

    def dossier_due(self, calendar: WorkingCalendar) -> date | None:
        return domain.dossier_due(self.received_at, self.time_limit, calendar, self.clock_stops)

    # --- agency actions --------------------------------------------------------------------------

    def _held_step(self, actor: Actor, step_id: Any, states, action: str) -> Step:
        if not isinstance(step_id, int) or isinstance(step_id, bool):
            raise Invalid("step", f"must be a step number, got {step_id!r}")
        step = self.step(step_id)
        if step is None:
            raise NotFound("step", f"dossier {self.code} has no step {step_id}")
        domain.require_holder(step.agency, actor.unit, step_id)
        if self.state != "running":
            raise Conflict("code", f"dossier {self.code} is {self.state}: no more actions on its steps")
        domain.require_state(step.state, states, action, step_id)
        return step

    def accept(self, actor: Actor, step_id: Any, now: datetime) -> list[Envelope]:
        step = self._held_step(actor, step_id, [HANDED_OVER], "accept")
        step.state, step.accepted_at, step.accepted_by = HELD, now, actor.name
        latest = next((h for h in reversed(self.handovers) if h.step is step), None)
        if latest is not None:
            latest.receiver = actor.name
        self._record(now, actor.name, actor.unit, "accept", step_id=step.id)
        return [self._event("dossier.step_started", {
            "code": self.code, "agency": actor.unit, "step": step.id, "started_at": _iso(now),
            "due_date": _date(step.due_date)}, now)]

    def complete(self, actor: Actor, step_id: Any, body: Any, now: datetime,
                 calendar: WorkingCalendar) -> list[Envelope]:
        """Complete a step: done, needs a supplement (asked through intake), refuse or stop."""
        result = text_field(body, "result")
        if result not in domain.RESULTS:
            raise Invalid("result", f"must be one of {', '.join(domain.RESULTS)}, got {result!r}")
        note = text_field(body, "note", required=False)
        step = self._held_step(actor, step_id, [HELD], "complete")
        if result == "needs_supplement":
            documents = [asdict(document) for document in parse_documents(body.get("documents"))]
            if not documents:
                raise Invalid("documents", "must list the documents the citizen has to add")
            reason = text_field(body, "reason")
            self._record(now, actor.name, actor.unit, "ask_supplement", step_id=step.id,
                         note={"reason": reason, "documents": documents})
            return [self._event("dossier.supplement_needed", {
                "code": self.code, "agency": actor.unit, "documents": documents, "reason": reason,
                "official": actor.name, "asked_at": _iso(now)}, now)]
        result_class = domain.hand_over_class(now, step.due_date)
        step.state = DONE if result == "done" else STOPPED
        step.completed_at, step.completed_by, step.result, step.note = now, actor.name, result, note
        step.result_class = result_class
        self._record(now, actor.name, actor.unit, "complete", step_id=step.id,
                     note={"result": result, "note": note, "result_class": result_class})
        events = [self._event("dossier.step_completed", {
            "code": self.code, "agency": actor.unit, "step": step.id, "result": result,
            "completed_at": _iso(now), "result_class": result_class}, now)]
        if step.state == STOPPED:
            # A refusal or a stop ends the processing: the dossier goes back to the desk with the reasons.
            events += self._finish(actor, "stopped", note or result, result_class, now, calendar)
        return events

    def _current_stage_done(self, actor: Actor, action: str) -> Step:
        """The actor's step of the current stage, once every step of that stage is done."""
        current = [s for s in self.steps if s.stage == self.stage]
        if actor.unit not in {s.agency for s in current}:
            raise Forbidden("code", f"{actor.unit} holds no step of the current stage of {self.code}")
        if not domain.stage_finished(s.state for s in current):
            open_steps = ", ".join(f"{s.id} ({s.agency}, {s.state})" for s in current if s.state != DONE)
            raise Conflict("step", f"cannot {action}: steps of the current stage are not done: {open_steps}")
        return next(s for s in current if s.agency == actor.unit)

    def transfer(self, actor: Actor, body: Any, now: datetime, calendar: WorkingCalendar) -> list[Envelope]:
        """Hand the dossier to the next stage's agencies once every step of the current stage is done."""
        note = text_field(body or {}, "note", required=False)
        if self.state != "running":
            raise Conflict("code", f"dossier {self.code} is {self.state}: it cannot be transferred")
        mine = self._current_stage_done(actor, "transfer")
        if not any(s.stage == self.stage + 1 for s in self.steps):
            raise Conflict("code", f"dossier {self.code} has no further agency: return it to the desk instead")
        events = self._hand_over_stage(self.stage + 1, from_agency=actor.unit, giver=actor.name, at=now,
                                       giver_class=mine.result_class or "on_time", calendar=calendar, now=now,
                                       note=note)
        self._record(now, actor.name, actor.unit, "transfer", note={"to": events[0].payload["to_agencies"],
                                                                    "note": note})
        return events

    def return_to_desk(self, actor: Actor, body: Any, now: datetime, calendar: WorkingCalendar) -> list[Envelope]:
        """The last stage is done: the dossier goes back to the desk as processed (status 9)."""
        note = text_field(body or {}, "note", required=False)
        if self.state != "running":
            raise Conflict("code", f"dossier {self.code} is {self.state}: it was already returned")
        mine = self._current_stage_done(actor, "return to the desk")
        if any(s.stage > self.stage for s in self.steps):
            raise Conflict("code", f"dossier {self.code} still has agencies to go through: transfer it")
        return self._finish(actor, "done", note, mine.result_class or "on_time", now, calendar)

    def _finish(self, actor: Actor, result: str, note: str | None, giver_class: str, now: datetime,
                calendar: WorkingCalendar) -> list[Envelope]:
        due = self.dossier_due(calendar)
        self.state = "processed" if result == "done" else "stopped"
        self.resolved_at, self.result_class, self.due_date = now, domain.hand_over_class(now, due), due
        self.handovers.append(Handover(from_agency=actor.unit, to_agency=DESK, at=now, giver=actor.name, step=None,
                                       result_class=giver_class, note=note))
        self._record(now, actor.name, actor.unit, "return_to_desk",
                     note={"result": result, "result_class": self.result_class})
        return [self._event("dossier.processed", {"code": self.code, "agency": actor.unit, "result": result,
                                                   "processed_at": _iso(now), "note": note}, now)]

    def request_obligation(self, actor: Actor, body: Any, now: datetime,
                           calendar: WorkingCalendar) -> list[Envelope]:
        """A financial obligation (status 6): the citizen pays, and the clock waits for it."""
        description = text_field(body, "description")
        amount = body.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise Invalid("amount", f"must be a positive whole number of VND, got {amount!r}")
        if not any(s.agency == actor.unit and s.state == HELD for s in self.steps):
            raise Forbidden("code", f"{actor.unit} holds no step of {self.code}")
        if self.state != "running" or self.clock_stopped:
            raise Conflict("code", f"dossier {self.code} is not running (or already waiting for the citizen)")
        stopped = self.stop_clock("obligation", now, calendar)
        self._record(now, actor.name, actor.unit, "request_obligation",
                     note={"description": description, "amount": amount})
        return [self._event("dossier.obligation_requested", {
            "code": self.code, "agency": actor.unit, "description": description, "requested_at": _iso(now),
            "amount": amount}, now), *stopped]

    # --- clock stops -------------------------------------------------------------------------------

    def stop_clock(self, reason: str, at: datetime, calendar: WorkingCalendar) -> list[Envelope]:
        """The clock stops at ``at``. If the end of this stop already arrived (events of different
        types come on different queues, in any order), the stop is completed instead."""
        stops = [dict(s) for s in self.clock_stops]
        if stops and stops[-1].get("start") is None and stops[-1].get("reason") == reason:
            stops[-1]["start"] = _iso(at)
        else:
            stops.append({"start": _iso(at), "end": None, "reason": reason})
        return self._set_stops(stops, calendar, reason, at)

    def restart_clock(self, reason: str, at: datetime, calendar: WorkingCalendar) -> list[Envelope]:
        stops = [dict(s) for s in self.clock_stops]
        if stops and stops[-1].get("end") is None and stops[-1].get("reason") == reason:
            stops[-1]["end"] = _iso(at)
        elif reason == "supplement":
            # The restart came before the stop: remember its end; the stop will fill in its start.
            stops.append({"start": None, "end": _iso(at), "reason": reason})
        else:
            return []   # not stopped for this reason: nothing to restart
        return self._set_stops(stops, calendar, reason, at)

    def _set_stops(self, stops: list[dict], calendar: WorkingCalendar, reason: str,
                   at: datetime) -> list[Envelope]:
        """The stops and every deadline they move (None while the clock is stopped). The dossier's
        deadline is routing's alone: a move is announced (``dossier.deadline_changed``) for the desk
        and notify, which keep it as the appointment date."""
        previous = self.due_date
        self.clock_stops = stops
        self.due_date = self.dossier_due(calendar)
        for step in self.steps:
            if step.open:
                step.due_date = domain.step_due(step.handed_over_at, step.days, calendar, stops)
        if self.due_date == previous or self.state != "running":
            return []
        return [self._event("dossier.deadline_changed", {
            "code": self.code, "due_date": _date(self.due_date), "previous_due_date": _date(previous),
            "reason": reason, "changed_at": _iso(at)}, at)]

    # --- what intake and fees report -----------------------------------------------------------------

    def supplement_requested(self, requested_at: datetime, requested_by: Any, now: datetime,
                             calendar: WorkingCalendar) -> list[Envelope]:
        events = []
        if self.state == "running" and not self.clock_stopped:
            events = self.stop_clock("supplement", requested_at, calendar)
        self._record(now, "desk", self.unit, "clock_stopped",
                     note={"reason": "supplement", "requested_by": requested_by})
        return events

    def supplement_received(self, received_at: datetime, now: datetime,
                            calendar: WorkingCalendar) -> list[Envelope]:
        events = self.restart_clock("supplement", received_at, calendar)
        self._record(now, "desk", self.unit, "clock_restarted", note={"due_date": _date(self.due_date)})
        return events

    def supplement_rejected(self, agency: Any, reason: Any, now: datetime) -> list[Envelope]:
        self._record(now, "desk", self.unit, "supplement_rejected", note={"agency": agency, "reason": reason})
        return []

    def fees_settled(self, settled_at: datetime, calendar: WorkingCalendar) -> list[Envelope]:
        return self.restart_clock("obligation", settled_at, calendar)

    def end_at_desk(self, action: str, at: datetime, reason: Any, now: datetime,
                    calendar: WorkingCalendar) -> list[Envelope]:
        """Withdrawn by the citizen or refused at the desk: every unfinished step stops."""
        if self.state == "running":
            self.state, self.resolved_at = "withdrawn", at
            self.result_class = domain.hand_over_class(at, self.dossier_due(calendar))
            for step in self.steps:
                if step.state in (PENDING, HANDED_OVER, HELD):
                    step.state, step.result, step.completed_at = STOPPED, "withdrawn", at
        self._record(now, "desk", self.unit, action, note={"reason": reason})
        return []

    # --- the apology (Mẫu 04) ------------------------------------------------------------------------

    def proposed_new_date(self, now: datetime, calendar: WorkingCalendar) -> date:
        steps = [{"stage": s.stage, "state": s.state, "days": s.days} for s in self.steps]
        return domain.proposed_return_date(now, domain.remaining_days(steps, self.stage), calendar)

    def apology_proposal(self, now: datetime, calendar: WorkingCalendar) -> dict:
        return {"code": self.code, "agency_at_fault": self.overdue_agency, "due_date": _date(self.due_date),
                "proposed_new_date": self.proposed_new_date(now, calendar).isoformat()}

    def apologise(self, actor: Actor, body: Any, now: datetime, calendar: WorkingCalendar) -> list[Envelope]:
        """The agency at fault gives the reason and confirms a new return date (proposed if not given)."""
        reason = text_field(body, "reason")
        if self.overdue_at is None:
            raise Conflict("code", f"dossier {self.code} is not overdue: no apology is due")
        if self.apology is not None:
            raise Conflict("code", f"dossier {self.code} already has its apology (Mẫu 04) of "
                                   f"{self.apology['issued_at']}")
        if actor.unit != self.overdue_agency:
            raise Forbidden("code", f"the apology is due from {self.overdue_agency}, the agency at fault")
        proposed = self.proposed_new_date(now, calendar)
        new_date = proposed
        if body.get("new_date") is not None:
            try:
                new_date = date.fromisoformat(body["new_date"])
            except (TypeError, ValueError):
                raise Invalid("new_date", f"must be an ISO date, got {body['new_date']!r}") from None
            if new_date <= local_date(now) or not calendar.is_working_day(new_date):
                raise Invalid("new_date", f"must be a working day after today, got {new_date}")
        self.apology = {"agency": actor.unit, "official": actor.name, "reason": reason, "issued_at": _iso(now),
                        "original_due_date": _date(self.original_due_date), "due_date": _date(self.due_date),
                        "new_date": new_date.isoformat(), "proposed_date": proposed.isoformat()}
        self._record(now, actor.name, actor.unit, "apologise", note={"reason": reason, "new_date": new_date.isoformat()})
        return [self._event("dossier.apology_issued", {
            "code": self.code, "agency": actor.unit, "reason": reason,
            "original_due_date": _date(self.original_due_date), "new_date": new_date.isoformat(),
            "issued_at": _iso(now), "official": actor.name}, now)]

    # --- the scheduler ---------------------------------------------------------------------------------

    def scan(self, now: datetime, calendar: WorkingCalendar, warning_working_days: int) -> list[Envelope]:
        """What happened since the last scan: each breach flagged (and announced) once."""
        today = local_date(now)
        warn_until = calendar.add_working_days(today, warning_working_days)
        events = []
        if self.state == "running" and self.overdue_at is None and deadline_state(self.due_date, today) == OVERDUE:
            self.overdue_at = now
            self.overdue_agency = agency_at_fault(self.steps, self.stage, today)
            self._record(now, "scheduler", self.overdue_agency, "overdue", note={"due_date": _date(self.due_date)})
            events.append(self._event("dossier.overdue", {"code": self.code, "agency": self.overdue_agency,
                                                           "due_date": _date(self.due_date),
                                                           "detected_at": _iso(now)}, now))
        for step in self.steps:
            if not step.open or step.overdue_at is not None:
                continue
            state = deadline_state(step.due_date, today, warn_until)
            if state == OVERDUE:
                step.overdue_at = now
                events.append(self._event("dossier.step_overdue", {
                    "code": self.code, "agency": step.agency, "step": step.id, "due_date": _date(step.due_date),
                    "detected_at": _iso(now)}, now))
            elif state == AT_RISK and step.at_risk_at is None:
                step.at_risk_at = now
                events.append(self._event("dossier.at_risk", {
                    "code": self.code, "agency": step.agency, "step": step.id, "due_date": _date(step.due_date),
                    "detected_at": _iso(now)}, now))
        # Overdue for a working day without an apology: flagged itself.
        if (self.overdue_at is not None and self.overdue_at <= one_working_day_before(now, calendar)
                and self.apology is None and self.apology_missing_at is None
                and self.state in ("running", "processed")):
            self.apology_missing_at = now
            events.append(self._event("dossier.apology_missing", {
                "code": self.code, "agency": self.overdue_agency or self.unit, "overdue_since": _iso(self.overdue_at),
                "detected_at": _iso(now)}, now))
        return events

    # --- reading -----------------------------------------------------------------------------------------

    def readable_by(self, actor: Actor) -> None:
        """Readable by the receiving desk, by every agency the procedure routes the dossier to, and
        by a district-wide reader (an auditor)."""
        if actor.district_wide:
            return
        if actor.unit != self.unit and actor.unit not in {s.agency for s in self.steps}:
            raise Forbidden("code", f"dossier {self.code} is not routed to {actor.unit}")

    def control_slip(self) -> list[dict]:
        """Mẫu 05: one row per hand-over, classified against the giver's own deadline."""
        return [{"from": h.from_agency, "to": h.to_agency, "at": _iso(h.at), "giver": h.giver, "receiver": h.receiver,
                 "result": h.result_class, "notes": h.note or ""} for h in self.handovers]

    def view(self, now: datetime | None = None, calendar: WorkingCalendar | None = None,
             office_hours: Callable[[str], OfficeHours] | None = None) -> dict:
        """The whole workflow; with ``now``, the calendar and each unit's office hours, also the time
        left as an official reads it (``remaining``): the dossier's against the receiving unit's
        hours while it runs, each open step's against its agency's."""
        view = self._view()
        if now is None or calendar is None or office_hours is None:
            return view
        running = self.state == "running"
        view["remaining"] = (remaining_text(now, self.due_date, calendar, office_hours(self.unit), self.clock_stopped)
                             if running else None)
        for step, shown in zip(sorted(self.steps, key=lambda s: (s.stage, s.position)), view["steps"]):
            shown["remaining"] = (remaining_text(now, step.due_date, calendar, office_hours(step.agency),
                                                 self.clock_stopped) if running and step.open else None)
        return view

    def _view(self) -> dict:
        return {
            "code": self.code, "unit": self.unit, "state": self.state, "stage": self.stage,
            "procedure": {"code": self.procedure_code, "version": self.procedure_version,
                          "name": self.procedure_name, "field": self.field, "time_limit": self.time_limit},
            "received_at": _iso(self.received_at), "original_due_date": _date(self.original_due_date),
            "due_date": _date(self.due_date), "clock_stopped": self.clock_stopped,
            "clock_stops": self.clock_stops, "resolved_at": _iso(self.resolved_at),
            "result_class": self.result_class, "overdue_at": _iso(self.overdue_at),
            "overdue_agency": self.overdue_agency, "apology": self.apology,
            "steps": [{"id": s.id, "stage": s.stage, "position": s.position, "parallel": s.parallel,
                       "agency": s.agency, "days": s.days, "state": s.state, "due_date": _date(s.due_date),
                       "handed_over_at": _iso(s.handed_over_at), "accepted_at": _iso(s.accepted_at),
                       "accepted_by": s.accepted_by, "completed_at": _iso(s.completed_at), "result": s.result,
                       "result_class": s.result_class, "note": s.note}
                      for s in sorted(self.steps, key=lambda s: (s.stage, s.position))],
            "control_slip": self.control_slip(),
            "actions": [{"at": _iso(a.at), "actor": a.actor, "agency": a.agency, "action": a.action,
                         "step": a.step_id, "note": a.note} for a in self.actions],
        }
