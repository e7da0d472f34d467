"""The fees' repository and unit of work on PostgreSQL: an account saved by the handlers reads back
the same as the view built in memory, cancellations and refunds write what they change, the outbox
gets the events of the same transaction, and a refused save gives its receipt number back."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from motcua.contracts.actors import Actor
from motcua.contracts.events import Envelope
from motcua.contracts.refusals import Conflict
from motcua.runtime import outbox
from services.fees import models
from services.fees.handlers import CancelReceipt, Pay, ShowAccount, handle
from services.fees.repository import SqlUnitOfWork

DESK = "000.92.20.H29"            # a desk nobody else uses: this module owns its rows
OFFICIAL = Actor("Trần Văn Bình", DESK)
CODES = [f"{DESK}-260302-000{i}" for i in (1, 2)]
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
PROCEDURE = {"name": "Chứng thực bản sao", "fees": [
    {"id": "chung-thuc", "type": "phi", "name": "Phí chứng thực", "kind": "per_page",
     "tiers": [{"from_page": 1, "amount": 2000}, {"from_page": 3, "amount": 1000}], "cap_per_copy": 200000}]}


@pytest.fixture
def run(engine):
    with engine.begin() as connection:
        outbox_rows = models.outbox.c.envelope["unit"].astext == DESK
        connection.execute(delete(models.outbox).where(outbox_rows))
        for table in (models.receipts, models.refunds, models.payments, models.charges):
            connection.execute(delete(table).where(table.c.code.like(f"{DESK}-%")))
        connection.execute(delete(models.accounts).where(models.accounts.c.unit == DESK))
        connection.execute(delete(models.receipt_counters).where(models.receipt_counters.c.unit == DESK))
    clock = {"now": NOW}

    def run(message):
        """One message in one transaction, as the service runs it."""
        clock["now"] += timedelta(minutes=1)
        with Session(engine) as session, session.begin():
            uow = SqlUnitOfWork(session, now=clock["now"], emit=lambda s, e: outbox.add(s, models.outbox, e),
                                procedure=lambda code, version: PROCEDURE, correlation_id="corr-1")
            return handle(message, uow), uow.emitted
    return run


def received(code, pages=3):
    return Envelope(type="dossier.received", unit=DESK, payload={
        "code": code, "procedure_code": "2.000815", "procedure_version": 3,
        "received_at": "2026-03-02T09:00:00+07:00", "applicant": {"name": "Nguyễn Thị An"},
        "quantities": {"pages": pages, "copies": 1}})


def test_what_is_saved_reads_back_as_the_view_built_in_memory(run, engine):
    run(received(CODES[0]))
    paid, events = run(Pay(OFFICIAL, CODES[0], {"method": "transfer", "amount": 3000, "reference": "VCB-92"}))
    assert [e.type for e in events] == ["fees.paid"]
    assert run(ShowAccount(OFFICIAL, CODES[0]))[0] == {k: v for k, v in paid.items() if k != "recorded"}
    cancelled, _ = run(CancelReceipt(OFFICIAL, 2026, 1, {"reason": "nhầm"}))
    paid, _ = run(Pay(OFFICIAL, CODES[0], {"method": "cash", "amount": 5000}))
    assert paid["settled"] is True
    refunded, events = run(Envelope(type="dossier.refused", unit=DESK, payload={"code": CODES[0]}))
    assert [e.type for e in events] == ["fees.refunded"]
    view, _ = run(ShowAccount(OFFICIAL, CODES[0]))
    assert (view["charged"], view["paid"], view["refunded"], view["outstanding"], view["closed"]) == \
        (5000, 5000, 5000, 0, "refused")
    assert [(p["receipt"], p["cancelled"]) for p in view["payments"]] == [("0000001/2026", True),
                                                                          ("0000002/2026", False)]
    assert view["refunds"][0]["receipt"] == "0000003/2026" and view["refunds"][0]["for_receipt"] == "0000002/2026"
    with Session(engine) as session:
        row = session.execute(select(models.accounts).where(models.accounts.c.code == CODES[0])).one()
        assert (row.charged, row.paid, row.refunded, row.closed_reason) == (5000, 5000, 5000, "refused")
        receipt = session.execute(select(models.receipts).where(models.receipts.c.unit == DESK,
                                                                models.receipts.c.number == 1)).one()
        assert (receipt.cancel_reason, receipt.cancelled_by) == ("nhầm", "Trần Văn Bình")
        assert receipt.cancelled_at is not None and cancelled["cancelled_at"] is not None
        kinds = [(r.envelope["type"], r.envelope["correlation_id"]) for r in session.execute(
            select(models.outbox).where(models.outbox.c.envelope["unit"].astext == DESK)
            .order_by(models.outbox.c.seq))]
    assert kinds == [(t, "corr-1") for t in ("fees.charged", "fees.paid", "fees.payment_cancelled", "fees.paid",
                                             "fees.settled", "fees.refunded")]


def test_a_reference_taken_meanwhile_by_another_dossier_is_refused_and_gives_its_number_back(run, engine):
    run(received(CODES[0]))
    run(received(CODES[1]))
    run(Pay(OFFICIAL, CODES[1], {"method": "transfer", "amount": 1000, "reference": "VCB-RACE"}))   # receipt 1
    # The race: our handler's check ran before the other payment committed, so only the unique
    # constraint sees it, at the save. Played here by calling the aggregate past the handler's check.
    with pytest.raises(Conflict) as conflict, Session(engine) as session, session.begin():
        uow = SqlUnitOfWork(session, now=NOW, emit=lambda s, e: outbox.add(s, models.outbox, e))
        account = uow.accounts.get(CODES[0])
        events = account.pay(actor=OFFICIAL, method="transfer", amount=1000, reference="VCB-RACE", now=NOW,
                             numbers=uow.receipt_number)
        assert events[0].payload["receipt_number"] == "0000002/2026"
        uow.save(account, events)
    assert conflict.value.field == "reference"
    answer, _ = run(Pay(OFFICIAL, CODES[0], {"method": "cash", "amount": 1000}))
    assert answer["payments"][0]["receipt"] == "0000002/2026"          # the rollback gave number 2 back
    with Session(engine) as session:
        numbers = session.execute(select(models.receipts.c.number).where(models.receipts.c.unit == DESK)
                                  .order_by(models.receipts.c.number)).scalars().all()
        paid = session.execute(select(models.accounts.c.paid).where(models.accounts.c.code == CODES[0])).scalar()
    assert numbers == [1, 2] and paid == 1000
