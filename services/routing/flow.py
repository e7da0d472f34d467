"""Routing's use cases: each takes a transaction and a command, applies ``domain`` and writes
the workflow, its steps, the control slip, the action log and the events together."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping

from sqlalchemy.orm import Session

from motcua.contracts.calendar import TZ, WorkingCalendar, local_date
from motcua.contracts.events import Envelope, new_event
from motcua.runtime.inbox import NotYet
from services.routing import domain, store
from services.routing.domain import (DONE, HANDED_OVER, HELD, PENDING, STOPPED, Conflict, Forbidden, Invalid,
                                     NotFound)

DESK = "Bộ phận tiếp nhận và trả kết quả"


@dataclass(frozen=True)
class Actor:
    name: str
    unit: str


@dataclass
class Context:
    session: Session
    now: datetime
    calendar: WorkingCalendar
    procedure_version: Callable[[str, int], dict | None]      # catalogue lookup
    emit: Callable[[Session, Envelope], None]
    correlation_id: str | None = None
    at_risk_working_days: int = 1


def _iso(instant: datetime | None) -> str | None:
    return instant.astimezone(TZ).isoformat() if instant else None


def _event(ctx: Context, type_: str, unit: str, payload: dict) -> None:
    ctx.emit(ctx.session, new_event(type_, payload, unit, correlation_id=ctx.correlation_id, occurred_at=ctx.now))


def _workflow(ctx: Context, code: str, *, for_update: bool = True):
    row = store.get(ctx.session, code, for_update=for_update)
    if row is None:
        raise NotFound("code", f"no dossier {code} in routing")
    return row


def _text(body: Any, key: str, *, required: bool = True) -> str | None:
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


# --- start ------------------------------------------------------------------------------------

def start(ctx: Context, event: Envelope) -> None:
    """On ``dossier.received``: the workflow of the pinned version; its first stage handed over."""
    p = event.payload
    procedure = ctx.procedure_version(p["procedure_code"], p["procedure_version"])
    if procedure is None:
        raise LookupError(f"catalogue has no {p['procedure_code']} version {p['procedure_version']}")
    received_at = datetime.fromisoformat(p["received_at"])
    store.insert_workflow(ctx.session, {
        "code": p["code"], "unit": event.unit, "procedure_code": p["procedure_code"],
        "procedure_version": p["procedure_version"], "procedure_name": procedure["name"],
        "field": procedure["field"], "channel": p["channel"], "time_limit": p["time_limit"],
        "applicant_name": p["applicant"]["name"], "received_at": received_at,
        "original_due_date": date.fromisoformat(p["appointment_date"]),
        "due_date": domain.dossier_due(received_at, p["time_limit"], ctx.calendar, []),
        "state": "running"})
    for planned in domain.plan(procedure["steps"], event.unit):
        store.insert_step(ctx.session, {"code": p["code"], "stage": planned.stage, "position": planned.position,
                                        "parallel": planned.parallel, "agency": planned.agency,
                                        "days": planned.days, "state": PENDING})
    store.record(ctx.session, p["code"], at=ctx.now, actor="desk", agency=event.unit, action="start",
                 note={"procedure_version": p["procedure_version"]})
    _hand_over_stage(ctx, p["code"], 0, from_agency=DESK, giver=DESK, at=received_at, giver_class="on_time")


def _hand_over_stage(ctx: Context, code: str, stage: int, *, from_agency: str, giver: str, at: datetime,
                     giver_class: str, note: str | None = None) -> list[str]:
    workflow = store.get(ctx.session, code)
    agencies = []
    for step in store.steps_of(ctx.session, code):
        if step.stage != stage:
            continue
        due = domain.step_due(at, step.days, ctx.calendar, workflow.clock_stops)
        store.change_step(ctx.session, step.id, state=HANDED_OVER, handed_over_at=at, handed_over_by=giver,
                          due_date=due)
        store.hand_over(ctx.session, code=code, from_agency=from_agency, to_agency=step.agency, at=at, giver=giver,
                        step_id=step.id, result_class=giver_class, note=note)
        agencies.append(step.agency)
    store.change(ctx.session, code, stage=stage)
    _event(ctx, "dossier.transferred", workflow.unit, {"code": code, "from_agency": from_agency,
                                                       "to_agencies": agencies, "transferred_at": _iso(at)})
    return agencies


# --- agency actions ---------------------------------------------------------------------------

def _held_step(ctx: Context, actor: Actor, code: str, step_id: Any, states, action: str):
    if not isinstance(step_id, int) or isinstance(step_id, bool):
        raise Invalid("step", f"must be a step number, got {step_id!r}")
    workflow = _workflow(ctx, code)
    step = store.step(ctx.session, code, step_id)
    if step is None:
        raise NotFound("step", f"dossier {code} has no step {step_id}")
    domain.require_holder(step.agency, actor.unit, step_id)
    if workflow.state != "running":
        raise Conflict("code", f"dossier {code} is {workflow.state}: no more actions on its steps")
    domain.require_state(step.state, states, action, step_id)
    return workflow, step


def accept(ctx: Context, actor: Actor, code: str, step_id: int, body: Any = None) -> dict:
    workflow, step = _held_step(ctx, actor, code, step_id, [HANDED_OVER], "accept")
    store.change_step(ctx.session, step.id, state=HELD, accepted_at=ctx.now, accepted_by=actor.name)
    store.set_receiver(ctx.session, step.id, actor.name)
    store.record(ctx.session, code, at=ctx.now, actor=actor.name, agency=actor.unit, action="accept", step_id=step.id)
    _event(ctx, "dossier.step_started", workflow.unit, {
        "code": code, "agency": actor.unit, "step": step.id, "started_at": _iso(ctx.now),
        "due_date": step.due_date.isoformat() if step.due_date else None})
    return view(ctx, code)


def complete(ctx: Context, actor: Actor, code: str, step_id: int, body: Any) -> dict:
    """Complete a step: done, needs a supplement (asked through intake), refuse or stop."""
    result = _text(body, "result")
    if result not in domain.RESULTS:
        raise Invalid("result", f"must be one of {', '.join(domain.RESULTS)}, got {result!r}")
    note = _text(body, "note", required=False)
    workflow, step = _held_step(ctx, actor, code, step_id, [HELD], "complete")
    if result == "needs_supplement":
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents:
            raise Invalid("documents", "must list the documents the citizen has to add")
        reason = _text(body, "reason")
        store.record(ctx.session, code, at=ctx.now, actor=actor.name, agency=actor.unit, action="ask_supplement",
                     step_id=step.id, note={"reason": reason, "documents": documents})
        _event(ctx, "dossier.supplement_needed", workflow.unit, {
            "code": code, "agency": actor.unit, "documents": documents, "reason": reason, "official": actor.name,
            "asked_at": _iso(ctx.now)})
        return view(ctx, code)
    result_class = domain.hand_over_class(ctx.now, step.due_date)
    state = DONE if result == "done" else STOPPED
    store.change_step(ctx.session, step.id, state=state, completed_at=ctx.now, completed_by=actor.name,
                      result=result, note=note, result_class=result_class)
    store.record(ctx.session, code, at=ctx.now, actor=actor.name, agency=actor.unit, action="complete",
                 step_id=step.id, note={"result": result, "note": note, "result_class": result_class})
    _event(ctx, "dossier.step_completed", workflow.unit, {
        "code": code, "agency": actor.unit, "step": step.id, "result": result, "completed_at": _iso(ctx.now),
        "result_class": result_class})
    if state == STOPPED:
        # A refusal or a stop ends the processing: the dossier goes back to the desk with the reasons.
        _finish(ctx, workflow, actor, "stopped", note or result, result_class)
    return view(ctx, code)


def _current_stage_done(ctx: Context, actor: Actor, workflow, action: str) -> list:
    steps = store.steps_of(ctx.session, workflow.code)
    current = [s for s in steps if s.stage == workflow.stage]
    if actor.unit not in {s.agency for s in current}:
        raise Forbidden("code", f"{actor.unit} holds no step of the current stage of {workflow.code}")
    if not domain.stage_finished(s.state for s in current):
        open_steps = ", ".join(f"{s.id} ({s.agency}, {s.state})" for s in current if s.state != DONE)
        raise Conflict("step", f"cannot {action}: steps of the current stage are not done: {open_steps}")
    return steps


def transfer(ctx: Context, actor: Actor, code: str, body: Any = None) -> dict:
    """Hand the dossier to the next stage's agencies once every step of the current stage is done."""
    note = _text(body or {}, "note", required=False)
    workflow = _workflow(ctx, code)
    if workflow.state != "running":
        raise Conflict("code", f"dossier {code} is {workflow.state}: it cannot be transferred")
    steps = _current_stage_done(ctx, actor, workflow, "transfer")
    if not any(s.stage == workflow.stage + 1 for s in steps):
        raise Conflict("code", f"dossier {code} has no further agency: return it to the desk instead")
    mine = next(s for s in steps if s.stage == workflow.stage and s.agency == actor.unit)
    to = _hand_over_stage(ctx, code, workflow.stage + 1, from_agency=actor.unit, giver=actor.name, at=ctx.now,
                          giver_class=mine.result_class or "on_time", note=note)
    store.record(ctx.session, code, at=ctx.now, actor=actor.name, agency=actor.unit, action="transfer",
                 note={"to": to, "note": note})
    return view(ctx, code)


