"""The fees' queries beyond one account (the account itself: ``repository``): numbering, the
desk's books, the reports."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from motcua.contracts.codes import increment
from services.fees import models

acc, ch, pay, ref, rec = models.accounts, models.charges, models.payments, models.refunds, models.receipts


def payment_by_reference(session: Session, method: str, reference: str):
    return session.execute(select(pay).where(pay.c.method == method, pay.c.reference == reference)).first()


def next_receipt_number(session: Session, unit: str, year: int) -> int:
    return increment(session, models.receipt_counters, {"unit": unit, "year": year}, "last_number")


def record_callback(session: Session, **values) -> None:
    session.execute(models.callbacks.insert().values(**values))


def cash_expected(session: Session, unit: str, start: datetime, end: datetime) -> int:
    paid = session.execute(select(func.coalesce(func.sum(pay.c.amount), 0)).where(
        pay.c.unit == unit, pay.c.method == "cash", pay.c.cancelled_at.is_(None),
        pay.c.paid_at >= start, pay.c.paid_at < end)).scalar_one()
    returned = session.execute(select(func.coalesce(func.sum(ref.c.amount), 0)).where(
        ref.c.unit == unit, ref.c.method == "cash", ref.c.refunded_at >= start, ref.c.refunded_at < end)).scalar_one()
    return int(paid) - int(returned)


def save_closing(session: Session, **values) -> None:
    from sqlalchemy.dialects.postgresql import insert
    statement = insert(models.cash_closings).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=["unit", "day"], set_={k: statement.excluded[k] for k in ("expected", "declared",
                                                                                    "official", "closed_at")}))


def online_payments(session: Session, start: datetime, end: datetime) -> list:
    return session.execute(select(pay.c.reference, pay.c.code, pay.c.amount).where(
        pay.c.method == "online", pay.c.cancelled_at.is_(None), pay.c.paid_at >= start, pay.c.paid_at < end)).all()


def save_import(session: Session, **values) -> int:
    return session.execute(models.settlement_imports.insert().values(**values)
                           .returning(models.settlement_imports.c.id)).scalar_one()


# --- the Finance office's report and the gauges ---------------------------------------------

def report(session: Session, unit: str | None, start: datetime, end: datetime) -> list[dict]:
    units = [unit] if unit else list(session.execute(select(acc.c.unit).distinct().order_by(acc.c.unit)).scalars())
    rows = []
    for code in units:
        charged = session.execute(select(ch.c.type, func.coalesce(func.sum(ch.c.amount), 0)).join(
            acc, acc.c.code == ch.c.code).where(acc.c.unit == code, ch.c.charged_at >= start, ch.c.charged_at < end)
            .group_by(ch.c.type)).all()
        collected = session.execute(select(pay.c.method, func.coalesce(func.sum(pay.c.amount), 0), func.count())
                                    .where(pay.c.unit == code, pay.c.cancelled_at.is_(None), pay.c.paid_at >= start,
                                           pay.c.paid_at < end).group_by(pay.c.method)).all()
        refunded = session.execute(select(func.coalesce(func.sum(ref.c.amount), 0), func.count()).where(
            ref.c.unit == code, ref.c.refunded_at >= start, ref.c.refunded_at < end)).one()
        cancelled = session.execute(select(func.count()).select_from(rec).where(
            rec.c.unit == code, rec.c.cancelled_at >= start, rec.c.cancelled_at < end)).scalar_one()
        outstanding = session.execute(select(func.coalesce(func.sum(acc.c.charged - acc.c.paid), 0)).where(
            acc.c.unit == code, acc.c.closed_reason.is_(None), acc.c.opened_at < end)).scalar_one()
        rows.append({
            "unit": code,
            "charged": {kind: int(amount) for kind, amount in charged},
            "collected": {method: int(amount) for method, amount, _ in collected},
            "payments": sum(count for _, _, count in collected),
            "refunded": int(refunded[0]), "refunds": refunded[1], "receipts_cancelled": cancelled,
            "outstanding": int(outstanding),
        })
    return rows


def outstanding_by_unit(session: Session, now) -> list:
    return session.execute(select(acc.c.unit, func.sum(acc.c.charged - acc.c.paid)).where(
        acc.c.closed_reason.is_(None)).group_by(acc.c.unit)).all()
