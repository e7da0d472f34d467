"""The desk's use cases: each takes a transaction and a command, applies the rules of
``domain`` and writes the dossier, its history and its events (outbox) together."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from sqlalchemy.orm import Session

from motcua.contracts.calendar import TZ, WorkingCalendar, local_date, parse_time_limit
from motcua.contracts.events import Envelope, new_event
from motcua.contracts.text import fold
from services.intake import domain, store
from services.intake.domain import Conflict, Forbidden, Invalid, NotFound, Status


@dataclass(frozen=True)
class Actor:
    """Who acts, and for which unit: an official of a desk, an agency, or the system."""
    name: str
    unit: str | None


@dataclass
class Context:
    session: Session
    now: datetime
    calendar: WorkingCalendar
    procedure_in_force: Callable[[str, datetime], dict | None]   # catalogue lookup
    unit_of: Callable[[str], dict | None]
    emit: Callable[[Session, Envelope], None]                    # write to the outbox
    correlation_id: str | None = None
    lines_per_volume: int = 1000


def _iso(instant: datetime | None) -> str | None:
    return instant.astimezone(TZ).isoformat() if instant else None


def _event(ctx: Context, type_: str, unit: str, payload: dict) -> None:
    ctx.emit(ctx.session, new_event(type_, payload, unit, correlation_id=ctx.correlation_id, occurred_at=ctx.now))


def _load(ctx: Context, code: str, actor: Actor | None, *, for_update: bool = True, read_only: bool = False):
    row = store.get(ctx.session, code, for_update=for_update)
    if row is None:
        raise NotFound("code", f"no dossier with code {code}")
    if actor is not None and actor.unit is not None and actor.unit != row.unit:
        # A handling agency may read a dossier routed to it; only the receiving desk acts on it.
        if not (read_only and actor.unit == row.handling_agency):
            raise Forbidden("code", f"dossier {code} belongs to another unit")
    return row


def _transition(ctx: Context, row, action: str, actor: Actor, status_to: Status, note: dict | None = None,
                **values) -> None:
    store.change(ctx.session, row.code, status=int(status_to), **values)
    store.record(ctx.session, row.code, at=ctx.now, actor=actor.name, actor_unit=actor.unit, action=action,
                 status_from=row.status, status_to=int(status_to), note=note)


# --- check and receive ---------------------------------------------------------------------

@dataclass(frozen=True)
class Submission:
    unit: dict
    procedure: dict
    applicant: domain.Applicant
    channel: str
    documents: list
    sets: int
    quantities: dict
    conditions: list
    notifications: dict


def parse_submission(ctx: Context, actor: Actor, body: Any) -> Submission:
    if not isinstance(body, Mapping):
        raise Invalid("body", "must be a JSON object")
    unit_code = body.get("unit") or actor.unit
    if not unit_code:
        raise Invalid("unit", "is required")
    if actor.unit and unit_code != actor.unit:
        raise Forbidden("unit", f"an official of {actor.unit} cannot receive for {unit_code}")
    unit = ctx.unit_of(unit_code)
    if unit is None:
        raise NotFound("unit", f"no unit with code {unit_code}")
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
    procedure = ctx.procedure_in_force(code, ctx.now)
    if procedure is None:
        raise NotFound("procedure_code", f"no procedure {code} in force today")
    domain.accepted_at(procedure, unit)
    return Submission(unit, procedure, applicant, channel, documents, sets, quantities, conditions, notifications)


def check(ctx: Context, actor: Actor, body: Any) -> dict:
    submission = parse_submission(ctx, actor, body)
    result = domain.check(submission.procedure, submission.documents, submission.sets)
    return {**result.as_dict(), "procedure": {"code": submission.procedure["code"],
                                              "version": submission.procedure["version"],
                                              "name": submission.procedure["name"]}}


def receive(ctx: Context, actor: Actor, body: Any) -> dict:
    """A complete dossier is received (or, online, submitted to wait for a desk officer)."""
    submission = parse_submission(ctx, actor, body)
    result = domain.check(submission.procedure, submission.documents, submission.sets)
    if not result.complete:
        raise Incomplete(result)
    procedure, unit = submission.procedure, submission.unit
    code = store.new_code(ctx.session, unit["code"], local_date(ctx.now))
    applicant = submission.applicant
    store.insert(ctx.session, {
        "code": code, "unit": unit["code"], "status": int(Status.SUBMITTED_ONLINE), "channel": submission.channel,
        "procedure_code": procedure["code"], "procedure_version": procedure["version"], "procedure": procedure,
        "handling_agency": domain.handling_agency(procedure, unit["code"]),
        "applicant_name": applicant.name, "applicant_key": fold(applicant.name),
        "applicant_id_number": applicant.id_number, "applicant_address": applicant.address,
        "applicant_phone": applicant.phone, "applicant_email": applicant.email,
        "documents": [vars(d) for d in submission.documents], "sets": submission.sets,
        "quantities": submission.quantities, "fee_conditions": submission.conditions,
        "notifications": submission.notifications,
        "secret": domain.new_secret(), "submitted_at": ctx.now,
        "fees_required": any(item["kind"] != "exemption" for item in procedure.get("fees", [])),
    })
    store.record(ctx.session, code, at=ctx.now, actor=actor.name, actor_unit=actor.unit, action="submit",
                 status_from=None, status_to=int(Status.SUBMITTED_ONLINE), note={"channel": submission.channel})
    if submission.channel == "online" and actor.unit is None:
        # Submitted by the citizen online: waits for a desk officer (status 1).
        _event(ctx, "dossier.submitted_online", unit["code"], {
            "code": code, "procedure_code": procedure["code"], "procedure_version": procedure["version"],
            "submitted_at": _iso(ctx.now)})
        return view(ctx, store.get(ctx.session, code), actor)
    return _accept(ctx, store.get(ctx.session, code, for_update=True), actor)


class Incomplete(Invalid):
    """Not received: the guidance slip (in ``details``) lists exactly what is missing."""

    def __init__(self, result: domain.CheckResult):
        super().__init__("documents", "the dossier is incomplete: " + "; ".join(result.guidance()), result.as_dict())
        self.result = result


def accept(ctx: Context, actor: Actor, code: str) -> dict:
    row = _load(ctx, code, actor)
    domain.require("accept", row.status)
    return _accept(ctx, row, actor)


def _accept(ctx: Context, row, actor: Actor) -> dict:
    """Status 2: the clock starts, the appointment date is set, a line of the tracking book is taken."""
    procedure = row.procedure
    appointment = domain.appointment(ctx.now, procedure["time_limit"], ctx.calendar)
    year = local_date(ctx.now).year
    line = store.next_book_line(ctx.session, row.unit, year)
    _transition(ctx, row, "receive", actor, Status.RECEIVED, {"appointment_date": appointment.isoformat()},
                received_at=ctx.now, received_by=actor.name, appointment_date=appointment, book_year=year,
                book_volume=(line - 1) // ctx.lines_per_volume + 1, book_line=line)
    _event(ctx, "dossier.received", row.unit, {
        "code": row.code, "procedure_code": row.procedure_code, "procedure_version": row.procedure_version,
        "channel": row.channel, "received_at": _iso(ctx.now), "appointment_date": appointment.isoformat(),
        "time_limit": procedure["time_limit"], "handling_agency": row.handling_agency,
        "applicant": {"name": row.applicant_name, "phone": row.applicant_phone, "email": row.applicant_email},
        "quantities": row.quantities,
        "conditions": row.fee_conditions, "secret": row.secret, "notifications": row.notifications})
    return view(ctx, store.get(ctx.session, row.code), actor)


# --- refusal, supplement, withdrawal -------------------------------------------------------

def _reason(body: Any, field: str = "reason") -> str:
    if not isinstance(body, Mapping):
        raise Invalid("body", "must be a JSON object")
    return domain._text(body, field, field, max_length=2000)


def refuse(ctx: Context, actor: Actor, code: str, body: Any) -> dict:
    reason = _reason(body)
    row = _load(ctx, code, actor)
    domain.require("refuse", row.status)
    refusal = {"reason": reason, "official": actor.name, "refused_at": _iso(ctx.now)}
    _transition(ctx, row, "refuse", actor, Status.REFUSED, {"reason": reason}, refusal=refusal)
    _event(ctx, "dossier.refused", row.unit, {"code": code, "reason": reason, "official": actor.name,
                                              "refused_at": _iso(ctx.now),
                                              "received": row.status == Status.RECEIVED})
    return view(ctx, store.get(ctx.session, code), actor)


def request_supplement(ctx: Context, actor: Actor, code: str, body: Any, *, agency: dict | None = None) -> dict:
    """The dossier's one supplement request (Mẫu 02), by the desk or, through routing, an agency."""
    reason = _reason(body)
    documents = domain.parse_documents(body.get("documents"))
    if not documents:
        raise Invalid("documents", "must list at least one document to add")
    row = _load(ctx, code, actor if agency is None else None)
    domain.require("request_supplement", row.status)
    domain.require_supplement_unused(row.supplement_requested_at)
    unit = ctx.unit_of(row.unit) or {"name": row.unit}
    supplement = {
        "number": "01/PYCBS", "requested_by": agency["code"] if agency else "desk",
        "requested_by_name": agency["name"] if agency else "Bộ phận tiếp nhận và trả kết quả",
        "documents": [vars(d) for d in documents], "reason": reason, "official": actor.name,
        "requested_at": _iso(ctx.now), "status_before": row.status,
        "contact": f"Bộ phận tiếp nhận và trả kết quả, {unit['name']}",
    }
    stops = [*row.clock_stops, {"start": _iso(ctx.now), "end": None}]
    _transition(ctx, row, "request_supplement", actor, Status.SUPPLEMENT_REQUESTED,
                {"reason": reason, "requested_by": supplement["requested_by"]},
                supplement=supplement, supplement_requested_at=ctx.now, clock_stops=stops)
    _event(ctx, "dossier.supplement_requested", row.unit, {
        "code": code, "requested_by": supplement["requested_by"], "documents": supplement["documents"],
        "reason": reason, "requested_at": _iso(ctx.now), "number": supplement["number"]})
    return view(ctx, store.get(ctx.session, code), actor)