def return_to_desk(ctx: Context, actor: Actor, code: str, body: Any = None) -> dict:
    """The last stage is done: the dossier goes back to the desk as processed (status 9)."""
    note = _text(body or {}, "note", required=False)
    workflow = _workflow(ctx, code)
    if workflow.state != "running":
        raise Conflict("code", f"dossier {code} is {workflow.state}: it was already returned")
    steps = _current_stage_done(ctx, actor, workflow, "return to the desk")
    if any(s.stage > workflow.stage for s in steps):
        raise Conflict("code", f"dossier {code} still has agencies to go through: transfer it")
    mine = next(s for s in steps if s.stage == workflow.stage and s.agency == actor.unit)
    _finish(ctx, workflow, actor, "done", note, mine.result_class or "on_time")
    return view(ctx, code)


def _finish(ctx: Context, workflow, actor: Actor, result: str, note: str | None, giver_class: str) -> None:
    due = domain.dossier_due(workflow.received_at, workflow.time_limit, ctx.calendar, workflow.clock_stops)
    result_class = domain.hand_over_class(ctx.now, due)
    store.change(ctx.session, workflow.code, state="processed" if result == "done" else "stopped",
                 resolved_at=ctx.now, result_class=result_class, due_date=due)
    store.hand_over(ctx.session, code=workflow.code, from_agency=actor.unit, to_agency=DESK, at=ctx.now,
                    giver=actor.name, step_id=None, result_class=giver_class, note=note)
    store.record(ctx.session, workflow.code, at=ctx.now, actor=actor.name, agency=actor.unit,
                 action="return_to_desk", note={"result": result, "result_class": result_class})
    _event(ctx, "dossier.processed", workflow.unit, {"code": workflow.code, "agency": actor.unit, "result": result,
                                                     "processed_at": _iso(ctx.now), "note": note})


