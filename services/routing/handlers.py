"""Routing's use cases: ``HANDLERS`` maps a command class or an event type to its handler
``handler(message, uow)``. Each loads the workflow once, calls the aggregate and saves it with
the events it caused; answers (JSON views) come from the aggregate in memory."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import local_date
from motcua.contracts.events import Envelope
from motcua.contracts.refusals import Invalid, NotFound
from motcua.contracts.reorganisations import Reorganisation, already_in_force
from motcua.runtime.inbox import NotYet, about
from services.routing.unit_of_work import UnitOfWork
from services.routing.domain import OVERDUE, deadline_state
from services.routing.workflow import Workflow, one_working_day_before


# --- commands --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Accept:
    actor: Actor
    code: str
    step: Any
    body: Any = None


@dataclass(frozen=True)
class Complete:
    actor: Actor
    code: str
    step: Any
    body: Any = None


@dataclass(frozen=True)
class Transfer:
    actor: Actor
    code: str
    body: Any = None


@dataclass(frozen=True)
class ReturnToDesk:
    actor: Actor
    code: str
    body: Any = None


@dataclass(frozen=True)
class RequestObligation:
    actor: Actor
    code: str
    body: Any = None


@dataclass(frozen=True)
class Apologise:
    actor: Actor
    code: str
    body: Any = None


@dataclass(frozen=True)
class ProposeApology:
    actor: Actor
    code: str


@dataclass(frozen=True)
class GetDossier:
    actor: Actor
    code: str


@dataclass(frozen=True)
class ReadForms:
    """The data of Mẫu 04 and 05: the view and the applicant's name."""
    actor: Actor
    code: str


@dataclass(frozen=True)
class Queue:
    actor: Actor


@dataclass(frozen=True)
class Scan:
    batch: int = 500        # workflows flagged per transaction; a round goes on until none is left


# Commands that only read: answered without a transaction.
QUESTIONS = (GetDossier, ReadForms, Queue, ProposeApology)


class UnknownDossier(NotYet):
    """An event about a dossier routing has not started (yet: its dossier.received may still be
    on its way); put back, then dead-lettered with this reason if it never comes."""


def _workflow(uow: UnitOfWork, code: str, *, for_update: bool = True, actor: Actor | None = None) -> Workflow:
    """The workflow of ``code``; with ``actor``, refused (403) unless it is routed to the
    official's unit (or they read the whole district): the scope first, before the body or the
    state of the dossier is judged."""
    workflow = uow.workflows.get(code, for_update=for_update)
    if workflow is None:
        raise NotFound("code", f"no dossier {code} in routing")
    if actor is not None and actor.unit:
        workflow.readable_by(actor)
    return workflow


def _view(workflow: Workflow, uow: UnitOfWork) -> dict:
    """The answer: the workflow with the time left, as of this command."""
    return workflow.view(uow.now, uow.calendar, uow.office_hours)


# --- agency commands -------------------------------------------------------------------------

def accept(command: Accept, uow: UnitOfWork) -> dict:
    workflow = _workflow(uow, command.code, actor=command.actor)
    uow.save(workflow, workflow.accept(command.actor, command.step, uow.now))
    return _view(workflow, uow)


def complete(command: Complete, uow: UnitOfWork) -> dict:
    workflow = _workflow(uow, command.code, actor=command.actor)
    uow.save(workflow, workflow.complete(command.actor, command.step, command.body, uow.now, uow.calendar))
    return _view(workflow, uow)


def transfer(command: Transfer, uow: UnitOfWork) -> dict:
    workflow = _workflow(uow, command.code, actor=command.actor)
    uow.save(workflow, workflow.transfer(command.actor, command.body, uow.now, uow.calendar))
    return _view(workflow, uow)


def return_to_desk(command: ReturnToDesk, uow: UnitOfWork) -> dict:
    workflow = _workflow(uow, command.code, actor=command.actor)
    uow.save(workflow, workflow.return_to_desk(command.actor, command.body, uow.now, uow.calendar))
    return _view(workflow, uow)


def request_obligation(command: RequestObligation, uow: UnitOfWork) -> dict:
    workflow = _workflow(uow, command.code, actor=command.actor)
    uow.save(workflow, workflow.request_obligation(command.actor, command.body, uow.now, uow.calendar))
    return _view(workflow, uow)