def receive_supplement(ctx: Context, actor: Actor, code: str, body: Any) -> dict:
    """The citizen brings what was asked: the clock runs again, the appointment moves."""
    row = _load(ctx, code, actor)
    domain.require("receive_supplement", row.status)
    presented = domain.parse_documents((body or {}).get("documents", []) if isinstance(body, Mapping) else None)
    asked = row.supplement["documents"]
    still_missing = domain.missing_documents(asked, presented)
    if still_missing:
        raise Invalid("documents", "the supplement is incomplete: " + "; ".join(m.guidance() for m in still_missing))
    stops = [dict(s) for s in row.clock_stops]
    stops[-1]["end"] = _iso(ctx.now)
    new_date = domain.appointment(row.received_at, row.procedure["time_limit"], ctx.calendar, stops)
    history = [*row.appointment_history, {"date": row.appointment_date.isoformat(), "replaced_at": _iso(ctx.now),
                                          "reason": "Bổ sung hồ sơ"}]
    back_to = Status(row.supplement["status_before"])
    _transition(ctx, row, "receive_supplement", actor, back_to,
                {"previous_appointment_date": row.appointment_date.isoformat(),
                 "appointment_date": new_date.isoformat()},
                clock_stops=stops, appointment_date=new_date, appointment_history=history,
                documents=[*row.documents, *[vars(d) for d in presented]])
    _event(ctx, "dossier.supplement_received", row.unit, {
        "code": code, "received_at": _iso(ctx.now), "previous_appointment_date": row.appointment_date.isoformat(),
        "appointment_date": new_date.isoformat()})
    return view(ctx, store.get(ctx.session, code), actor)