def request_obligation(ctx: Context, actor: Actor, code: str, body: Any) -> dict:
    """A financial obligation (status 6): the citizen pays, and the clock waits for it."""
    description = _text(body, "description")
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise Invalid("amount", f"must be a positive whole number of VND, got {amount!r}")
    workflow = _workflow(ctx, code)
    held = [s for s in store.steps_of(ctx.session, code) if s.agency == actor.unit and s.state == HELD]
    if not held:
        raise Forbidden("code", f"{actor.unit} holds no step of {code}")
    if workflow.state != "running" or domain.clock_stopped(workflow.clock_stops):
        raise Conflict("code", f"dossier {code} is not running (or already waiting for the citizen)")
    _stop_clock(ctx, workflow, "obligation")
    store.record(ctx.session, code, at=ctx.now, actor=actor.name, agency=actor.unit, action="request_obligation",
                 note={"description": description, "amount": amount})
    _event(ctx, "dossier.obligation_requested", workflow.unit, {
        "code": code, "agency": actor.unit, "description": description, "requested_at": _iso(ctx.now),
        "amount": amount})
    return view(ctx, code)


# --- clock stops -------------------------------------------------------------------------------

def _stop_clock(ctx: Context, workflow, reason: str, at: datetime | None = None) -> None:
    """The clock stops at ``at``. If the end of this stop already arrived (events of different
    types come on different queues, in any order), the stop is completed instead."""
    stops = [dict(s) for s in workflow.clock_stops]
    at_iso = _iso(at or ctx.now)
    if stops and stops[-1].get("start") is None and stops[-1].get("reason") == reason:
        stops[-1]["start"] = at_iso
        _set_stops(ctx, workflow, stops)
        return
    _set_stops(ctx, workflow, [*stops, {"start": at_iso, "end": None, "reason": reason}])


