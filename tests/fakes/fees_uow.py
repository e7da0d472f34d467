"""In-memory fakes of the fees' repository and unit of work, for the use cases' fast tests.

They keep what a transaction would: ``get`` hands out a copy (a command changes its own copy, and
nothing is kept unless ``save`` is called), ``save`` stores a copy and appends the events to
``outbox``. Receipt numbers come from one counter per (desk, year), like the database's."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

from motcua.contracts.refusals import Conflict
from services.fees.account import Account


class FakeAccounts:
    def __init__(self):
        self.stored: dict[str, Account] = {}
        self.loads = 0            # how many times a command read an account
        self.saves = 0

    def get(self, code: str, *, lock: bool = True) -> Account | None:
        self.loads += 1
        account = self.stored.get(code)
        return copy.deepcopy(account) if account else None

    def open_at(self, units: list[str]) -> list[str]:
        return sorted(code for code, a in self.stored.items() if a.unit in units and a.closed_reason is None)

    def code_of_receipt(self, unit: str, year: int, number: int) -> str | None:
        return next((a.code for a in self.stored.values() for r in a.receipts
                     if (r.unit, r.year, r.number) == (unit, year, number)), None)

    def payment_by_reference(self, method: str, reference: str) -> tuple[str, int] | None:
        return next(((a.code, p.amount) for a in self.stored.values() for p in a.payments
                     if (p.method, p.reference) == (method, reference)), None)

    def save(self, account: Account) -> None:
        """As the database does: a payment reference is unique across accounts."""
        for payment in account.payments:
            other = self.payment_by_reference(payment.method, payment.reference)
            if other is not None and other[0] != account.code:
                raise Conflict("reference", f"{payment.method} reference {payment.reference} was already used "
                                            f"for another payment ({other[0]}, {other[1]} VND)")
        self.saves += 1
        self.stored[account.code] = copy.deepcopy(account)


class FakeBooks:
    def __init__(self, accounts: FakeAccounts):
        self.accounts = accounts
        self.closings: dict[tuple, dict] = {}
        self.imports: list[dict] = []
        self.callbacks: list[dict] = []

    def cash_expected(self, unit: str, start: datetime, end: datetime) -> int:
        paid = sum(p.amount for a in self.accounts.stored.values() if a.unit == unit for p in a.payments
                   if p.method == "cash" and p.cancelled_at is None and start <= p.paid_at < end)
        returned = sum(r.amount for a in self.accounts.stored.values() if a.unit == unit for r in a.refunds
                       if r.method == "cash" and start <= r.refunded_at < end)
        return paid - returned

    def save_closing(self, **values) -> None:
        self.closings[(values["unit"], values["day"])] = values

    def online_payments(self, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        return [(p.reference, a.code, p.amount) for a in self.accounts.stored.values() for p in a.payments
                if p.method == "online" and p.cancelled_at is None and start <= p.paid_at < end]

    def save_import(self, **values) -> int:
        self.imports.append(values)
        return len(self.imports)

    def record_callback(self, **values) -> None:
        self.callbacks.append(values)


class FakeUnitOfWork:
    def __init__(self, now: datetime | None = None, procedures: dict | None = None):
        self.now = now or datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
        self.procedures = procedures or {}          # (code, version) -> procedure content
        self.accounts = FakeAccounts()
        self.books = FakeBooks(self.accounts)
        self.counters: dict[tuple[str, int], int] = {}
        self.outbox: list = []                      # every event saved, in order
        self.emitted: list = []                     # the events of the last command
        self.units: dict[str, dict] = {}            # code -> catalogue entry (none: not dissolved)

    def unit(self, code: str) -> dict | None:
        return self.units.get(code)

    def procedure(self, code: str, version: int) -> dict | None:
        return copy.deepcopy(self.procedures.get((code, version)))

    def receipt_number(self, unit: str, year: int) -> int:
        self.counters[unit, year] = self.counters.get((unit, year), 0) + 1
        return self.counters[unit, year]

    def save(self, account: Account, events: list) -> None:
        self.accounts.save(account)
        self.outbox.extend(events)
        self.emitted.extend(events)

    def run(self, handle, message):
        """A command as the service runs it, in a transaction: the events it emitted, then its
        answer; a refusal rolls back what it drew (receipt numbers), as the database does."""
        self.emitted = []
        self.accounts.loads = 0
        counters = dict(self.counters)
        try:
            return handle(message, self)
        except Exception:
            self.counters = counters
            raise