def withdraw(ctx: Context, actor: Actor, code: str, body: Any) -> dict:
    reason = _reason(body)
    row = _load(ctx, code, actor)
    domain.require("withdraw", row.status)
    _transition(ctx, row, "withdraw", actor, Status.WITHDRAWN, {"reason": reason})
    _event(ctx, "dossier.withdrawn", row.unit, {"code": code, "reason": reason, "withdrawn_at": _iso(ctx.now)})
    return view(ctx, store.get(ctx.session, code), actor)


def return_result(ctx: Context, actor: Actor, code: str, body: Any) -> dict:
    """Status 10: only once processed (9) and with nothing outstanding at fees."""
    collected_by = _reason(body, "collected_by")
    row = _load(ctx, code, actor)
    domain.require("return", row.status)
    if row.fees_required and not row.fees_settled:
        outstanding = f"{row.fees_outstanding:,} VND".replace(",", ".") if row.fees_outstanding else "not yet charged"
        raise Conflict("fees", f"fees of dossier {code} are not settled ({outstanding})")
    result = domain.result_class(ctx.now, row.appointment_date)
    _transition(ctx, row, "return", actor, Status.RETURNED, {"collected_by": collected_by, "result_class": result},
                returned_at=ctx.now, returned_to=collected_by, result_class=result)
    _event(ctx, "dossier.returned", row.unit, {"code": code, "returned_at": _iso(ctx.now),
                                               "appointment_date": row.appointment_date.isoformat(),
                                               "result_class": result})
    return view(ctx, store.get(ctx.session, code), actor)