def _restart_clock(ctx: Context, workflow, reason: str, at: datetime) -> None:
    stops = [dict(s) for s in workflow.clock_stops]
    if stops and stops[-1].get("end") is None and stops[-1].get("reason") == reason:
        stops[-1]["end"] = _iso(at)
    elif reason == "supplement":
        # The restart came before the stop: remember its end; the stop will fill in its start.
        stops.append({"start": None, "end": _iso(at), "reason": reason})
    else:
        return   # not stopped for this reason: nothing to restart
    _set_stops(ctx, workflow, stops)


def _set_stops(ctx: Context, workflow, stops: list[dict]) -> None:
    """Save the stops and recompute every deadline they move (None while the clock is stopped)."""
    due = domain.dossier_due(workflow.received_at, workflow.time_limit, ctx.calendar, stops)
    store.change(ctx.session, workflow.code, clock_stops=stops, due_date=due)
    for step in store.steps_of(ctx.session, workflow.code):
        if step.state in (HANDED_OVER, HELD):
            store.change_step(ctx.session, step.id,
                              due_date=domain.step_due(step.handed_over_at, step.days, ctx.calendar, stops))


def on_event(ctx: Context, event: Envelope) -> None:
    """What intake and fees report about a dossier routing holds."""
    if event.type == "dossier.received":
        start(ctx, event)
        return
    code = event.payload["code"]
    workflow = store.get(ctx.session, code, for_update=True)
    if workflow is None:
        if never_received(event):
            return
        raise UnknownDossier(f"no dossier with code {code} in routing")
    if event.type == "dossier.supplement_requested":
        if workflow.state == "running" and not domain.clock_stopped(workflow.clock_stops):
            _stop_clock(ctx, workflow, "supplement", datetime.fromisoformat(event.payload["requested_at"]))
        store.record(ctx.session, code, at=ctx.now, actor="desk", agency=workflow.unit, action="clock_stopped",
                     note={"reason": "supplement", "requested_by": event.payload["requested_by"]})
    elif event.type == "dossier.supplement_received":
        _restart_clock(ctx, workflow, "supplement", datetime.fromisoformat(event.payload["received_at"]))
        store.record(ctx.session, code, at=ctx.now, actor="desk", agency=workflow.unit, action="clock_restarted",
                     note={"appointment_date": event.payload["appointment_date"]})
    elif event.type == "dossier.supplement_rejected":
        store.record(ctx.session, code, at=ctx.now, actor="desk", agency=workflow.unit, action="supplement_rejected",
                     note={"agency": event.payload["agency"], "reason": event.payload["reason"]})
    elif event.type == "fees.settled":
        _restart_clock(ctx, workflow, "obligation", datetime.fromisoformat(event.payload["settled_at"]))
    elif event.type in ("dossier.withdrawn", "dossier.refused"):
        at = datetime.fromisoformat(event.payload.get("withdrawn_at") or event.payload["refused_at"])
        if workflow.state == "running":
            due = domain.dossier_due(workflow.received_at, workflow.time_limit, ctx.calendar, workflow.clock_stops)
            store.change(ctx.session, code, state="withdrawn", resolved_at=at,
                         result_class=domain.hand_over_class(at, due))
            for step in store.steps_of(ctx.session, code):
                if step.state in (PENDING, HANDED_OVER, HELD):
                    store.change_step(ctx.session, step.id, state=STOPPED, result="withdrawn", completed_at=at)
        store.record(ctx.session, code, at=ctx.now, actor="desk", agency=workflow.unit,
                     action=event.type.split(".")[1], note={"reason": event.payload["reason"]})
    else:
        raise ValueError(f"routing does not handle {event.type}")


def never_received(event: Envelope) -> bool:
    """An online submission refused before receipt: routing never had it, and never will."""
    return event.type == "dossier.refused" and event.payload.get("received") is False


class UnknownDossier(NotYet):
    """An event about a dossier routing has not started (yet: its dossier.received may still be
    on its way); put back, then dead-lettered with this reason if it never comes."""


# --- the apology (Mẫu 04) ---------------------------------------------------------------------