def apologise(command: Apologise, uow: UnitOfWork) -> dict:
    workflow = _workflow(uow, command.code, actor=command.actor)
    uow.save(workflow, workflow.apologise(command.actor, command.body, uow.now, uow.calendar))
    return _view(workflow, uow)


# --- questions -------------------------------------------------------------------------------

def propose_apology(command: ProposeApology, uow: UnitOfWork) -> dict:
    return _workflow(uow, command.code, for_update=False, actor=command.actor).apology_proposal(uow.now, uow.calendar)


def get_dossier(command: GetDossier, uow: UnitOfWork) -> dict:
    return _view(_workflow(uow, command.code, for_update=False, actor=command.actor), uow)


def read_forms(command: ReadForms, uow: UnitOfWork) -> dict:
    workflow = _workflow(uow, command.code, for_update=False)
    workflow.readable_by(command.actor)
    return {"view": workflow.view(), "applicant_name": workflow.applicant_name}


def queue(command: Queue, uow: UnitOfWork) -> dict:
    """The steps an agency has to accept or is working on, oldest deadline first."""
    today = local_date(uow.now)
    return {"agency": command.actor.unit, "steps": [
        {"code": r.code, "step": r.id, "state": r.state, "procedure": r.procedure_name, "unit": r.unit,
         "due_date": r.due_date.isoformat() if r.due_date else None,
         "overdue": deadline_state(r.due_date, today) == OVERDUE} for r in uow.workflows.queue(command.actor.unit)]}


# --- the scheduler ---------------------------------------------------------------------------

def scan(command: Scan, uow: UnitOfWork) -> dict[str, int]:
    """Overdue, at risk, apology missing: each candidate loaded once, each breach flagged once.

    The candidates are found once per round (an index-driven query, no lock), then taken
    ``command.batch`` at a time: each batch locked (rows held elsewhere skipped), flagged, saved
    in a few statements (``save_all``) and committed in a transaction of its own (the one
    ``handle`` opened, then ``uow.commit()`` before each further batch), so that a burst
    (thousands of dossiers crossing a day boundary at once) is neither one long transaction nor
    spread over many rounds, and the first breaches are committed (and relayed) while the round
    goes on."""
    today = local_date(uow.now)
    codes = uow.workflows.scan_candidates(today, uow.calendar.add_working_days(today, uow.at_risk_working_days),
                                          one_working_day_before(uow.now, uow.calendar))
    counts = {"overdue": 0, "step_overdue": 0, "at_risk": 0, "apology_missing": 0}
    for start in range(0, len(codes), command.batch):
        if start:
            uow.commit()       # the previous batch committed (its outbox rows relayed); this one in a new transaction
        changes = [(workflow, workflow.scan(uow.now, uow.calendar, uow.at_risk_working_days))
                   for workflow in uow.workflows.lock_for_scan(codes[start:start + command.batch])]
        uow.save_all(changes)  # the batch in a few statements, not a few per workflow
        for _, events in changes:
            for event in events:
                counts[event.type.split(".")[1]] += 1
    return counts


# --- what intake and fees report -------------------------------------------------------------

def start(event: Envelope, uow: UnitOfWork) -> None:
    """On ``dossier.received``: the workflow of the pinned version; its first stage handed over."""
    p = event.payload
    procedure = uow.procedure_version(p["procedure_code"], p["procedure_version"])
    if procedure is None:
        raise LookupError(f"catalogue has no {p['procedure_code']} version {p['procedure_version']}")
    workflow, events = Workflow.start(event, procedure, uow.now, uow.calendar)
    late = already_in_force([workflow.unit, *(s.agency for s in workflow.steps)], uow.unit, local_date(uow.now))
    if late is not None:           # its units merged before it got here: moved as the event moves the others
        events += workflow.reorganised(late, uow.now)
    uow.workflows.add(workflow)
    uow.save(workflow, events)


def never_received(event: Envelope) -> bool:
    """An online submission refused before receipt: routing never had it, and never will."""
    return event.type == "dossier.refused" and event.payload.get("received") is False