# --- what routing and fees report ----------------------------------------------------------

def _known(ctx: Context, code: str):
    row = store.get(ctx.session, code, for_update=True)
    if row is None:
        raise UnknownDossier(f"no dossier with code {code}")
    return row


class UnknownDossier(ValueError):
    """An event about a dossier intake never received: dead-lettered with this reason."""


def on_event(ctx: Context, event: Envelope) -> None:
    """Apply an event of routing or fees to the dossier it names."""
    payload = event.payload
    row = _known(ctx, payload["code"])
    agency = Actor(payload.get("agency", event.unit), payload.get("agency", event.unit))
    if event.type == "dossier.step_started":
        if row.status in (Status.PROCESSED, Status.RETURNED):
            # Each event type has its own queue: under load a step's start can arrive after the
            # result. The step did start: it goes in the history, the status stays where it is.
            store.record(ctx.session, row.code, at=ctx.now, actor=agency.name, actor_unit=agency.unit,
                         action="step_started", status_from=row.status, status_to=row.status,
                         note={"step": payload["step"], "arrived_after": "processed"})
            return
        domain.require("start_step", row.status)
        _transition(ctx, row, "step_started", agency, Status.PROCESSING, {"step": payload["step"]},
                    transferred_at=row.transferred_at or datetime.fromisoformat(payload["started_at"]))
    elif event.type == "dossier.supplement_needed":
        unit = ctx.unit_of(payload["agency"]) or {"code": payload["agency"], "name": payload["agency"]}
        try:
            request_supplement(ctx, Actor(payload["official"], payload["agency"]), row.code,
                               {"reason": payload["reason"], "documents": payload["documents"]}, agency=unit)
        except Conflict as refused:
            store.record(ctx.session, row.code, at=ctx.now, actor=payload["official"], actor_unit=payload["agency"],
                         action="supplement_rejected", status_from=row.status, status_to=row.status,
                         note={"reason": refused.reason})
            _event(ctx, "dossier.supplement_rejected", row.unit, {
                "code": row.code, "agency": payload["agency"], "reason": refused.reason,
                "rejected_at": _iso(ctx.now)})
    elif event.type == "dossier.obligation_requested":
        domain.require("request_obligation", row.status)
        _transition(ctx, row, "obligation_requested", agency, Status.OBLIGATION_REQUESTED,
                    {"description": payload["description"]})
    elif event.type == "dossier.processed":
        domain.require("processed", row.status)
        status = domain.processed_status(payload["result"])
        _transition(ctx, row, "processed", agency, status, {"result": payload["result"], "note": payload.get("note")},
                    processed_at=datetime.fromisoformat(payload["processed_at"]))
    elif event.type.startswith("fees."):
        # Each fees event comes on its own queue, so they may arrive in any order: keep sums
        # (which commute) and derive "settled" from them, never from the order of arrival.
        amount = payload.get("amount", 0)
        change = {"fees.charged": amount, "fees.paid": -amount, "fees.payment_cancelled": amount,
                  "fees.settled": 0}[event.type]
        outstanding = row.fees_outstanding + change
        charged_seen = row.fees_charged_seen or event.type == "fees.charged"
        settled = charged_seen and outstanding == 0
        status_to = Status(row.status)
        if settled and status_to == Status.OBLIGATION_REQUESTED and event.type != "fees.charged":
            status_to = Status.PROCESSING          # the obligation is paid: processing goes on
        store.change(ctx.session, row.code, fees_outstanding=outstanding, fees_settled=settled,
                     fees_charged_seen=charged_seen, status=int(status_to))
        store.record(ctx.session, row.code, at=ctx.now, actor="fees", actor_unit=None,
                     action=event.type.replace(".", "_"), status_from=row.status, status_to=int(status_to),
                     note={key: payload[key] for key in ("amount", "method", "receipt_number") if key in payload})
    else:  # the consumer declarations and this list are kept together in service.py
        raise ValueError(f"intake does not handle {event.type}")


