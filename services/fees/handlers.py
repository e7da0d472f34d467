"""The fees' use cases, one handler each, in one table: ``HANDLERS[type] -> handler(command, uow)``.

A command is a dataclass below (its class is its type); an event is an ``Envelope`` (its ``type`` is
its type). A handler parses and checks the input (a refusal names the field and changes nothing),
loads the account once through ``uow.accounts``, calls the aggregate and saves it with the events
it returned through one ``uow.save``; answers are built from the account in memory.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import TZ, local_date
from motcua.contracts.events import Envelope
from motcua.contracts.refusals import Forbidden, NotFound
from motcua.contracts.reorganisations import Reorganisation, already_in_force
from motcua.runtime.inbox import NotYet
from services.fees import domain
from services.fees.account import METHODS, Account, receipt_label, receipt_view
from services.fees.domain import FeeError


# --- commands ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShowAccount:
    actor: Actor
    code: str


@dataclass(frozen=True)
class Pay:
    """At the desk (``actor``) or, with ``actor`` None, an online payment from the gateway."""
    actor: Actor | None
    code: str
    body: Any


@dataclass(frozen=True)
class GatewayCallback:
    """The gateway's signed notification of a payment, its parameters as received."""
    params: dict
    secrets: dict
    max_age_seconds: int


@dataclass(frozen=True)
class RejectCallback:
    """The evidence of a callback refused, kept in a transaction of its own."""
    params: dict
    reason: str


@dataclass(frozen=True)
class CancelReceipt:
    actor: Actor
    year: int
    number: int
    body: Any


@dataclass(frozen=True)
class ShowReceipt:
    """A receipt with the account it belongs to (for JSON, HTML or PDF)."""
    actor: Actor
    year: int
    number: int


@dataclass(frozen=True)
class Outstanding:
    code: str


@dataclass(frozen=True)
class CloseCash:
    actor: Actor
    body: Any


@dataclass(frozen=True)
class ImportSettlement:
    actor: Actor
    text: str


class NotOpenedYet(NotYet):
    """An event about a dossier whose account is not opened (yet: its dossier.received may still be
    on its way); put back, then dead-lettered if it never comes."""


def _account(uow, code: str, *, lock: bool = True) -> Account:
    account = uow.accounts.get(code, lock=lock)
    if account is None:
        raise NotFound("code", f"no dossier with code {code} in fees")
    return account


# --- charges -----------------------------------------------------------------------------------

def open_account(event: Envelope, uow) -> None:
    """On ``dossier.received``: the charges of the pinned procedure version."""
    p = event.payload
    procedure = uow.procedure(p["procedure_code"], p["procedure_version"])
    if procedure is None:
        raise LookupError(f"catalogue has no {p['procedure_code']} version {p['procedure_version']}")
    account, events = Account.open(
        code=p["code"], unit=event.unit, procedure_code=p["procedure_code"],
        procedure_version=p["procedure_version"], procedure=procedure, payer=p["applicant"]["name"],
        opened_at=datetime.fromisoformat(p["received_at"]), quantities=p.get("quantities") or {},
        conditions=frozenset(p.get("conditions") or []), now=uow.now)
    late = already_in_force([account.unit], uow.unit, local_date(uow.now))
    if late is not None:           # its desk merged before the dossier got here: collected at the successor
        events += account.move_to(late.successor(account.unit))
    uow.save(account, events)


def add_obligation(event: Envelope, uow) -> None:
    p = event.payload
    account = uow.accounts.get(p["code"])
    if account is None:
        raise NotOpenedYet(f"no dossier with code {p['code']} in fees")
    uow.save(account, account.add_obligation(description=p["description"], amount=p["amount"],
                                             agency=p["agency"], now=uow.now))


def start_processing(event: Envelope, uow) -> None:
    account = uow.accounts.get(event.payload["code"])
    if account is None:
        raise NotOpenedYet(f"no dossier with code {event.payload['code']} in fees")
    if not account.processing_started:
        uow.save(account, account.start_processing())


def refund(event: Envelope, uow) -> None:
    """A refused or withdrawn dossier: closed, and refunded what the rule gives back."""
    account = uow.accounts.get(event.payload["code"])
    if account is None:
        return   # refused before receipt (an online submission): nothing was ever charged
    reason = "refused" if event.type == "dossier.refused" else "withdrawn"
    uow.save(account, account.close(reason=reason, now=uow.now, numbers=uow.receipt_number))


def reorganised(event: Envelope, uow) -> None:
    """Units merged: the open accounts of a dissolved desk go on at its successor, in this one
    transaction (a closed one stays with the desk that closed it)."""
    reorganisation = Reorganisation.from_payload(event.payload)
    for code in uow.accounts.open_at(sorted(reorganisation.dissolved)):
        account = uow.accounts.get(code)
        successor = reorganisation.successor(account.unit, account.procedure_code)
        if successor is not None:
            uow.save(account, account.move_to(successor))


# --- payments ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PaymentRequest:
    method: str
    amount: int
    reference: str


def parse_payment(actor: Actor | None, body: Any) -> PaymentRequest:
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
    # Cash has no outside reference: each desk payment is its own.
    return PaymentRequest(method, amount, reference.strip() if reference else f"cash-{uuid.uuid4()}")


def pay(command: Pay, uow) -> dict:
    """Record a payment; the same (method, reference) twice records one payment."""
    account = _account(uow, command.code)
    if command.actor is not None and account.unit != command.actor.unit:
        # another desk's dossier is refused before its payment is judged (the official's scope first)
        raise Forbidden("code", f"dossier {command.code} belongs to another desk")
    request = parse_payment(command.actor, command.body)
    # A reference already used for this dossier is the aggregate's to judge; for another dossier,
    # the save refuses it (a unique constraint, also against a payment recorded at this moment).
    events = account.pay(actor=command.actor, method=request.method, amount=request.amount,
                         reference=request.reference, now=uow.now, numbers=uow.receipt_number)
    if events:
        uow.save(account, events)
    return {**account.view(), "recorded": bool(events)}


