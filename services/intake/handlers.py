"""The desk's use cases, one handler per command or consumed event type (``HANDLERS``).

A handler parses its command (a refusal names the field and changes nothing), loads the dossier once
through the unit of work's repository, calls the aggregate and saves it; its answer is built from
the aggregate in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Mapping

from motcua.contracts import access
from motcua.contracts.actors import Actor
from motcua.contracts.calendar import local_date
from motcua.contracts.events import Envelope
from motcua.contracts.refusals import Forbidden, Invalid, NotFound
from motcua.contracts.remaining import office_hours_of
from motcua.contracts.reorganisations import Reorganisation
from motcua.runtime.inbox import about
from services.intake import domain, views
from services.intake.dossier import BookLine, Dossier


@dataclass(frozen=True)
class Command:
    """What is asked, by whom, when. ``event``: the envelope, for what routing and fees report."""
    type: str
    now: datetime
    actor: Actor | None = None
    code: str | None = None
    body: Any = None
    event: Envelope | None = None


class Incomplete(Invalid):
    """Not received: the guidance slip (in ``details``) lists exactly what is missing."""

    def __init__(self, result: domain.CheckResult):
        super().__init__("documents", "the dossier is incomplete: " + "; ".join(result.guidance()), result.as_dict())
        self.result = result


class UnknownDossier(ValueError):
    """An event about a dossier intake never received: dead-lettered with this reason."""


# --- loading ---------------------------------------------------------------------------------

def load(uow, code: str, actor: Actor | None, *, for_update: bool = True, read_only: bool = False) -> Dossier:
    dossier = uow.dossiers.get(code, for_update=for_update)
    if dossier is None:
        raise NotFound("code", f"no dossier with code {code}")
    if actor is not None and actor.unit is not None and actor.unit != dossier.unit:
        # A handling agency may read a dossier routed to it (unless the route grants its own unit
        # only), a district-wide reader any dossier; only the receiving desk acts on it.
        routed = actor.unit == dossier.handling_agency and actor.scope != access.OWN
        if not (read_only and (routed or actor.district_wide)):
            raise Forbidden("code", f"dossier {code} belongs to another unit")
    return dossier


def load_for_reading(uow, actor: Actor, code: str) -> Dossier:
    return load(uow, code, actor, for_update=False, read_only=True)


def _text(body: Any, field: str = "reason") -> str:
    if not isinstance(body, Mapping):
        raise Invalid("body", "must be a JSON object")
    return domain._text(body, field, field, max_length=2000)


def _book_line(uow, unit: str, now: datetime) -> BookLine:
    year = local_date(now).year
    return BookLine(year, uow.dossiers.next_book_line(unit, year), uow.lines_per_volume)


# --- check and receive -------------------------------------------------------------------------

def parse_submission(uow, actor: Actor, body: Any, now: datetime) -> domain.Submission:
    if not isinstance(body, Mapping):
        raise Invalid("body", "must be a JSON object")
    unit_code = body.get("unit") or actor.unit
    if not unit_code:
        raise Invalid("unit", "is required")
    if actor.unit and unit_code != actor.unit:
        raise Forbidden("unit", f"an official of {actor.unit} cannot receive for {unit_code}")
    unit = uow.catalogue.unit(unit_code)
    if unit is None:
        raise NotFound("unit", f"no unit with code {unit_code}")
    if unit.get("successor"):
        domain.require_receiving(unit, local_date(now), uow.catalogue.unit(unit["successor"]))
    code = body.get("procedure_code")
    if not isinstance(code, str) or not code.strip():
        raise Invalid("procedure_code", "is required")
    applicant = domain.parse_applicant(body.get("applicant"))
    channel = domain.parse_channel(body.get("channel", "in_person"))
    documents = domain.parse_documents(body.get("documents"))
    sets = domain._count(body.get("sets", 1), "sets", maximum=100)
    quantities = domain.parse_quantities(body.get("quantities"))
    conditions = domain.parse_conditions(body.get("fee_conditions"))
    notifications = domain.parse_notifications(body.get("notifications"), applicant)
    procedure = uow.catalogue.procedure_in_force(code, now)
    if procedure is None:
        raise NotFound("procedure_code", f"no procedure {code} in force today")
    domain.accepted_at(procedure, unit)
    return domain.Submission(unit, procedure, applicant, channel, documents, sets, quantities, conditions,
                             notifications)


def check(command: Command, uow) -> dict:
    submission = parse_submission(uow, command.actor, command.body, command.now)
    result = domain.check(submission.procedure, submission.documents, submission.sets)
    return {**result.as_dict(), "procedure": {"code": submission.procedure["code"],
                                              "version": submission.procedure["version"],
                                              "name": submission.procedure["name"]}}


def receive(command: Command, uow) -> dict:
    """A complete dossier is received at the desk (status 2), or, submitted online by the citizen,
    waits for a desk officer (status 1). Either way it is inserted once, in that status."""
    actor, now = command.actor, command.now
    submission = parse_submission(uow, actor, command.body, now)
    result = domain.check(submission.procedure, submission.documents, submission.sets)
    if not result.complete:
        raise Incomplete(result)
    unit = submission.unit["code"]
    code = uow.dossiers.new_code(unit, local_date(now))
    if submission.channel == "online" and actor.unit is None:
        dossier = Dossier.submit_online(code, submission, actor, now, domain.new_secret())
    else:
        dossier = Dossier.receive_at_desk(code, submission, actor, now, domain.new_secret(), uow.calendar,
                                          _book_line(uow, unit, now))
    uow.dossiers.add(dossier)
    uow.save(dossier)
    return _answer(dossier, command, uow)


def submit_online(command: Command, uow) -> dict:
    """The citizens' portal: always online, always by the citizen."""
    if not isinstance(command.body, Mapping):
        raise Invalid("body", "must be a JSON object")
    return receive(Command("receive", command.now, Actor("citizen", None),
                           body={**command.body, "channel": "online"}), uow)


