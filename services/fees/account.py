"""A dossier's account with the fees service: the aggregate that owns the rules of its money.

Its charges (phí and lệ phí, kept apart), payments (cash, transfer, online), receipts (biên lai)
with their numbers, cancellations, refunds and settlement. Plain Python: no database, no broker,
no clock (``now`` is a parameter). Every method that changes the account checks the rules first,
then changes it in memory and returns the events it caused; a refused call changes nothing.

Receipt numbers are gapless per desk and year, across accounts: the number comes from a counter
outside the account (``ReceiptNumbers``), asked for only once every check has passed, so a refused
payment never takes a number. Amounts are integer VND.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import TZ, local_date
from motcua.contracts.events import Envelope, new_event
from motcua.contracts.refusals import Conflict, Forbidden, NotFound
from services.fees import domain

METHODS = ("cash", "transfer", "online")
OBLIGATION_ITEM = "nghia-vu-tai-chinh"

# (unit, year) -> the next receipt number of that desk and year (a gapless counter).
ReceiptNumbers = Callable[[str, int], int]


def iso(instant: datetime | None) -> str | None:
    return instant.astimezone(TZ).isoformat() if instant else None


def receipt_label(year: int, number: int) -> str:
    return f"{number:07d}/{year}"


@dataclass
class Charge:
    item_id: str
    type: str               # phi | le_phi
    name: str
    amount: int
    detail: str
    origin: str             # receipt | obligation
    charged_at: datetime


@dataclass
class Payment:
    method: str
    reference: str          # bank or gateway reference; cash: a request id
    amount: int
    official: str | None
    paid_at: datetime
    receipt_year: int
    receipt_number: int
    cancelled_at: datetime | None = None


@dataclass
class Refund:
    amount: int
    reason: str             # refused | withdrawn
    method: str             # how the money goes back: cash | transfer
    refunded_at: datetime
    receipt_year: int
    receipt_number: int
    for_receipt: str        # the payment receipt(s) refunded


@dataclass
class Receipt:
    unit: str
    year: int
    number: int
    code: str
    kind: str               # payment | refund
    amount: int
    method: str
    official: str | None
    issued_at: datetime
    lines: list
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    cancelled_by: str | None = None

    @property
    def label(self) -> str:
        return receipt_label(self.year, self.number)


@dataclass
class Account:
    code: str
    unit: str                   # the receiving desk: where money is collected
    procedure_code: str
    procedure_version: int
    procedure_name: str
    payer: str                  # the applicant's name, printed on receipts
    opened_at: datetime
    settled_at: datetime | None = None
    processing_started: bool = False
    closed_reason: str | None = None
    charges: list[Charge] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)

    # --- the sums (derived, never stored apart from their items) ---------------------------------

    @property
    def charged(self) -> int:
        return sum(c.amount for c in self.charges)

    @property
    def paid(self) -> int:
        """What was paid and not cancelled."""
        return sum(p.amount for p in self.payments if p.cancelled_at is None)

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds)

    @property
    def outstanding(self) -> int:
        """What the citizen still owes (never negative: overpayment is refused)."""
        return self.charged - self.paid

    @property
    def settled(self) -> bool:
        return self.settled_at is not None and self.outstanding == 0

    # --- charges ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, *, code: str, unit: str, procedure_code: str, procedure_version: int, procedure: dict, payer: str,
             opened_at: datetime, quantities: dict, conditions: frozenset[str],
             now: datetime) -> tuple["Account", list[Envelope]]:
        """On receipt: the charges of the pinned procedure version, item by item."""
        lines = domain.compute_charges(procedure.get("fees", []), pages=quantities.get("pages", 1),
                                       copies=quantities.get("copies", 1), conditions=conditions)
        account = cls(code=code, unit=unit, procedure_code=procedure_code,
                      procedure_version=procedure_version, procedure_name=procedure["name"], payer=payer,
                      opened_at=opened_at)
        account.charges = [Charge(line.item_id, line.type, line.name, line.amount, line.detail, "receipt", now)
                           for line in lines]
        events = [account._event("fees.charged", now, {
            "code": code, "amount": account.charged, "charged_at": iso(now),
            "items": [line.as_dict() for line in lines]})]
        return account, events + account._settle_if_paid(now)

    def add_obligation(self, *, description: str, amount: int, agency: str, now: datetime) -> list[Envelope]:
        """A financial obligation asked for by an agency (status 6) is one more charge (a lệ phí)."""
        self.charges.append(Charge(OBLIGATION_ITEM, "le_phi", f"Nghĩa vụ tài chính: {description}", amount,
                                   agency, "obligation", now))
        self.settled_at = None
        return [self._event("fees.charged", now, {
            "code": self.code, "amount": amount, "charged_at": iso(now),
            "items": [{"item_id": OBLIGATION_ITEM, "type": "le_phi", "name": description, "amount": amount}]})]

    def start_processing(self) -> list[Envelope]:
        """Processing started: a withdrawal from now on keeps the fee."""
        self.processing_started = True
        return []

    # --- payments --------------------------------------------------------------------------------

    def payment_with(self, method: str, reference: str) -> Payment | None:
        return next((p for p in self.payments if (p.method, p.reference) == (method, reference)), None)

    def pay(self, *, actor: Actor | None, method: str, amount: int, reference: str, now: datetime,
            numbers: ReceiptNumbers) -> list[Envelope]:
        """Record a payment with its receipt; the same (method, reference) again records nothing
        (no events). ``actor`` None is the gateway (an online payment)."""
        existing = self.payment_with(method, reference)
        if existing is not None:
            if existing.amount != amount:
                raise Conflict("reference", f"{method} reference {reference} was already used for another payment "
                                            f"({self.code}, {existing.amount} VND)")
            return []
        if actor is not None and actor.unit != self.unit:
            raise Forbidden("code", f"dossier {self.code} belongs to another desk")
        if self.closed_reason:
            raise Conflict("code", f"dossier {self.code} was {self.closed_reason}: no payment is taken")
        if amount > self.outstanding:
            raise Conflict("amount", f"overpayment: {amount} VND asked, {self.outstanding} VND outstanding")
        year = local_date(now).year
        number = numbers(self.unit, year)        # last: a refused payment takes no number
        official = actor.name if actor else None
        lines = allocate(self.charges, self.paid, amount)
        self.payments.append(Payment(method, reference, amount, official, now, year, number))
        self.receipts.append(Receipt(self.unit, year, number, self.code, "payment", amount, method, official, now,
                                     lines))
        return [self._event("fees.paid", now, {"code": self.code, "amount": amount, "method": method,
                                               "paid_at": iso(now), "receipt_number": receipt_label(year, number)}),
                *self._settle_if_paid(now)]

    def receipt(self, year: int, number: int) -> Receipt | None:
        return next((r for r in self.receipts if (r.year, r.number) == (year, number)), None)

    def cancel_receipt(self, *, actor: Actor, year: int, number: int, reason: str,
                       now: datetime) -> list[Envelope]:
        """A receipt is never deleted: cancelled, it keeps its number, the reason and the official;
        its payment no longer counts and the account is no longer settled."""
        receipt = self.receipt(year, number)
        if receipt is None or receipt.unit != actor.unit:
            raise NotFound("number", f"no receipt {receipt_label(year, number)} at {actor.unit}")
        if receipt.cancelled_at is not None:
            raise Conflict("number", f"receipt {receipt.label} is already cancelled")
        if receipt.kind != "payment":
            raise Conflict("number", "only a payment receipt can be cancelled")
        if self.paid - receipt.amount < self.refunded:
            # Its money was given back: cancelling it would leave more refunded than paid.
            raise Conflict("number", f"receipt {receipt.label} was refunded: it cannot be cancelled")
        receipt.cancelled_at, receipt.cancel_reason, receipt.cancelled_by = now, reason, actor.name
        for payment in self.payments:
            if (payment.receipt_year, payment.receipt_number) == (year, number):
                payment.cancelled_at = now
        self.settled_at = None
        return [self._event("fees.payment_cancelled", now, {
            "code": self.code, "amount": receipt.amount, "receipt_number": receipt.label, "reason": reason,
            "cancelled_at": iso(now)})]

    # --- refunds ---------------------------------------------------------------------------------

    def close(self, *, reason: str, now: datetime, numbers: ReceiptNumbers) -> list[Envelope]:
        """A refused or withdrawn dossier: closed to payments, and what the rule gives back is refunded
        with a receipt of its own."""
        amount = domain.refund_due(self.paid, self.refunded, reason=reason,
                                   processing_started=self.processing_started)
        self.closed_reason = reason
        if amount == 0:
            return []
        year = local_date(now).year
        number = numbers(self.unit, year)
        paid_receipts = [r.label for r in sorted(self.receipts, key=lambda r: (r.year, r.number))
                         if r.kind == "payment" and r.cancelled_at is None]
        # Money that came by bank or gateway goes back by transfer; cash only if all of it was cash.
        method = "transfer" if any(p.method != "cash" for p in self.payments) else "cash"
        self.refunds.append(Refund(amount, reason, method, now, year, number, ", ".join(paid_receipts)))
        self.receipts.append(Receipt(self.unit, year, number, self.code, "refund", amount, method, None, now,
                                     [{"name": f"Hoàn trả ({'từ chối' if reason == 'refused' else 'rút hồ sơ'})",
                                       "type": "refund", "amount": amount}]))
        return [self._event("fees.refunded", now, {"code": self.code, "amount": amount, "reason": reason,
                                                   "refunded_at": iso(now),
                                                   "receipt_number": receipt_label(year, number)})]

    # --- a reorganisation ------------------------------------------------------------------------

    def move_to(self, successor: str) -> list[Envelope]:
        """Its desk merged into ``successor``: money for this dossier is collected (and refunded)
        there from now on, on the successor's receipt numbers. Receipts already issued keep the
        desk and number they were issued with."""
        self.unit = successor
        return []

    # --- settlement ------------------------------------------------------------------------------

    def _settle_if_paid(self, now: datetime) -> list[Envelope]:
        if self.outstanding == 0 and self.settled_at is None:
            self.settled_at = now
            return [self._event("fees.settled", now, {"code": self.code, "settled_at": iso(now)})]
        return []

    def _event(self, type_: str, now: datetime, payload: dict) -> Envelope:
        return new_event(type_, payload, self.unit, occurred_at=now)

    # --- views (from memory) ---------------------------------------------------------------------

    def view(self) -> dict:
        return {
            "code": self.code, "unit": self.unit, "charged": self.charged, "paid": self.paid,
            "refunded": self.refunded, "outstanding": self.outstanding, "settled": self.settled,
            "closed": self.closed_reason,
            "charges": [{"item_id": c.item_id, "type": c.type, "name": c.name, "amount": c.amount,
                         "detail": c.detail, "origin": c.origin} for c in self.charges],
            "totals": {"phi": sum(c.amount for c in self.charges if c.type == "phi"),
                       "le_phi": sum(c.amount for c in self.charges if c.type == "le_phi")},
            "payments": [{"method": p.method, "reference": p.reference, "amount": p.amount, "paid_at": iso(p.paid_at),
                          "receipt": receipt_label(p.receipt_year, p.receipt_number),
                          "cancelled": p.cancelled_at is not None} for p in self.payments],
            "refunds": [{"amount": r.amount, "reason": r.reason, "refunded_at": iso(r.refunded_at),
                         "receipt": receipt_label(r.receipt_year, r.receipt_number), "for_receipt": r.for_receipt}
                        for r in self.refunds],
        }

    def receipt_form(self, r: Receipt, unit: dict) -> dict:
        """The data of a printed receipt (biên lai)."""
        refund = next((x for x in self.refunds if (x.receipt_year, x.receipt_number) == (r.year, r.number)), None)
        return {"unit": unit, "label": r.label, "kind": r.kind, "code": r.code,
                "payer": self.payer, "procedure": {"code": self.procedure_code, "name": self.procedure_name},
                "lines": r.lines,
                "amount": r.amount, "amount_in_words": domain.vnd_in_words(r.amount), "method": r.method,
                "official": r.official, "issued_at": iso(r.issued_at),
                "for_receipt": refund.for_receipt if refund else None,
                "cancelled": ({"at": iso(r.cancelled_at), "reason": r.cancel_reason, "by": r.cancelled_by}
                              if r.cancelled_at else None)}


def receipt_view(r: Receipt) -> dict:
    return {"unit": r.unit, "year": r.year, "number": r.number, "label": r.label,
            "code": r.code, "kind": r.kind, "amount": r.amount, "amount_in_words": domain.vnd_in_words(r.amount),
            "method": r.method, "official": r.official, "issued_at": iso(r.issued_at), "lines": r.lines,
            "cancelled_at": iso(r.cancelled_at), "cancel_reason": r.cancel_reason, "cancelled_by": r.cancelled_by}


def allocate(charges: list[Charge], already_paid: int, amount: int) -> list[dict]:
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