def gateway_callback(command: GatewayCallback, uow) -> dict:
    """A verified callback becomes an online payment (idempotent on its transaction id)."""
    callback = domain.verify_callback(command.params, command.secrets, uow.now, command.max_age_seconds)
    result = pay(Pay(None, callback.code, {"method": "online", "amount": callback.amount,
                                           "currency": callback.currency, "reference": callback.transaction_id}),
                 uow)
    uow.books.record_callback(received_at=uow.now, params=command.params, accepted=True,
                              reason=None if result["recorded"] else "duplicate")
    return {"status": "ok", "code": result["code"], "outstanding": result["outstanding"]}


def reject_callback(command: RejectCallback, uow) -> None:
    uow.books.record_callback(received_at=uow.now, params=command.params, accepted=False, reason=command.reason)


def cancel_receipt(command: CancelReceipt, uow) -> dict:
    body = command.body
    if not isinstance(body, Mapping) or not isinstance(body.get("reason"), str) or not body["reason"].strip():
        raise FeeError("reason", "is required")
    actor, year, number = command.actor, command.year, command.number
    code = uow.accounts.code_of_receipt(actor.unit, year, number)
    if code is None:
        raise NotFound("number", f"no receipt {receipt_label(year, number)} at {actor.unit}")
    account = _account(uow, code)
    uow.save(account, account.cancel_receipt(actor=actor, year=year, number=number, reason=body["reason"].strip(),
                                             now=uow.now))
    return receipt_view(account.receipt(year, number))


# --- reading -----------------------------------------------------------------------------------

def show_account(command: ShowAccount, uow) -> dict:
    account = _account(uow, command.code, lock=False)
    if account.unit != command.actor.unit and not command.actor.district_wide:
        raise Forbidden("code", f"dossier {command.code} belongs to another desk")
    return account.view()


def show_receipt(command: ShowReceipt, uow):
    """(account, receipt) of the actor's desk."""
    actor, year, number = command.actor, command.year, command.number
    code = uow.accounts.code_of_receipt(actor.unit, year, number)
    account = uow.accounts.get(code, lock=False) if code else None
    if account is None:
        raise NotFound("number", f"no receipt {receipt_label(year, number)} at {actor.unit}")
    return account, account.receipt(year, number)


def outstanding(command: Outstanding, uow) -> int:
    """What a dossier still owes (intake may ask before returning a result)."""
    return _account(uow, command.code, lock=False).outstanding


# --- reconciliation ----------------------------------------------------------------------------

def _day(value: Any, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise FeeError(field, f"must be an ISO date such as 2026-03-02, got {value!r}") from None


def _local_day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=TZ)
    return start, start + timedelta(days=1)


def close_cash(command: CloseCash, uow) -> dict:
    """The official's closing of the day: cash expected against cash declared."""
    body, actor = command.body, command.actor
    if not isinstance(body, Mapping):
        raise FeeError("body", "must be a JSON object")
    day = _day(body.get("day"), "day")
    declared = body.get("declared")
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < 0:
        raise FeeError("declared", f"must be a whole, non-negative amount of VND, got {declared!r}")
    expected = uow.books.cash_expected(actor.unit, *_local_day_bounds(day))
    uow.books.save_closing(unit=actor.unit, day=day, expected=expected, declared=declared,
                           official=actor.name, closed_at=uow.now)
    return {"unit": actor.unit, "day": day.isoformat(), **domain.cash_closing(expected, declared)}


def import_settlement(command: ImportSettlement, uow) -> dict:
    """The gateway's settlement file against the online payments recorded over the days it covers."""
    lines = domain.parse_settlement_csv(command.text)
    days = sorted({local_date(line.paid_at) for line in lines})
    start, _ = _local_day_bounds(days[0])
    _, end = _local_day_bounds(days[-1])
    recorded = [domain.Recorded(reference, code, amount)
                for reference, code, amount in uow.books.online_payments(start, end)]
    result = domain.match_settlement(lines, recorded)
    result = {**result, "from": days[0].isoformat(), "to": days[-1].isoformat(), "lines": len(lines)}
    result["id"] = uow.books.save_import(imported_at=uow.now, official=command.actor.name, lines=len(lines),
                                         result=result)
    return result


# Commands that only read: answered without a transaction.
QUESTIONS = (ShowAccount, ShowReceipt, Outstanding)

HANDLERS: dict[type | str, Callable[[Any, Any], Any]] = {
    # events of intake and routing
    "dossier.received": open_account,
    "dossier.obligation_requested": add_obligation,
    "dossier.step_started": start_processing,
    "dossier.refused": refund,
    "dossier.withdrawn": refund,
    "catalog.units_reorganised": reorganised,
    # commands
    Pay: pay,
    GatewayCallback: gateway_callback,
    RejectCallback: reject_callback,
    CancelReceipt: cancel_receipt,
    CloseCash: close_cash,
    ImportSettlement: import_settlement,
    # questions
    ShowAccount: show_account,
    ShowReceipt: show_receipt,
    Outstanding: outstanding,
}

EVENT_TYPES = tuple(key for key in HANDLERS if isinstance(key, str))


def handle(message, uow):
    """The handler of a command or an event, called with the unit of work."""
    key = message.type if isinstance(message, Envelope) else type(message)
    try:
        handler = HANDLERS[key]
    except KeyError:
        raise ValueError(f"fees does not handle {key}") from None
    return handler(message, uow)
