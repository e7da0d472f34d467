"""The fees' use cases: each takes a transaction and a command, applies ``domain`` and writes
the books and the events (outbox) together. Nothing is deleted; every amount is integer VND."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from motcua.contracts.calendar import TZ, local_date
from motcua.contracts.events import Envelope, new_event
from motcua.runtime.inbox import NotYet
from services.fees import domain, store
from motcua.contracts.refusals import Conflict, Forbidden, NotFound
from services.fees.domain import FeeError

METHODS = ("cash", "transfer", "online")


@dataclass(frozen=True)
class Actor:
    name: str
    unit: str


@dataclass
class Context:
    session: Session
    now: datetime
    procedure_version: Callable[[str, int], dict | None]
    emit: Callable[[Session, Envelope], None]
    correlation_id: str | None = None


def _iso(instant: datetime | None) -> str | None:
    return instant.astimezone(TZ).isoformat() if instant else None


def _event(ctx: Context, type_: str, unit: str, payload: dict) -> None:
    ctx.emit(ctx.session, new_event(type_, payload, unit, correlation_id=ctx.correlation_id, occurred_at=ctx.now))


def _receipt_label(year: int, number: int) -> str:
    return f"{number:07d}/{year}"


def balance(row) -> int:
    """What the citizen still owes (never negative: overpayment is refused)."""
    return row.charged - row.paid


def _settle_if_paid(ctx: Context, row_code: str) -> None:
    row = store.account(ctx.session, row_code)
    if balance(row) == 0 and row.settled_at is None:
        store.change(ctx.session, row_code, settled_at=ctx.now)
        _event(ctx, "fees.settled", row.unit, {"code": row_code, "settled_at": _iso(ctx.now)})


# --- charges ---------------------------------------------------------------------------------

def open_account(ctx: Context, event: Envelope) -> None:
    """On ``dossier.received``: the charges of the pinned version, item by item."""
    p = event.payload
    procedure = ctx.procedure_version(p["procedure_code"], p["procedure_version"])
    if procedure is None:
        raise LookupError(f"catalogue has no {p['procedure_code']} version {p['procedure_version']}")
    quantities = p.get("quantities") or {}
    lines = domain.compute_charges(procedure.get("fees", []), pages=quantities.get("pages", 1),
                                   copies=quantities.get("copies", 1),
                                   conditions=frozenset(p.get("conditions") or []))
    total = domain.totals(lines)["total"]
    store.open_account(ctx.session, {"code": p["code"], "unit": event.unit, "procedure_code": p["procedure_code"],
                                     "procedure_version": p["procedure_version"], "procedure_name": procedure["name"],
                                     "payer": p["applicant"]["name"], "charged": total,
                                     "opened_at": datetime.fromisoformat(p["received_at"])})
    for line in lines:
        store.add_charge(ctx.session, code=p["code"], item_id=line.item_id, type=line.type, name=line.name,
                         amount=line.amount, detail=line.detail, origin="receipt", charged_at=ctx.now)
    _event(ctx, "fees.charged", event.unit, {"code": p["code"], "amount": total, "charged_at": _iso(ctx.now),
                                             "items": [line.as_dict() for line in lines]})
    _settle_if_paid(ctx, p["code"])


def add_obligation(ctx: Context, event: Envelope) -> None:
    """A financial obligation asked for by an agency (status 6) is one more charge."""
    p = event.payload
    row = _account(ctx, p["code"])
    store.add_charge(ctx.session, code=row.code, item_id="nghia-vu-tai-chinh", type="le_phi",
                     name=f"Nghĩa vụ tài chính: {p['description']}", amount=p["amount"], detail=p["agency"],
                     origin="obligation", charged_at=ctx.now)
    store.change(ctx.session, row.code, charged=row.charged + p["amount"], settled_at=None)
    _event(ctx, "fees.charged", row.unit, {"code": row.code, "amount": p["amount"], "charged_at": _iso(ctx.now),
                                           "items": [{"item_id": "nghia-vu-tai-chinh", "type": "le_phi",
                                                      "name": p["description"], "amount": p["amount"]}]})


def _account(ctx: Context, code: str):
    row = store.account(ctx.session, code, for_update=True)
    if row is None:
        raise UnknownDossier(f"no dossier with code {code} in fees")
    return row


class UnknownDossier(NotFound):
    def __init__(self, message: str):
        super().__init__("code", message)


# --- payments --------------------------------------------------------------------------------

def pay(ctx: Context, actor: Actor | None, code: str, body: Any) -> dict:
    """Record a payment; the same (method, reference) twice records one payment."""
    if not isinstance(body, Mapping):
        raise FeeError("body", "must be a JSON object")
    method = body.get("method")
    if method not in METHODS:
        raise FeeError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "online" and actor is not None:
        raise FeeError("method", "online payments arrive through the gateway's signed callback only")
    amount = domain.parse_amount(body.get("amount"))
    domain.parse_currency(body.get("currency", "VND"))
    reference = body.get("reference")
    if method == "transfer" and (not isinstance(reference, str) or not reference.strip()):
        raise FeeError("reference", "a bank transfer needs its bank reference")
    if reference is not None and (not isinstance(reference, str) or not reference.strip() or len(reference) > 100):
        raise FeeError("reference", "must be a non-empty text of at most 100 characters")
    reference = reference.strip() if reference else f"cash-{uuid.uuid4()}"

    existing = store.payment_by_reference(ctx.session, method, reference)
    if existing is not None:
        if existing.code != code or existing.amount != amount:
            raise Conflict("reference", f"{method} reference {reference} was already used for another payment "
                                        f"({existing.code}, {existing.amount} VND)")
        return {**view(ctx, code), "recorded": False}     # the same payment again: nothing new
    row = _account(ctx, code) if actor is None else _own_account(ctx, actor, code)
    if row.closed_reason:
        raise Conflict("code", f"dossier {code} was {row.closed_reason}: no payment is taken")
    if amount > balance(row):
        raise Conflict("amount", f"overpayment: {amount} VND asked, {balance(row)} VND outstanding")
    year = local_date(ctx.now).year
    number = store.next_receipt_number(ctx.session, row.unit, year)
    official = actor.name if actor else None
    try:
        with ctx.session.begin_nested():
            store.insert_payment(ctx.session, code=code, unit=row.unit, method=method, reference=reference,
                                 amount=amount, official=official, paid_at=ctx.now, receipt_year=year,
                                 receipt_number=number)
    except IntegrityError:
        raise Conflict("reference", f"{method} reference {reference} is being recorded by another request") from None
    store.insert_receipt(ctx.session, unit=row.unit, year=year, number=number, code=code, kind="payment",
                         amount=amount, method=method, official=official, issued_at=ctx.now,
                         lines=allocate(store.charges_of(ctx.session, code), row.paid, amount))
    store.change(ctx.session, code, paid=row.paid + amount)
    _event(ctx, "fees.paid", row.unit, {"code": code, "amount": amount, "method": method, "paid_at": _iso(ctx.now),
                                        "receipt_number": _receipt_label(year, number)})
    _settle_if_paid(ctx, code)
    return {**view(ctx, code), "recorded": True}


def _own_account(ctx: Context, actor: Actor, code: str):
    row = store.account(ctx.session, code, for_update=True)
    if row is None:
        raise NotFound("code", f"no dossier with code {code} in fees")
    if row.unit != actor.unit:
        raise Forbidden("code", f"dossier {code} belongs to another desk")
    return row


def gateway_payment(ctx: Context, callback: domain.Callback) -> dict:
    """A verified callback becomes an online payment (idempotent on its transaction id)."""
    return pay(ctx, None, callback.code, {"method": "online", "amount": callback.amount,
                                          "currency": callback.currency, "reference": callback.transaction_id})


def cancel_receipt(ctx: Context, actor: Actor, year: int, number: int, body: Any) -> dict:
    """A receipt is never deleted: cancelled, it keeps its number, the reason and the official."""
    if not isinstance(body, Mapping) or not isinstance(body.get("reason"), str) or not body["reason"].strip():
        raise FeeError("reason", "is required")
    receipt = store.receipt(ctx.session, actor.unit, year, number, for_update=True)
    if receipt is None:
        raise NotFound("number", f"no receipt {_receipt_label(year, number)} at {actor.unit}")
    if receipt.cancelled_at is not None:
        raise Conflict("number", f"receipt {_receipt_label(year, number)} is already cancelled")
    if receipt.kind != "payment":
        raise Conflict("number", "only a payment receipt can be cancelled")
    row = _account(ctx, receipt.code)
    store.cancel_receipt(ctx.session, actor.unit, year, number, cancelled_at=ctx.now,
                         cancel_reason=body["reason"].strip(), cancelled_by=actor.name)
    store.change(ctx.session, receipt.code, paid=row.paid - receipt.amount, settled_at=None)
    _event(ctx, "fees.payment_cancelled", row.unit, {
        "code": receipt.code, "amount": receipt.amount, "receipt_number": _receipt_label(year, number),
        "reason": body["reason"].strip(), "cancelled_at": _iso(ctx.now)})
    return receipt_view(store.receipt(ctx.session, actor.unit, year, number))


# --- refunds ---------------------------------------------------------------------------------

def refund_on(ctx: Context, event: Envelope) -> None:
    """A refused or withdrawn dossier: what the procedure's rule gives back, with its own receipt."""
    p = event.payload
    row = store.account(ctx.session, p["code"], for_update=True)
    if row is None:
        return   # refused before receipt (an online submission): nothing was ever charged
    reason = "refused" if event.type == "dossier.refused" else "withdrawn"
    amount = domain.refund_due(row.paid, row.refunded, reason=reason, processing_started=row.processing_started)
    store.change(ctx.session, row.code, closed_reason=reason)
    if amount == 0:
        return
    year = local_date(ctx.now).year
    number = store.next_receipt_number(ctx.session, row.unit, year)
    paid_receipts = [_receipt_label(r.year, r.number) for r in store.receipts_of(ctx.session, row.code)
                     if r.kind == "payment" and r.cancelled_at is None]
    method = "transfer" if any(p_.method != "cash" for p_ in store.payments_of(ctx.session, row.code)) else "cash"
    store.insert_refund(ctx.session, code=row.code, unit=row.unit, amount=amount, reason=reason, method=method,
                        refunded_at=ctx.now, receipt_year=year, receipt_number=number,
                        for_receipt=", ".join(paid_receipts))
    store.insert_receipt(ctx.session, unit=row.unit, year=year, number=number, code=row.code, kind="refund",
                         amount=amount, method=method, official=None, issued_at=ctx.now,
                         lines=[{"name": f"Hoàn trả ({'từ chối' if reason == 'refused' else 'rút hồ sơ'})",
                                 "type": "refund", "amount": amount}])
    store.change(ctx.session, row.code, refunded=row.refunded + amount)
    _event(ctx, "fees.refunded", row.unit, {"code": row.code, "amount": amount, "reason": reason,
                                            "refunded_at": _iso(ctx.now), "receipt_number": _receipt_label(year, number)})