def apology_proposal(ctx: Context, actor: Actor, code: str) -> dict:
    workflow = _workflow(ctx, code, for_update=False)
    steps = [s._asdict() for s in store.steps_of(ctx.session, code)]
    proposed = domain.proposed_return_date(ctx.now, domain.remaining_days(steps, workflow.stage), ctx.calendar)
    return {"code": code, "agency_at_fault": workflow.overdue_agency, "due_date": _date(workflow.due_date),
            "proposed_new_date": proposed.isoformat()}


def apologise(ctx: Context, actor: Actor, code: str, body: Any) -> dict:
    """The agency at fault gives the reason and confirms a new return date (proposed if not given)."""
    reason = _text(body, "reason")
    workflow = _workflow(ctx, code)
    if workflow.overdue_at is None:
        raise Conflict("code", f"dossier {code} is not overdue: no apology is due")
    if workflow.apology is not None:
        raise Conflict("code", f"dossier {code} already has its apology (Mẫu 04) of {workflow.apology['issued_at']}")
    if actor.unit != workflow.overdue_agency:
        raise Forbidden("code", f"the apology is due from {workflow.overdue_agency}, the agency at fault")
    steps = [s._asdict() for s in store.steps_of(ctx.session, code)]
    proposed = domain.proposed_return_date(ctx.now, domain.remaining_days(steps, workflow.stage), ctx.calendar)
    new_date = proposed
    if body.get("new_date") is not None:
        try:
            new_date = date.fromisoformat(body["new_date"])
        except (TypeError, ValueError):
            raise Invalid("new_date", f"must be an ISO date, got {body['new_date']!r}") from None
        if new_date <= local_date(ctx.now) or not ctx.calendar.is_working_day(new_date):
            raise Invalid("new_date", f"must be a working day after today, got {new_date}")
    apology = {"agency": actor.unit, "official": actor.name, "reason": reason, "issued_at": _iso(ctx.now),
               "original_due_date": _date(workflow.original_due_date), "due_date": _date(workflow.due_date),
               "new_date": new_date.isoformat(), "proposed_date": proposed.isoformat()}
    store.change(ctx.session, code, apology=apology)
    store.record(ctx.session, code, at=ctx.now, actor=actor.name, agency=actor.unit, action="apologise",
                 note={"reason": reason, "new_date": new_date.isoformat()})
    _event(ctx, "dossier.apology_issued", workflow.unit, {
        "code": code, "agency": actor.unit, "reason": reason, "original_due_date": _date(workflow.original_due_date),
        "new_date": new_date.isoformat(), "issued_at": _iso(ctx.now), "official": actor.name})
    return view(ctx, code)


def _date(value: date | None) -> str | None:
    return value.isoformat() if value else None


# --- the scheduler ----------------------------------------------------------------------------

def agency_at_fault(steps: list, stage: int, today: date) -> str:
    """The agency that answers for a late dossier: among the current stage's open steps, the one
    with the earliest deadline (an overdue step has the earliest); if every step of the stage is
    done, the stage's first agency, who should have handed the dossier on."""
    current = [s for s in steps if s.stage == stage]
    open_steps = [s for s in current if s.state in (HANDED_OVER, HELD)]
    if open_steps:
        return min(open_steps, key=lambda s: (s.due_date or date.max, s.id)).agency
    return current[0].agency     # steps come in (stage, position) order


