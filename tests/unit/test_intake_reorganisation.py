"""A desk merged into another (catalog.units_reorganised), at intake, against in-memory fakes: the
old desk refuses receipts from the effective date (local, Asia/Ho_Chi_Minh) and names the successor;
the dossiers in flight go on at the successor with their codes, deadlines and history."""
from __future__ import annotations

import copy
from datetime import datetime

import pytest

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import TZ
from motcua.contracts.events import new_event
from motcua.contracts.refusals import Conflict
from motcua.contracts.reorganisations import Reorganisation, Transfer
from services.intake.handlers import Command, handle
from tests.unit.intake_fakes import DOCUMENTS, UNITS, WARD_5, WARD_7, FakeCatalogue, FakeUnitOfWork

DESK = Actor("Trần Văn Bình", WARD_5)
APPLICANT = {"name": "Nguyễn Thị Lan", "id_number": "079203001234", "address": "12 Lê Đức Thọ",
             "phone": "0903 123 456", "email": None}
MERGED = {**copy.deepcopy(UNITS), WARD_5: {**UNITS[WARD_5], "dissolved_on": "2026-03-02", "successor": WARD_7}}
REORGANISATION = Reorganisation("test", datetime(2026, 3, 2).date(), (Transfer((WARD_5,), WARD_7),))


def receive(uow, now):
    body = {"procedure_code": "1.004873", "applicant": APPLICANT, "documents": DOCUMENTS, "sets": 1}
    return handle(Command("receive", now, DESK, body=body), uow)


@pytest.mark.parametrize("now", [datetime(2026, 3, 1, 23, 59, tzinfo=TZ),        # the day before, local
                                 datetime(2026, 3, 1, 16, 59, tzinfo=TZ).astimezone()])
def test_the_old_desk_receives_until_the_day_before(now):
    uow = FakeUnitOfWork(FakeCatalogue(units=MERGED))
    assert receive(uow, now)["code"].startswith(WARD_5)


@pytest.mark.parametrize("now", [datetime(2026, 3, 2, 0, 0, tzinfo=TZ), datetime(2026, 3, 2, 10, tzinfo=TZ)])
def test_from_the_effective_date_the_old_desk_refuses_naming_the_successor(now):
    uow = FakeUnitOfWork(FakeCatalogue(units=MERGED))
    with pytest.raises(Conflict) as refused:
        receive(uow, now)
    assert refused.value.field == "unit"
    assert "Phường 5 no longer receives dossiers from 2026-03-02" in str(refused.value)
    assert "submit at Phường 7 (000.07.20.H29)" in str(refused.value)
    assert uow.dossiers.saved == {} and uow.outbox == []


def test_dossiers_in_flight_move_with_code_deadline_and_history_once():
    uow = FakeUnitOfWork()
    monday = datetime(2026, 2, 23, 10, tzinfo=TZ)
    moving = receive(uow, monday)["code"]
    closed = receive(uow, monday)["code"]
    handle(Command("withdraw", monday, DESK, closed, {"reason": "rút"}), uow)
    before = copy.deepcopy(uow.dossiers.saved[moving])
    event = new_event("catalog.units_reorganised", REORGANISATION.payload(), unit="000.00.20.H29")
    now = datetime(2026, 3, 2, 8, tzinfo=TZ)
    for _ in range(2):                                  # a redelivery changes nothing
        handle(Command(event.type, now, event=event), uow)
    moved = uow.dossiers.saved[moving]
    assert (moved.code, moved.unit, moved.handling_agency) == (moving, WARD_7, WARD_7)
    assert moved.code.startswith(WARD_5)                # the code is issued once
    assert moved.book_unit == WARD_5                    # its line stays in the book that received it
    assert moved.appointment_date == before.appointment_date and moved.status == before.status
    assert moved.history[:-1] == before.history
    assert len([h for h in moved.history if h.action == "unit_reorganised"]) == 1
    assert moved.history[-1].note == {"from": WARD_5, "to": WARD_7, "reorganisation": "test"}
    assert uow.dossiers.saved[closed].unit == WARD_5    # a closed dossier stays where it was closed
    # The successor's officials act on it now; the old desk's do not.
    assert handle(Command("get", now, Actor("Lê Thị Hoa", WARD_7), moving), uow)["unit"] == WARD_7