class NotOpenedYet(NotYet):
    """An event about a dossier whose account is not opened (yet: its dossier.received may still be
    on its way); put back, then dead-lettered if it never comes."""


def on_event(ctx: Context, event: Envelope) -> None:
    if event.type in ("dossier.obligation_requested", "dossier.step_started") and \
            store.account(ctx.session, event.payload["code"]) is None:
        raise NotOpenedYet(f"no dossier with code {event.payload['code']} in fees")
    if event.type == "dossier.received":
        open_account(ctx, event)
    elif event.type == "dossier.obligation_requested":
        add_obligation(ctx, event)
    elif event.type in ("dossier.refused", "dossier.withdrawn"):
        refund_on(ctx, event)
    elif event.type == "dossier.step_started":
        row = _account(ctx, event.payload["code"])
        if not row.processing_started:
            store.change(ctx.session, row.code, processing_started=True)
    else:
        raise ValueError(f"fees does not handle {event.type}")


# --- reconciliation --------------------------------------------------------------------------

def _day(value: Any, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise FeeError(field, f"must be an ISO date such as 2026-03-02, got {value!r}") from None


def _local_day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=TZ)
    return start, start + timedelta(days=1)


def close_cash(ctx: Context, actor: Actor, body: Any) -> dict:
    """The official's closing of the day: cash expected against cash declared."""
    if not isinstance(body, Mapping):
        raise FeeError("body", "must be a JSON object")
    day = _day(body.get("day"), "day")
    declared = body.get("declared")
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < 0:
        raise FeeError("declared", f"must be a whole, non-negative amount of VND, got {declared!r}")
    expected = store.cash_expected(ctx.session, actor.unit, *_local_day_bounds(day))
    store.save_closing(ctx.session, unit=actor.unit, day=day, expected=expected, declared=declared,
                       official=actor.name, closed_at=ctx.now)
    return {"unit": actor.unit, "day": day.isoformat(), **domain.cash_closing(expected, declared)}


