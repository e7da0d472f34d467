"""Events a unit system publishes about its own work (gRPC ``PublishEvents`` or RabbitMQ), each
with the unit's idempotency key, turned into the agency action they stand for.

    result_signed       "result signed by the ward chairman at 10:32": the step is done, and once its
                        stage is finished the dossier moves on (to the next agency, or back to the desk)
    step_accepted       the agency took the hand-over of its step
    step_refused        the agency refuses the dossier at its step (the reason in ``note``)
    supplement_needed   the agency needs documents from the citizen (``documents``, ``reason``)
    delay_reported      the agency at fault apologises: ``reason`` and ``proposed_date`` (Mẫu 04)

A key seen before changes nothing: the first outcome is answered again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Mapping

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from motcua.contracts.refusals import Conflict, Forbidden, Invalid, Refusal
from motcua.contracts.signing import MALFORMED, KeyRegistry, SignatureRefused, unit_event_content, verify
from services.gateway.models import unit_events

TYPES = ("step_accepted", "result_signed", "step_refused", "supplement_needed", "delay_reported")
STEP_TYPES = ("step_accepted", "result_signed", "step_refused", "supplement_needed")
FORMS = ("original", "certified_copy", "copy")
MAX_KEY = 200


@dataclass(frozen=True)
class UnitEvent:
    idempotency_key: str
    type: str
    dossier_code: str
    official: str
    occurred_at: datetime
    step: int | None = None
    note: str = ""
    reason: str = ""
    proposed_date: str = ""
    documents: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"idempotency_key": self.idempotency_key, "type": self.type, "dossier_code": self.dossier_code,
                "official": self.official, "occurred_at": self.occurred_at.isoformat(), "step": self.step,
                "note": self.note, "reason": self.reason, "proposed_date": self.proposed_date,
                "documents": self.documents}


def _text(data: Mapping, key: str, *, required: bool = True, max_length: int = 2000) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise Invalid(key, "is required")
        return ""
    if not isinstance(value, str):
        raise Invalid(key, f"must be text, got {type(value).__name__}")
    if len(value) > max_length:
        raise Invalid(key, f"is longer than {max_length} characters")
    return value.strip()


def parse(data: Any) -> UnitEvent:
    """Validate one event (as a mapping); Invalid names the field and the reason."""
    if not isinstance(data, Mapping):
        raise Invalid("event", "must be an object")
    key = _text(data, "idempotency_key", max_length=MAX_KEY)
    kind = _text(data, "type")
    if kind not in TYPES:
        raise Invalid("type", f"must be one of {', '.join(TYPES)}, got {kind!r}")
    code = _text(data, "dossier_code", max_length=64)
    official = _text(data, "official", max_length=200)
    raw_at = _text(data, "occurred_at")
    try:
        occurred_at = datetime.fromisoformat(raw_at)
    except ValueError:
        raise Invalid("occurred_at", f"must be an ISO instant with its offset, got {raw_at!r}") from None
    if occurred_at.tzinfo is None:
        raise Invalid("occurred_at", "must carry its offset (e.g. +07:00)")
    step = data.get("step")
    if kind in STEP_TYPES:
        if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
            raise Invalid("step", f"must be the step's positive number for {kind}, got {step!r}")
    else:
        step = None
    reason = _text(data, "reason", required=kind in ("supplement_needed", "delay_reported"))
    note = _text(data, "note", required=kind == "step_refused")
    proposed = _text(data, "proposed_date", required=False, max_length=10)
    if proposed:
        try:
            date.fromisoformat(proposed)
        except ValueError:
            raise Invalid("proposed_date", f"must be a date YYYY-MM-DD, got {proposed!r}") from None
    documents = data.get("documents") or []
    if kind == "supplement_needed":
        documents = _documents(documents)
    return UnitEvent(key, kind, code, official, occurred_at, step, note, reason, proposed, documents)


def _documents(documents: Any) -> list[dict]:
    if not isinstance(documents, list) or not documents:
        raise Invalid("documents", "must list the documents the citizen has to add")
    parsed = []
    for index, item in enumerate(documents):
        where = f"documents[{index}]"
        if not isinstance(item, Mapping):
            raise Invalid(where, "must be an object with name, form and count")
        name = _text(item, "name", max_length=300) if item.get("name") else ""
        if not name:
            raise Invalid(f"{where}.name", "is required")
        form = item.get("form") or "original"
        if form not in FORMS:
            raise Invalid(f"{where}.form", f"must be one of {', '.join(FORMS)}, got {form!r}")
        count = item.get("count") or 1
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= 100:
            raise Invalid(f"{where}.count", f"must be a whole number from 1 to 100, got {count!r}")
        parsed.append({"name": name, "form": form, "count": count})
    return parsed


def routing_action(event: UnitEvent) -> tuple[str, int | None, dict]:
    """The routing action (``routing.act``'s action, step and body) the event stands for."""
    signed = f"{event.official}, {event.occurred_at.isoformat(timespec='minutes')}"
    if event.type == "step_accepted":
        return "accept", event.step, {}
    if event.type == "result_signed":
        note = f"{event.note} ({signed})" if event.note else f"Đã ký: {signed}"
        return "complete", event.step, {"result": "done", "note": note}
    if event.type == "step_refused":
        return "complete", event.step, {"result": "refuse", "note": f"{event.note} ({signed})"}
    if event.type == "supplement_needed":
        return "complete", event.step, {"result": "needs_supplement", "documents": event.documents,
                                        "reason": event.reason}
    body = {"reason": event.reason}
    if event.proposed_date:
        body["new_date"] = event.proposed_date
    return "apologise", None, body


class BadSignature(Forbidden):
    """A unit event whose signature does not hold (``signing.SignatureRefused``), as the gateway
    refuses it (PERMISSION_DENIED); ``why`` is the reason's label (``signing.REASONS``)."""

    def __init__(self, field: str, reason: str, details: dict | None = None):
        super().__init__(field, reason, details)
        self.why = (details or {}).get("why", MALFORMED)


@dataclass(frozen=True)
class Signature:
    """What a unit signed an event with (both None: unsigned, where signatures are not required)."""
    key_id: str | None = None
    signature: str | None = None


def check_signature(registry: KeyRegistry, unit: str, event: UnitEvent, data: Mapping, now: datetime,
                    required: bool = True) -> Signature:
    """The event's signature verified with ``unit``'s key valid ``now``; BadSignature names
    the field (``signature``, ``key_id``) and the reason. What is verified is the event as read
    here (``UnitEvent.as_dict``), which is what is kept, so the check command sees the same bytes."""
    key_id, signature = data.get("key_id") or None, data.get("signature") or None
    if not required and key_id is None and signature is None:
        return Signature()
    if not isinstance(key_id or "", str) or not isinstance(signature or "", str):
        raise BadSignature("signature", f"key_id and signature must be text ({MALFORMED})", {"why": MALFORMED})
    try:
        verify(registry, unit_event_content(unit, key_id or "", event.as_dict()), signature, now)
    except SignatureRefused as refused:
        raise BadSignature(refused.field, refused.reason, {"why": refused.why}) from None
    return Signature(key_id, signature)


@dataclass(frozen=True)
class Outcome:
    key: str
    outcome: str            # accepted | duplicate | rejected
    field: str = ""
    reason: str = ""


def next_move(view: dict, unit: str) -> str | None:
    """After ``unit`` finished its step: ``transfer`` or ``return_to_desk`` once every step of the
    current stage is done and ``unit`` holds one of them; None while others are still working."""
    if view.get("state") != "running":
        return None
    steps, stage = view.get("steps", []), view.get("stage")
    current = [s for s in steps if s["stage"] == stage]
    if unit not in {s["agency"] for s in current} or not all(s["state"] == "done" for s in current):
        return None
    return "transfer" if any(s["stage"] > stage for s in steps) else "return_to_desk"


Call = Callable[..., Any]     # call(method, *args): routing's RPC (``act``, ``get_dossier``)


def apply(call: Call, unit: str, event: UnitEvent, retry: bool) -> None:
    """The event's routing action; on a retry, an action already done (Conflict) counts as done."""
    action, step, body = routing_action(event)
    try:
        view = call("act", event.official, unit, event.dossier_code, action, step, body)
    except Conflict:
        if not retry:
            raise
        view = None
    if event.type == "result_signed":
        view = view or call("get_dossier", event.official, unit, event.dossier_code)
        move = next_move(view, unit)
        if move:
            call("act", event.official, unit, event.dossier_code, move, None, {"note": body.get("note")})


def ingest(transaction: Callable[[], Any], unit: str, event: UnitEvent, via: str, now: datetime,
           call: Call, signature: Signature = Signature()) -> Outcome:
    """Record the event under its key, apply it once, record the outcome.

    The record is committed before the action: a crash in between leaves it ``applying``, and the
    unit's re-sent event applies it again; routing answers Conflict for what was in fact done,
    which then counts as done (the step is in the state the event asked for).
    """
    with transaction() as session:
        first = session.execute(insert(unit_events).values(
            unit=unit, idempotency_key=event.idempotency_key, type=event.type, dossier=event.dossier_code,
            body=event.as_dict(), via=via, outcome="applying", received_at=now, key_id=signature.key_id,
            signature=signature.signature)
            .on_conflict_do_nothing().returning(unit_events.c.unit)).first()
        previous = None if first else _recorded(session, unit, event.idempotency_key)
    if previous is not None and previous.outcome != "applying":
        return Outcome(event.idempotency_key, "duplicate", previous.field, previous.reason)
    try:
        apply(call, unit, event, retry=previous is not None)
        outcome = Outcome(event.idempotency_key, "accepted")
    except Refusal as refusal:
        outcome = Outcome(event.idempotency_key, "rejected", refusal.field, refusal.reason)
    with transaction() as session:
        session.execute(update(unit_events).where(unit_events.c.unit == unit,
                                                  unit_events.c.idempotency_key == event.idempotency_key)
                        .values(outcome=outcome.outcome, field=outcome.field, reason=outcome.reason,
                                applied_at=now))
    return outcome


def _recorded(session: Session, unit: str, key: str):
    return session.execute(select(unit_events).where(unit_events.c.unit == unit,
                                                     unit_events.c.idempotency_key == key)).first()


def check_kept(session: Session, registry: KeyRegistry, start: datetime, end: datetime,
               unit: str | None = None) -> tuple[int, list[str]]:
    """The units' events received from ``start`` to ``end`` (of ``unit``, if named) verified again
    with the key and signature kept, as of their receipt: the count and each one that does not hold."""
    query = select(unit_events).where(unit_events.c.received_at >= start, unit_events.c.received_at < end)
    if unit:
        query = query.where(unit_events.c.unit == unit)
    count, problems = 0, []
    for row in session.execute(query.order_by(unit_events.c.received_at, unit_events.c.unit,
                                              unit_events.c.idempotency_key)):
        count += 1
        where = f"dossier {row.dossier}, {row.unit}'s event {row.idempotency_key} ({row.type}, {row.via})"
        if row.signature is None:
            problems.append(f"{where}: not signed")
            continue
        body = dict(row.body)
        try:
            if (body.get("dossier_code"), body.get("type")) != (row.dossier, row.type):
                raise Invalid("body", "does not match the row's dossier and type")
            verify(registry, unit_event_content(row.unit, row.key_id or "", body), row.signature, row.received_at)
        except (Refusal, SignatureRefused) as refused:
            problems.append(f"{where}: {refused}")
    return count, problems