def scan(ctx: Context) -> dict[str, list]:
    """Detect what happened since the last scan; each breach is claimed (and announced) once.
    Returns what was found: (unit, agency) of overdue dossiers, agencies of late and at-risk
    steps, units of dossiers without apology."""
    today = local_date(ctx.now)
    found: dict[str, list] = {"overdue": [], "step_overdue": [], "at_risk": [], "apology_missing": []}
    for code, unit, due in store.claim_overdue_dossiers(ctx.session, today, ctx.now):
        agency = agency_at_fault(store.steps_of(ctx.session, code), store.get(ctx.session, code).stage, today)
        store.change(ctx.session, code, overdue_agency=agency)
        store.record(ctx.session, code, at=ctx.now, actor="scheduler", agency=agency, action="overdue",
                     note={"due_date": due.isoformat()})
        _event(ctx, "dossier.overdue", unit, {"code": code, "agency": agency, "due_date": due.isoformat(),
                                              "detected_at": _iso(ctx.now)})
        found["overdue"].append((unit, agency))
    for step_id, code, agency, due in store.claim_overdue_steps(ctx.session, today, ctx.now):
        _event(ctx, "dossier.step_overdue", store.unit_of(ctx.session, code), {
            "code": code, "agency": agency, "step": step_id, "due_date": due.isoformat(),
            "detected_at": _iso(ctx.now)})
        found["step_overdue"].append(agency)
    warn_until = ctx.calendar.add_working_days(today, ctx.at_risk_working_days)
    for step_id, code, agency, due in store.claim_at_risk_steps(ctx.session, warn_until, ctx.now):
        if due < today:
            continue
        _event(ctx, "dossier.at_risk", store.unit_of(ctx.session, code), {
            "code": code, "agency": agency, "step": step_id, "due_date": due.isoformat(),
            "detected_at": _iso(ctx.now)})
        found["at_risk"].append(agency)
    # Overdue for a working day without an apology: flagged itself.
    a_working_day_ago = _one_working_day_before(ctx.now, ctx.calendar)
    for code, unit, agency, since in store.claim_missing_apologies(ctx.session, a_working_day_ago, ctx.now):
        _event(ctx, "dossier.apology_missing", unit, {"code": code, "agency": agency or unit,
                                                      "overdue_since": _iso(since), "detected_at": _iso(ctx.now)})
        found["apology_missing"].append(unit)
    return found


def _one_working_day_before(now: datetime, calendar: WorkingCalendar) -> datetime:
    """The same local time on the previous working day: what was overdue before it has been so
    for a whole working day."""
    local = now.astimezone(TZ)
    day = local.date() - timedelta(days=1)
    while not calendar.is_working_day(day):
        day -= timedelta(days=1)
    return datetime.combine(day, local.time(), tzinfo=TZ)


# --- reading -----------------------------------------------------------------------------------

def view(ctx: Context, code: str) -> dict:
    w = store.get(ctx.session, code)
    return {
        "code": w.code, "unit": w.unit, "state": w.state, "stage": w.stage,
        "procedure": {"code": w.procedure_code, "version": w.procedure_version, "name": w.procedure_name,
                      "field": w.field, "time_limit": w.time_limit},
        "received_at": _iso(w.received_at), "original_due_date": _date(w.original_due_date),
        "due_date": _date(w.due_date), "clock_stopped": domain.clock_stopped(w.clock_stops),
        "clock_stops": w.clock_stops, "resolved_at": _iso(w.resolved_at), "result_class": w.result_class,
        "overdue_at": _iso(w.overdue_at), "overdue_agency": w.overdue_agency, "apology": w.apology,
        "steps": [{"id": s.id, "stage": s.stage, "position": s.position, "parallel": s.parallel, "agency": s.agency,
                   "days": s.days, "state": s.state, "due_date": _date(s.due_date),
                   "handed_over_at": _iso(s.handed_over_at), "accepted_at": _iso(s.accepted_at),
                   "accepted_by": s.accepted_by, "completed_at": _iso(s.completed_at), "result": s.result,
                   "result_class": s.result_class, "note": s.note}
                  for s in store.steps_of(ctx.session, code)],
        "control_slip": control_slip_rows(ctx, code),
        "actions": [{"at": _iso(a.at), "actor": a.actor, "agency": a.agency, "action": a.action,
                     "step": a.step_id, "note": a.note} for a in store.actions(ctx.session, code)],
    }


def control_slip_rows(ctx: Context, code: str) -> list[dict]:
    """Mẫu 05: one row per hand-over, classified against the giver's own deadline."""
    return [{"from": h.from_agency, "to": h.to_agency, "at": _iso(h.at), "giver": h.giver, "receiver": h.receiver,
             "result": h.result_class, "notes": h.note or ""} for h in store.handovers(ctx.session, code)]


def get(ctx: Context, actor: Actor, code: str) -> dict:
    """Readable by the receiving desk and by every agency the procedure routes the dossier to."""
    workflow = _workflow(ctx, code, for_update=False)
    agencies = {s.agency for s in store.steps_of(ctx.session, code)}
    if actor.unit != workflow.unit and actor.unit not in agencies:
        raise Forbidden("code", f"dossier {code} is not routed to {actor.unit}")
    return view(ctx, code)