def import_settlement(ctx: Context, actor: Actor, text: str) -> dict:
    """The gateway's settlement file against the online payments recorded over the days it covers."""
    lines = domain.parse_settlement_csv(text)
    days = sorted({local_date(line.paid_at) for line in lines})
    start, _ = _local_day_bounds(days[0])
    _, end = _local_day_bounds(days[-1])
    recorded = [domain.Recorded(r.reference, r.code, r.amount) for r in store.online_payments(ctx.session, start, end)]
    result = domain.match_settlement(lines, recorded)
    result = {**result, "from": days[0].isoformat(), "to": days[-1].isoformat(), "lines": len(lines)}
    result["id"] = store.save_import(ctx.session, imported_at=ctx.now, official=actor.name, lines=len(lines),
                                     result=result)
    return result


# --- reading ---------------------------------------------------------------------------------

def view(ctx: Context, code: str) -> dict:
    row = store.account(ctx.session, code)
    if row is None:
        raise NotFound("code", f"no dossier with code {code} in fees")
    charges = store.charges_of(ctx.session, code)
    return {
        "code": code, "unit": row.unit, "charged": row.charged, "paid": row.paid, "refunded": row.refunded,
        "outstanding": balance(row), "settled": row.settled_at is not None and balance(row) == 0,
        "closed": row.closed_reason,
        "charges": [{"item_id": c.item_id, "type": c.type, "name": c.name, "amount": c.amount, "detail": c.detail,
                     "origin": c.origin} for c in charges],
        "totals": {"phi": sum(c.amount for c in charges if c.type == "phi"),
                   "le_phi": sum(c.amount for c in charges if c.type == "le_phi")},
        "payments": [{"method": p.method, "reference": p.reference, "amount": p.amount, "paid_at": _iso(p.paid_at),
                      "receipt": _receipt_label(p.receipt_year, p.receipt_number),
                      "cancelled": p.cancelled_at is not None} for p in store.payments_of(ctx.session, code)],
        "refunds": [{"amount": r.amount, "reason": r.reason, "refunded_at": _iso(r.refunded_at),
                     "receipt": _receipt_label(r.receipt_year, r.receipt_number), "for_receipt": r.for_receipt}
                    for r in store.refunds_of(ctx.session, code)],
    }