def accept(command: Command, uow) -> dict:
    dossier = load(uow, command.code, command.actor)
    dossier.accept(command.actor, command.now, uow.calendar, _book_line(uow, dossier.unit, command.now))
    uow.save(dossier)
    return _answer(dossier, command, uow)


# --- refusal, supplement, withdrawal, return ---------------------------------------------------

def refuse(command: Command, uow) -> dict:
    dossier = load(uow, command.code, command.actor)     # another unit's dossier: refused before its body
    reason = _text(command.body)
    dossier.refuse(command.actor, reason, command.now)
    uow.save(dossier)
    return _answer(dossier, command, uow)


def _supplement_asked(body: Any) -> tuple[str, list[domain.Presented]]:
    reason = _text(body)
    documents = domain.parse_documents(body.get("documents"))
    if not documents:
        raise Invalid("documents", "must list at least one document to add")
    return reason, documents


def _desk_name(uow, dossier: Dossier) -> str:
    return (uow.catalogue.unit(dossier.unit) or {"name": dossier.unit})["name"]


def request_supplement(command: Command, uow) -> dict:
    dossier = load(uow, command.code, command.actor)
    reason, documents = _supplement_asked(command.body)
    dossier.request_supplement(command.actor, reason, documents, command.now, desk_name=_desk_name(uow, dossier))
    uow.save(dossier)
    return _answer(dossier, command, uow)


def receive_supplement(command: Command, uow) -> dict:
    dossier = load(uow, command.code, command.actor)
    body = command.body
    presented = domain.parse_documents(body.get("documents", []) if isinstance(body, Mapping) else None)
    dossier.receive_supplement(command.actor, presented, command.now)
    uow.save(dossier)
    return _answer(dossier, command, uow)


def withdraw(command: Command, uow) -> dict:
    dossier = load(uow, command.code, command.actor)
    reason = _text(command.body)
    dossier.withdraw(command.actor, reason, command.now)
    uow.save(dossier)
    return _answer(dossier, command, uow)


def return_result(command: Command, uow) -> dict:
    dossier = load(uow, command.code, command.actor)
    collected_by = _text(command.body, "collected_by")
    dossier.return_result(command.actor, collected_by, command.now)
    uow.save(dossier)
    return _answer(dossier, command, uow)


def _left(dossier: Dossier, command: Command, uow) -> str | None:
    return views.remaining(dossier, command.now, uow.calendar, office_hours_of(uow.catalogue.unit(dossier.unit)))


def _answer(dossier: Dossier, command: Command, uow) -> dict:
    """The dossier as the desk reads it, with the time left as of this command."""
    return views.dossier(dossier, _left(dossier, command, uow))


# --- reading ---------------------------------------------------------------------------------

def get(command: Command, uow) -> dict:
    return _answer(load_for_reading(uow, command.actor, command.code), command, uow)


def public_status(command: Command, uow) -> dict:
    """The citizen's lookup with the code and the secret of the receipt."""
    secret = command.body or ""
    dossier = uow.dossiers.get(command.code, for_update=False) if command.code else None
    if dossier is None or not secret or not views.same_secret(secret.strip().upper(), dossier.secret):
        raise NotFound("code", "no dossier with this code and secret")
    return views.public_status(dossier, _left(dossier, command, uow))


# --- what routing and fees report --------------------------------------------------------------

def consumer(apply: Callable[[Dossier, Envelope, Command, Any], None]) -> Callable[[Command, Any], None]:
    """An event handler: the event recorded in the inbox with its effect, so redelivery changes nothing."""
    def handle(command: Command, uow) -> None:
        event = command.event
        if not uow.first_time(event):
            return
        dossier = uow.dossiers.get(event.payload["code"], for_update=True)
        if dossier is None:
            raise UnknownDossier(f"no dossier with code {event.payload['code']}")
        apply(dossier, event, command, uow)
        uow.save(dossier)
    handle.__name__ = apply.__name__
    handle.__doc__ = apply.__doc__
    return handle