def _on_dossier(change: Callable[[Workflow, Envelope, UnitOfWork], list]) -> Callable[[Envelope, UnitOfWork], None]:
    """A handler of an event about a workflow routing holds (or will hold: see UnknownDossier)."""
    def handler(event: Envelope, uow: UnitOfWork) -> None:
        workflow = uow.workflows.get(event.payload["code"], for_update=True)
        if workflow is None:
            if never_received(event):
                return
            raise UnknownDossier(f"no dossier with code {event.payload['code']} in routing")
        uow.save(workflow, change(workflow, event, uow))
    handler.__name__ = change.__name__
    return handler


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


@_on_dossier
def supplement_requested(workflow: Workflow, event: Envelope, uow: UnitOfWork) -> list:
    p = event.payload
    return workflow.supplement_requested(_instant(p["requested_at"]), p["requested_by"], uow.now, uow.calendar)


@_on_dossier
def supplement_received(workflow: Workflow, event: Envelope, uow: UnitOfWork) -> list:
    p = event.payload
    return workflow.supplement_received(_instant(p["received_at"]), uow.now, uow.calendar)


@_on_dossier
def supplement_rejected(workflow: Workflow, event: Envelope, uow: UnitOfWork) -> list:
    p = event.payload
    return workflow.supplement_rejected(p["agency"], p["reason"], uow.now)


@_on_dossier
def fees_settled(workflow: Workflow, event: Envelope, uow: UnitOfWork) -> list:
    p = event.payload
    return workflow.fees_settled(_instant(p["settled_at"]), uow.calendar)


@_on_dossier
def ended_at_desk(workflow: Workflow, event: Envelope, uow: UnitOfWork) -> list:
    """dossier.withdrawn or dossier.refused."""
    p = event.payload
    at = _instant(p.get("withdrawn_at") or p["refused_at"])
    return workflow.end_at_desk(event.type.split(".")[1], at, p["reason"], uow.now, uow.calendar)


def units_reorganised(event: Envelope, uow: UnitOfWork) -> None:
    """Units merged: every running workflow of a dissolved unit (its desk, or a step not finished)
    goes on at the successor, in this one transaction; the roll-ups of II.06a move with it."""
    reorganisation = Reorganisation.from_payload(event.payload)
    for code in uow.workflows.running_at(sorted(reorganisation.dissolved)):
        workflow = uow.workflows.get(code, for_update=True)
        uow.save(workflow, workflow.reorganised(reorganisation, uow.now))


HANDLERS: dict[Any, Callable] = {
    "dossier.received": start,
    "dossier.supplement_requested": supplement_requested,
    "dossier.supplement_received": supplement_received,
    "dossier.supplement_rejected": supplement_rejected,
    "fees.settled": fees_settled,
    "dossier.withdrawn": ended_at_desk,
    "dossier.refused": ended_at_desk,
    "catalog.units_reorganised": units_reorganised,
    Accept: accept,
    Complete: complete,
    Transfer: transfer,
    ReturnToDesk: return_to_desk,
    RequestObligation: request_obligation,
    Apologise: apologise,
    ProposeApology: propose_apology,
    GetDossier: get_dossier,
    ReadForms: read_forms,
    Queue: queue,
    Scan: scan,
}

EVENTS = [key for key in HANDLERS if isinstance(key, str)]


def handle(message: Any, uow: UnitOfWork) -> Any:
    """Run a command or an event in one unit of work; an event already handled is skipped
    (redelivery is normal: its id is recorded in the same transaction as its effect)."""
    key = message.type if isinstance(message, Envelope) else type(message)
    handler = HANDLERS.get(key)
    if handler is None:
        raise Invalid("type", f"routing does not handle {key}")
    with uow:
        if isinstance(message, Envelope) and not uow.first_time(message):
            return None
        return handler(message, uow)


def handle_events(events: list[Envelope], uow: UnitOfWork) -> None:
    """Events delivered together, in one unit of work: each recorded in the inbox with its effect
    (a redelivered one is skipped), the events each causes carrying its correlation id. An error
    rolls them all back (the consumer then tries each alone)."""
    for event in events:
        if event.type not in HANDLERS:
            raise Invalid("type", f"routing does not handle {event.type}")
    with uow:
        for event in events:
            with about(event):
                if uow.first_time(event):
                    uow.correlation_id = event.correlation_id
                    HANDLERS[event.type](event, uow)