def receipt_view(r) -> dict:
    return {"unit": r.unit, "year": r.year, "number": r.number, "label": _receipt_label(r.year, r.number),
            "code": r.code, "kind": r.kind, "amount": r.amount, "amount_in_words": domain.vnd_in_words(r.amount),
            "method": r.method, "official": r.official, "issued_at": _iso(r.issued_at), "lines": r.lines,
            "cancelled_at": _iso(r.cancelled_at), "cancel_reason": r.cancel_reason, "cancelled_by": r.cancelled_by}


def receipt_form(ctx: Context, r, unit: dict) -> dict:
    """The data of a printed receipt (biên lai)."""
    account = store.account(ctx.session, r.code)
    refund = next((x for x in store.refunds_of(ctx.session, r.code)
                   if (x.receipt_year, x.receipt_number) == (r.year, r.number)), None)
    return {"unit": unit, "label": _receipt_label(r.year, r.number), "kind": r.kind, "code": r.code,
            "payer": account.payer, "procedure": {"code": account.procedure_code, "name": account.procedure_name},
            "lines": r.lines,
            "amount": r.amount, "amount_in_words": domain.vnd_in_words(r.amount), "method": r.method,
            "official": r.official, "issued_at": _iso(r.issued_at),
            "for_receipt": refund.for_receipt if refund else None,
            "cancelled": ({"at": _iso(r.cancelled_at), "reason": r.cancel_reason, "by": r.cancelled_by}
                          if r.cancelled_at else None)}


def allocate(charges: list, already_paid: int, amount: int) -> list[dict]:
    """The charges a payment covers: in order, after what earlier payments covered."""
    lines, skip, left = [], already_paid, amount
    for charge in charges:
        available = max(charge.amount - skip, 0)
        skip = max(skip - charge.amount, 0)
        take = min(available, left)
        if take > 0:
            lines.append({"name": charge.name, "type": charge.type, "amount": take})
            left -= take
    return lines


def get(ctx: Context, actor: Actor, code: str) -> dict:
    answer = view(ctx, code)
    if answer["unit"] != actor.unit:
        raise Forbidden("code", f"dossier {code} belongs to another desk")
    return answer
