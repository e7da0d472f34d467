"""Accounts in PostgreSQL: a repository that loads an account once (its row locked, then its items)
and a unit of work whose one ``save`` writes what changed and the outbox rows in the caller's
transaction. The transaction itself is the service's (``Database.transaction``): it commits when
the handler returns and rolls back when it raises, taking back any receipt number it drew."""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from motcua.contracts.events import Envelope
from motcua.contracts.refusals import Conflict
from motcua.runtime.db import rows_as_json, rows_from_json
from services.fees import models, store
from services.fees.account import Account, Charge, Payment, Receipt, Refund

acc, ch, pay, ref, rec = models.accounts, models.charges, models.payments, models.refunds, models.receipts

_ACCOUNT_COLUMNS = ("code", "unit", "procedure_code", "procedure_version", "procedure_name", "payer", "opened_at",
                    "settled_at", "processing_started", "closed_reason")


# An account and its items, as JSON arrays beside its row: one round trip.
_WHOLE = select(acc, rows_as_json(ch, ch.c.code == acc.c.code, ch.c.id),
                rows_as_json(pay, pay.c.code == acc.c.code, pay.c.id),
                rows_as_json(ref, ref.c.code == acc.c.code, ref.c.id),
                rows_as_json(rec, rec.c.code == acc.c.code, rec.c.year, rec.c.number))


def _fields(cls, row: dict) -> dict:
    return {f.name: row[f.name] for f in dataclasses.fields(cls)}


@dataclasses.dataclass
class _Loaded:
    """What was read, to write back only what changed."""
    charges: int
    payments: dict[tuple[str, str], datetime | None]      # (method, reference) -> cancelled_at
    refunds: int
    receipts: dict[tuple[int, int], datetime | None]       # (year, number) -> cancelled_at


class SqlAccountRepository:
    def __init__(self, session: Session):
        self.session = session
        self.loaded: dict[str, _Loaded] = {}

    def get(self, code: str, *, lock: bool = True) -> Account | None:
        """The account with all its items in one SELECT; ``lock`` first takes its row's lock (a
        command: a SELECT that waited for the lock would show the items as they were before)."""
        if lock and self.session.execute(select(acc.c.code).where(acc.c.code == code).with_for_update()).first() is None:
            return None
        row = self.session.execute(_WHOLE.where(acc.c.code == code)).mappings().first()
        if row is None:
            return None
        account = Account(**{name: row[name] for name in _ACCOUNT_COLUMNS})
        account.charges = [Charge(**_fields(Charge, r)) for r in rows_from_json(ch, row["charges"])]
        account.payments = [Payment(**_fields(Payment, r)) for r in rows_from_json(pay, row["payments"])]
        account.refunds = [Refund(**_fields(Refund, r)) for r in rows_from_json(ref, row["refunds"])]
        account.receipts = [Receipt(**_fields(Receipt, r)) for r in rows_from_json(rec, row["receipts"])]
        self.loaded[code] = _Loaded(len(account.charges),
                                    {(p.method, p.reference): p.cancelled_at for p in account.payments},
                                    len(account.refunds),
                                    {(r.year, r.number): r.cancelled_at for r in account.receipts})
        return account

    def open_at(self, units: list[str]) -> list[str]:
        """The codes of the accounts of these desks not closed (refused, withdrawn), in code order."""
        return list(self.session.execute(select(acc.c.code).where(acc.c.unit.in_(units), acc.c.closed_reason.is_(None))
                                         .order_by(acc.c.code)).scalars())

    def code_of_receipt(self, unit: str, year: int, number: int) -> str | None:
        return self.session.execute(select(rec.c.code).where(
            rec.c.unit == unit, rec.c.year == year, rec.c.number == number)).scalar_one_or_none()

    def payment_by_reference(self, method: str, reference: str) -> tuple[str, int] | None:
        """(code, amount) of the payment with this reference, in any account."""
        row = store.payment_by_reference(self.session, method, reference)
        return (row.code, row.amount) if row else None

    def save(self, account: Account) -> None:
        values = {name: getattr(account, name) for name in _ACCOUNT_COLUMNS}
        sums = {"charged": account.charged, "paid": account.paid, "refunded": account.refunded}
        before = self.loaded.get(account.code)
        if before is None:
            self.session.execute(acc.insert().values(**values, **sums))
            before = _Loaded(0, {}, 0, {})
        else:
            self.session.execute(update(acc).where(acc.c.code == account.code).values(**values, **sums))
        for charge in account.charges[before.charges:]:
            self.session.execute(ch.insert().values(code=account.code, **dataclasses.asdict(charge)))
        for payment in account.payments:
            key = (payment.method, payment.reference)
            if key not in before.payments:
                # The reference of another dossier's payment (the unique constraint is the check,
                # even against one being recorded at this moment): refused, the transaction rolled
                # back by the caller, so the receipt number drawn is given back.
                inserted = self.session.execute(
                    insert(pay).values(code=account.code, unit=account.unit, **dataclasses.asdict(payment))
                    .on_conflict_do_nothing(index_elements=["method", "reference"]).returning(pay.c.id)).first()
                if inserted is None:
                    other = self.payment_by_reference(payment.method, payment.reference)
                    raise Conflict("reference", f"{payment.method} reference {payment.reference} was already used "
                                                f"for another payment ({other[0]}, {other[1]} VND)" if other else
                                   f"{payment.method} reference {payment.reference} was already used")
            elif payment.cancelled_at != before.payments[key]:
                self.session.execute(update(pay).where(pay.c.method == payment.method,
                                                       pay.c.reference == payment.reference)
                                     .values(cancelled_at=payment.cancelled_at))
        for refund in account.refunds[before.refunds:]:
            self.session.execute(ref.insert().values(code=account.code, unit=account.unit,
                                                     **dataclasses.asdict(refund)))
        for receipt in account.receipts:
            key = (receipt.year, receipt.number)
            if key not in before.receipts:
                self.session.execute(rec.insert().values(**dataclasses.asdict(receipt)))
            elif receipt.cancelled_at != before.receipts[key]:
                self.session.execute(update(rec).where(rec.c.unit == receipt.unit, rec.c.year == receipt.year,
                                                       rec.c.number == receipt.number)
                                     .values(cancelled_at=receipt.cancelled_at, cancel_reason=receipt.cancel_reason,
                                             cancelled_by=receipt.cancelled_by))
        self.loaded[account.code] = _Loaded(len(account.charges),
                                            {(p.method, p.reference): p.cancelled_at for p in account.payments},
                                            len(account.refunds),
                                            {(r.year, r.number): r.cancelled_at for r in account.receipts})