# --- reading -------------------------------------------------------------------------------

def get(ctx: Context, actor: Actor, code: str) -> dict:
    return view(ctx, _load(ctx, code, actor, for_update=False, read_only=True), actor)


def view(ctx: Context, row, actor: Actor | None = None) -> dict:
    """The whole dossier, for officials of the unit (personal data included)."""
    status = Status(row.status)
    stopped = bool(row.clock_stops) and row.clock_stops[-1].get("end") is None
    return {
        "code": row.code, "unit": row.unit, "status": row.status, "status_text": domain.STATUS_VI[status],
        "channel": row.channel,
        "procedure": {"code": row.procedure_code, "version": row.procedure_version, "name": row.procedure["name"],
                      "time_limit": row.procedure["time_limit"], "handling_agency": row.handling_agency},
        "applicant": {"name": row.applicant_name, "id_number": row.applicant_id_number,
                      "address": row.applicant_address, "phone": row.applicant_phone, "email": row.applicant_email},
        "documents": row.documents, "sets": row.sets, "quantities": row.quantities,
        "fee_conditions": row.fee_conditions, "notifications": row.notifications,
        "submitted_at": _iso(row.submitted_at), "received_at": _iso(row.received_at),
        "appointment_date": row.appointment_date.isoformat() if row.appointment_date else None,
        "appointment_history": row.appointment_history, "clock_stopped": stopped, "clock_stops": row.clock_stops,
        "supplement": row.supplement, "refusal": row.refusal,
        "tracking_book": ({"year": row.book_year, "volume": row.book_volume, "line": row.book_line}
                          if row.book_line else None),
        "fees": {"required": row.fees_required, "outstanding": row.fees_outstanding, "settled": row.fees_settled},
        "processed_at": _iso(row.processed_at), "returned_at": _iso(row.returned_at),
        "returned_to": row.returned_to, "result_class": row.result_class, "secret": row.secret,
        "history": [{"at": _iso(h.at), "actor": h.actor, "unit": h.actor_unit, "action": h.action,
                     "status_from": h.status_from, "status_to": h.status_to, "note": h.note}
                    for h in store.history(ctx.session, row.code)],
    }


def public_status(ctx: Context, code: str, secret: str) -> dict:
    """What a citizen sees with the code and the secret of the receipt: no personal data but initials."""
    row = store.get(ctx.session, code)
    if row is None or not secret or not _same(secret.strip().upper(), row.secret):
        raise NotFound("code", "no dossier with this code and secret")
    events = [{"at": _iso(h.at), "status": h.status_to, "status_text": domain.STATUS_VI[Status(h.status_to)]}
              for h in store.history(ctx.session, code) if h.status_from != h.status_to]
    return {"code": row.code, "procedure": row.procedure["name"], "applicant": domain.initials(row.applicant_name),
            "status": row.status, "status_text": domain.STATUS_VI[Status(row.status)],
            "appointment_date": row.appointment_date.isoformat() if row.appointment_date else None,
            "result_class": domain.RESULT_VI.get(row.result_class) if row.result_class else None,
            "history": events}


def _same(a: str, b: str) -> bool:
    import hmac
    return hmac.compare_digest(a.encode(), b.encode())


def time_limit_vi(text: str) -> str:
    return parse_time_limit(text).vietnamese()