def _agency(event: Envelope) -> Actor:
    agency = event.payload.get("agency", event.unit)
    return Actor(agency, agency)


@consumer
def on_step_started(dossier: Dossier, event: Envelope, command: Command, uow) -> None:
    dossier.start_step(_agency(event), event.payload["step"], datetime.fromisoformat(event.payload["started_at"]),
                       command.now)


@consumer
def on_supplement_needed(dossier: Dossier, event: Envelope, command: Command, uow) -> None:
    """An agency asks for the supplement: made if the law allows it, else rejected back to it."""
    payload = event.payload
    reason, documents = _supplement_asked({"reason": payload["reason"], "documents": payload["documents"]})
    agency = uow.catalogue.unit(payload["agency"]) or {"code": payload["agency"], "name": payload["agency"]}
    dossier.agency_asks_supplement(Actor(payload["official"], payload["agency"]), reason, documents, command.now,
                                   desk_name=_desk_name(uow, dossier), agency=agency)


@consumer
def on_obligation_requested(dossier: Dossier, event: Envelope, command: Command, uow) -> None:
    dossier.request_obligation(_agency(event), event.payload["description"], command.now)


@consumer
def on_processed(dossier: Dossier, event: Envelope, command: Command, uow) -> None:
    payload = event.payload
    dossier.processed(_agency(event), payload["result"], payload.get("note"),
                      datetime.fromisoformat(payload["processed_at"]), command.now)


@consumer
def on_fees(dossier: Dossier, event: Envelope, command: Command, uow) -> None:
    dossier.fees_reported(event.type, event.payload, command.now)


@consumer
def on_apology_issued(dossier: Dossier, event: Envelope, command: Command, uow) -> None:
    """The agency's new date becomes the appointment date (the desk's view, the citizen's status)."""
    payload = event.payload
    dossier.apology_issued(_agency(event), date.fromisoformat(payload["new_date"]), payload["reason"], command.now)


@consumer
def on_deadline_changed(dossier: Dossier, event: Envelope, command: Command, uow) -> None:
    """Routing's deadline (it keeps the clock stops) becomes the appointment date."""
    due = event.payload.get("due_date")
    dossier.deadline_changed(date.fromisoformat(due) if due else None, event.payload["reason"], command.now)


def on_units_reorganised(command: Command, uow) -> None:
    """Units merged: each dossier in flight at a dissolved desk goes on at its successor, with its
    code, deadline and history (a hand-over recorded on it), in this one transaction."""
    event = command.event
    if not uow.first_time(event):
        return
    reorganisation = Reorganisation.from_payload(event.payload)
    for code in uow.dossiers.in_flight_at(sorted(reorganisation.dissolved)):
        dossier = uow.dossiers.get(code, for_update=True)
        successor = reorganisation.successor(dossier.unit, dossier.procedure_code)
        if successor is not None:
            dossier.move_to(successor, reorganisation.name, command.now)
            uow.save(dossier)


HANDLERS: dict[str, Callable[[Command, Any], Any]] = {
    "check": check,
    "receive": receive,
    "submit_online": submit_online,
    "accept": accept,
    "refuse": refuse,
    "request_supplement": request_supplement,
    "receive_supplement": receive_supplement,
    "withdraw": withdraw,
    "return": return_result,
    "get": get,
    "public_status": public_status,
    # consumed events (service.py declares one consumer per type from these keys)
    "dossier.step_started": on_step_started,
    "dossier.supplement_needed": on_supplement_needed,
    "dossier.obligation_requested": on_obligation_requested,
    "dossier.processed": on_processed,
    "dossier.apology_issued": on_apology_issued,
    "dossier.deadline_changed": on_deadline_changed,
    "fees.charged": on_fees,
    "fees.paid": on_fees,
    "fees.settled": on_fees,
    "fees.payment_cancelled": on_fees,
    "catalog.units_reorganised": on_units_reorganised,
}
CONSUMED = tuple(key for key in HANDLERS if "." in key)


def handle(command: Command, uow) -> Any:
    """Run one command in one unit of work: a refusal rolls everything back."""
    with uow:
        return HANDLERS[command.type](command, uow)


def handle_events(commands: list[Command], uow) -> None:
    """Events delivered together, in one unit of work, the events each causes carrying its
    correlation id. An error rolls them all back (the consumer then tries each alone)."""
    for command in commands:
        if command.type not in CONSUMED:
            raise Invalid("type", f"intake does not consume {command.type}")
    with uow:
        for command in commands:
            with about(command.event):
                uow.correlation_id = command.event.correlation_id
                HANDLERS[command.type](command, uow)