class SqlBooks:
    """The desk's books beyond one account: cash closings, settlement imports, gateway callbacks."""

    def __init__(self, session: Session):
        self.session = session

    def cash_expected(self, unit: str, start: datetime, end: datetime) -> int:
        return store.cash_expected(self.session, unit, start, end)

    def save_closing(self, **values) -> None:
        store.save_closing(self.session, **values)

    def online_payments(self, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        """(reference, code, amount) of the online payments not cancelled, paid in [start, end)."""
        return [(r.reference, r.code, r.amount) for r in store.online_payments(self.session, start, end)]

    def save_import(self, **values) -> int:
        return store.save_import(self.session, **values)

    def record_callback(self, **values) -> None:
        store.record_callback(self.session, **values)


class SqlUnitOfWork:
    """One transaction's view of the fees' books. ``now`` is the command's instant; ``procedure``
    looks up a pinned catalogue version (the service fetches it before the transaction opens)."""

    def __init__(self, session: Session, *, now: datetime, emit: Callable[[Session, Envelope], None],
                 procedure: Callable[[str, int], dict | None] | None = None,
                 correlation_id: str | None = None, unit: Callable[[str], dict | None] | None = None):
        self.session, self.now, self._emit = session, now, emit
        self.procedure = procedure or (lambda code, version: None)
        self.unit = unit or (lambda code: None)      # a desk's catalogue entry, fetched before the transaction
        self.correlation_id = correlation_id
        self.accounts = SqlAccountRepository(session)
        self.books = SqlBooks(session)
        self.emitted: list[Envelope] = []

    def receipt_number(self, unit: str, year: int) -> int:
        """The next receipt number of the desk and year: the counter row stays locked until commit,
        and a rollback gives the number back (no gap)."""
        return store.next_receipt_number(self.session, unit, year)

    def save(self, account: Account, events: list[Envelope]) -> None:
        """The account's changes and its events' outbox rows, in this one transaction."""
        self.accounts.save(account)
        for event in events:
            if self.correlation_id:
                event = dataclasses.replace(event, correlation_id=self.correlation_id)
            self._emit(self.session, event)
            self.emitted.append(event)
