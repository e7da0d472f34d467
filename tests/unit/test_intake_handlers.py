"""Every use case of the desk through ``HANDLERS``, against in-memory fakes (no database, no broker).

Each test drives the real handlers and the real Dossier aggregate and checks what was saved, what
was answered and which events went to the outbox; a refusal names its field and changes nothing.
"""
from __future__ import annotations

import copy
from datetime import date, datetime

import pytest

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import TZ
from motcua.contracts.events import new_event
from motcua.contracts.refusals import Conflict, Forbidden, Invalid, NotFound
from services.intake.handlers import (
    CONSUMED,
    HANDLERS,
    Command,
    Incomplete,
    UnknownDossier,
    handle,
)
from tests.unit.intake_fakes import (
    DISTRICT,
    DOCUMENTS,
    JUSTICE,
    WARD_5,
    WARD_7,
    FakeUnitOfWork,
)

DESK = Actor("Trần Văn Bình", WARD_5)
OTHER_DESK = Actor("Lê Thị Hoa", WARD_7)
APPLICANT = {"name": "Nguyễn Thị Lan", "id_number": "079203001234", "address": "12 Lê Đức Thọ, Phường 5",
             "phone": "0903 123 456", "email": "lan@example.vn"}
MARITAL = "1.004873"      # 3 working days, a flat fee
BIRTH = "1.001193"        # same day, free
MON = datetime(2026, 3, 2, 10, 0, tzinfo=TZ)   # 3 working days -> Thu 5 March


def at(day: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(2026, 3, day, hh, mm, tzinfo=TZ)


def run(uow, type_, now=MON, actor=DESK, code=None, body=None, event=None):
    return handle(Command(type_, now, actor, code, body, event), uow)


def submission(**overrides) -> dict:
    return {"procedure_code": MARITAL, "applicant": APPLICANT, "channel": "in_person", "documents": DOCUMENTS,
            "sets": 1, **overrides}


def receive(uow, now=MON, **overrides) -> dict:
    return run(uow, "receive", now, body=submission(**overrides))


def online(uow, now=MON, **overrides) -> dict:
    return run(uow, "submit_online", now, actor=None, body=submission(unit=WARD_5, **overrides))


def event(type_, unit=WARD_5, **payload):
    return new_event(type_, payload, unit)


def consume(uow, envelope, now=MON):
    return run(uow, envelope.type, now, actor=None, event=envelope)


def types(events) -> list[str]:
    """The events a use case caused, less the status changes every change of status announces
    (their own tests: test_status_changes_*)."""
    return [e.type for e in events if e.type != "dossier.status_changed"]


def facts(uow) -> list:
    return [e for e in uow.events if e.type != "dossier.status_changed"]


def state(uow):
    """Everything a command could change, by value."""
    return copy.deepcopy(({code: (d.row(), d.history) for code, d in uow.dossiers.saved.items()},
                          uow.dossiers.codes, uow.dossiers.lines, uow.outbox, uow.consumed))


def refused_unchanged(uow, call, *args, **kwargs):
    """Run a command that must be refused; return the refusal after checking nothing changed."""
    before = state(uow)
    with pytest.raises((Invalid, Conflict, Forbidden, NotFound)) as caught:
        call(*args, **kwargs)
    assert state(uow) == before
    assert uow.events == []
    return caught.value


# --- the table ---------------------------------------------------------------------------------

def test_every_use_case_and_consumed_event_has_its_handler():
    assert set(HANDLERS) == {"check", "receive", "submit_online", "accept", "refuse", "request_supplement",
                             "receive_supplement", "withdraw", "return", "get", "public_status",
                             "dossier.step_started", "dossier.supplement_needed", "dossier.obligation_requested",
                             "dossier.processed", "dossier.apology_issued", "dossier.deadline_changed",
                             "fees.charged", "fees.paid",
                             "fees.settled", "fees.payment_cancelled", "catalog.units_reorganised"}
    assert set(CONSUMED) == {key for key in HANDLERS if "." in key}


# --- check ---------------------------------------------------------------------------------------

def test_check_a_complete_dossier_changes_nothing():
    uow = FakeUnitOfWork()
    answer = run(uow, "check", body=submission())
    assert answer["complete"] is True and answer["missing"] == []
    assert answer["procedure"] == {"code": MARITAL, "version": 2, "name": "Cấp Giấy xác nhận tình trạng hôn nhân"}
    assert uow.dossiers.saved == {} and uow.outbox == [] and uow.dossiers.codes == {}


def test_check_an_incomplete_dossier_gives_the_guidance():
    answer = run(FakeUnitOfWork(), "check", body=submission(documents=DOCUMENTS[:1]))
    assert answer["complete"] is False
    assert answer["missing"] == [{"name": "Giấy tờ tùy thân", "form": "original", "required": 1, "presented": 0}]
    assert answer["guidance"] == ["Giấy tờ tùy thân (bản chính): còn thiếu 1 bản"]


# --- receipt in person ------------------------------------------------------------------------------

def test_receive_in_person_is_recorded_once_as_received():
    uow = FakeUnitOfWork()
    received = receive(uow)
    code = f"{WARD_5}-260302-0001"
    assert received["code"] == code and received["status"] == 2 and received["status_text"] == "Đã tiếp nhận"
    assert received["appointment_date"] == "2026-03-05"
    assert received["tracking_book"] == {"year": 2026, "volume": 1, "line": 1}
    assert received["applicant"]["phone"] == "0903123456"
    assert received["fees"] == {"required": True, "outstanding": 0, "settled": False}
    # One entry, from nothing to received: never "Mới nộp trực tuyến, chờ tiếp nhận" (1).
    assert [(h["action"], h["status_from"], h["status_to"]) for h in received["history"]] == [("receive", None, 2)]
    assert received["history"][0]["note"] == {"channel": "in_person", "appointment_date": "2026-03-05"}
    assert uow.dossiers.loads == [] and uow.saves == 1 and uow.commits == 1
    assert types(uow.events) == ["dossier.received"]
    payload = facts(uow)[0].payload
    assert payload["code"] == code and payload["appointment_date"] == "2026-03-05"
    assert payload["channel"] == "in_person" and payload["handling_agency"] == WARD_5
    assert payload["applicant"] == {"name": "Nguyễn Thị Lan", "phone": "0903123456", "email": "lan@example.vn"}
    # The answer is what was saved.
    assert run(uow, "get", code=code) == received


def test_the_public_history_of_an_in_person_dossier_starts_at_received():
    uow = FakeUnitOfWork()
    received = receive(uow)
    public = run(uow, "public_status", actor=None, code=received["code"], body=received["secret"].lower())
    assert [e["status"] for e in public["history"]] == [2]
    assert public["history"][0]["status_text"] == "Đã tiếp nhận"
    assert public["applicant"] == "N. T. L." and public["appointment_date"] == "2026-03-05"
    assert "079203001234" not in str(public) and "0903123456" not in str(public)


def test_codes_and_book_lines_follow_each_other_without_gaps():
    uow = FakeUnitOfWork(lines_per_volume=2)
    answers = [receive(uow) for _ in range(3)]
    assert [a["code"][-4:] for a in answers] == ["0001", "0002", "0003"]
    assert [a["tracking_book"] for a in answers] == [{"year": 2026, "volume": v, "line": n}
                                                      for n, v in ((1, 1), (2, 1), (3, 2))]


def test_an_incomplete_dossier_is_not_received_and_takes_no_number():
    uow = FakeUnitOfWork()
    refusal = refused_unchanged(uow, receive, uow, documents=DOCUMENTS[:1])
    assert isinstance(refusal, Incomplete) and refusal.field == "documents"
    assert refusal.details["missing"][0]["name"] == "Giấy tờ tùy thân"


@pytest.mark.parametrize("overrides, field", [
    ({"applicant": {**APPLICANT, "id_number": "07920300123"}}, "applicant.id_number"),
    ({"applicant": {**APPLICANT, "phone": "12345"}}, "applicant.phone"),
    ({"channel": "fax"}, "channel"),
    ({"documents": [{"name": "Tờ khai", "form": "scan"}]}, "documents[0].form"),
    ({"sets": 0}, "sets"),
    ({"procedure_code": ""}, "procedure_code"),
    ({"procedure_code": "9.999999"}, "procedure_code"),
    ({"procedure_code": "2.000908"}, "procedure_code"),       # a district procedure at a ward desk
    ({"unit": WARD_7}, "unit"),                                # for another unit
    ({"fee_conditions": ["rich"]}, "fee_conditions"),
])
def test_bad_input_is_refused_naming_the_field(overrides, field):
    uow = FakeUnitOfWork()
    assert refused_unchanged(uow, receive, uow, **overrides).field == field


def test_a_unit_without_a_desk_receives_nothing():
    uow = FakeUnitOfWork()
    refusal = refused_unchanged(uow, run, uow, "receive", actor=Actor("x", JUSTICE), body=submission())
    assert refusal.field == "unit"


def test_a_procedure_handled_by_another_agency_names_it():
    uow = FakeUnitOfWork()
    received = run(uow, "receive", actor=Actor("Official", DISTRICT), body=submission(procedure_code="2.000908"))
    assert received["procedure"]["handling_agency"] == JUSTICE
    assert received["fees"]["required"] is False
    # The handling agency may read it, not act on it.
    assert run(uow, "get", actor=Actor("Tư pháp", JUSTICE), code=received["code"])["code"] == received["code"]
    refusal = refused_unchanged(uow, run, uow, "withdraw", actor=Actor("Tư pháp", JUSTICE), code=received["code"],
                                body={"reason": "x"})
    assert isinstance(refusal, Forbidden)


# --- the 15:00 rule -------------------------------------------------------------------------------

@pytest.mark.parametrize("received_at, due", [
    (at(2, 15, 0), "2026-03-02"),     # at 15:00: the same day
    (at(2, 15, 1), "2026-03-03"),     # after 15:00: the next working day
    (at(6, 16, 0), "2026-03-09"),     # Friday after 15:00: Monday
    (at(7, 9, 0), "2026-03-09"),      # a Saturday: the next working day
])
def test_same_day_procedures_and_the_1500_rule(received_at, due):
    received = receive(FakeUnitOfWork(), received_at, procedure_code=BIRTH)
    assert received["appointment_date"] == due
    assert received["fees"]["required"] is False


# --- online submission and acceptance ----------------------------------------------------------------

def test_submit_online_waits_at_status_1():
    uow = FakeUnitOfWork()
    submitted = online(uow, channel="in_person")      # the portal is always online
    assert submitted["status"] == 1 and submitted["channel"] == "online"
    assert submitted["received_at"] is None and submitted["appointment_date"] is None
    assert submitted["tracking_book"] is None and uow.dossiers.lines == {}
    assert [(h["action"], h["status_from"], h["status_to"]) for h in submitted["history"]] == [("submit", None, 1)]
    assert types(uow.events) == ["dossier.submitted_online"]
    assert facts(uow)[0].payload["procedure_code"] == MARITAL


def test_accept_an_online_submission():
    uow = FakeUnitOfWork()
    code = online(uow)["code"]
    accepted = run(uow, "accept", at(3, 9), code=code)
    assert accepted["status"] == 2 and accepted["received_at"] == at(3, 9).isoformat()
    assert accepted["appointment_date"] == "2026-03-06"
    assert accepted["tracking_book"]["line"] == 1
    assert [(h["action"], h["status_from"], h["status_to"]) for h in accepted["history"]] == \
        [("submit", None, 1), ("receive", 1, 2)]
    assert uow.dossiers.loads == [(code, True)] and uow.saves == 1
    assert types(uow.events) == ["dossier.received"] and facts(uow)[0].payload["channel"] == "online"
    public = run(uow, "public_status", actor=None, code=code, body=accepted["secret"])
    assert [e["status"] for e in public["history"]] == [1, 2]


def test_accept_twice_is_refused_and_takes_no_line():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    refusal = refused_unchanged(uow, run, uow, "accept", code=code)
    assert refusal.field == "status" and refusal.status == 409


def test_unknown_dossier_and_another_unit():
    uow = FakeUnitOfWork()
    assert refused_unchanged(uow, run, uow, "accept", code="nope").field == "code"
    code = receive(uow)["code"]
    assert isinstance(refused_unchanged(uow, run, uow, "get", actor=OTHER_DESK, code=code), Forbidden)
    assert isinstance(refused_unchanged(uow, run, uow, "refuse", actor=OTHER_DESK, code=code,
                                        body={"reason": "x"}), Forbidden)


def test_public_status_needs_the_secret():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    for secret in ("", "AAAA-BBBB", None):
        assert refused_unchanged(uow, run, uow, "public_status", actor=None, code=code, body=secret).field == "code"


# --- refusal ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("received", [False, True])
def test_refuse(received):
    uow = FakeUnitOfWork()
    code = (receive(uow) if received else online(uow))["code"]
    refused = run(uow, "refuse", code=code, body={"reason": "Không thuộc thẩm quyền"})
    assert refused["status"] == 3
    assert refused["refusal"] == {"reason": "Không thuộc thẩm quyền", "official": DESK.name,
                                  "refused_at": MON.isoformat()}
    assert types(uow.events) == ["dossier.refused"] and facts(uow)[0].payload["received"] is received
    assert refused_unchanged(uow, run, uow, "refuse", code=code, body={"reason": "again"}).field == "status"


def test_refuse_needs_a_reason():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    assert refused_unchanged(uow, run, uow, "refuse", code=code, body={"reason": "  "}).field == "reason"
    assert refused_unchanged(uow, run, uow, "refuse", code=code, body=["x"]).field == "body"


# --- the one supplement request -------------------------------------------------------------------------

ASKED = {"reason": "Tờ khai thiếu chữ ký", "documents": [{"name": "Tờ khai có chữ ký", "form": "original"}]}
BROUGHT = {"documents": [{"name": "to khai co chu ky", "form": "original", "count": 1}]}


def test_request_and_receive_the_supplement_moves_the_appointment():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]                                   # due Thu 5 March
    asked = run(uow, "request_supplement", at(3, 9), code=code, body=ASKED)
    assert asked["status"] == 5 and asked["clock_stopped"] is True
    assert asked["supplement"]["requested_by"] == "desk" and asked["supplement"]["status_before"] == 2
    assert asked["supplement"]["contact"] == "Bộ phận tiếp nhận và trả kết quả, UBND Phường 5"
    assert types(uow.events) == ["dossier.supplement_requested"]
    assert facts(uow)[0].payload["documents"] == [{"name": "Tờ khai có chữ ký", "form": "original", "count": 1}]
    # Brought two working days later: the clock runs again; routing counts the new deadline.
    back = run(uow, "receive_supplement", at(5, 9), code=code, body=BROUGHT)
    assert back["status"] == 2 and back["clock_stopped"] is False
    assert back["appointment_date"] == "2026-03-05" and back["appointment_history"] == []
    assert back["documents"][-1] == {"name": "to khai co chu ky", "form": "original", "count": 1}
    assert types(uow.events) == ["dossier.supplement_received"]
    assert (facts(uow)[0].version, facts(uow)[0].payload) == (2, {"code": code, "received_at": at(5, 9).isoformat()})
    # Routing's deadline, two working days later, becomes the appointment date; redelivered, nothing.
    moved = deadline(code, "2026-03-09", previous=None)
    consume(uow, moved, at(5, 9))
    consume(uow, moved, at(5, 10))
    back = run(uow, "get", code=code)
    assert back["appointment_date"] == "2026-03-09"
    assert back["appointment_history"] == [{"date": "2026-03-05", "replaced_at": at(5, 9).isoformat(),
                                            "reason": "Bổ sung hồ sơ"}]
    assert back["history"][-1]["action"] == "deadline_changed" and back["status"] == 2
    # Once in the whole processing.
    again = refused_unchanged(uow, run, uow, "request_supplement", at(6), code=code, body=ASKED)
    assert again.field == "supplement" and "2026-03-03" in again.reason


def test_a_second_request_while_waiting_is_refused_on_the_status():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    run(uow, "request_supplement", code=code, body=ASKED)
    assert refused_unchanged(uow, run, uow, "request_supplement", code=code, body=ASKED).field == "status"


def test_an_incomplete_supplement_is_refused():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    run(uow, "request_supplement", code=code, body=ASKED)
    refusal = refused_unchanged(uow, run, uow, "receive_supplement", code=code, body={"documents": []})
    assert refusal.field == "documents" and "còn thiếu 1 bản" in refusal.reason


def test_a_supplement_request_lists_documents():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    assert refused_unchanged(uow, run, uow, "request_supplement", code=code,
                             body={"reason": "x", "documents": []}).field == "documents"


def test_an_agency_asks_for_the_supplement_through_routing():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    consume(uow, event("dossier.step_started", code=code, agency=WARD_5, step=1,
                       started_at="2026-03-02T10:30:00+07:00"))
    needed = event("dossier.supplement_needed", code=code, agency=JUSTICE, reason="Thiếu chữ ký",
                   official="Phạm Văn Cường", asked_at="2026-03-03T09:00:00+07:00", documents=ASKED["documents"])
    consume(uow, needed, at(3, 9))
    assert types(uow.events) == ["dossier.supplement_requested"]
    dossier = run(uow, "get", code=code)
    assert dossier["status"] == 5 and dossier["supplement"]["requested_by"] == JUSTICE
    assert dossier["supplement"]["requested_by_name"] == "Phòng Tư pháp"
    assert dossier["supplement"]["status_before"] == 4
    # A second agency request is rejected back to the agency, recorded, the status unchanged.
    second = event("dossier.supplement_needed", code=code, agency=JUSTICE, reason="Thiếu ảnh",
                   official="Phạm Văn Cường", asked_at="2026-03-03T10:00:00+07:00", documents=ASKED["documents"])
    consume(uow, second, at(3, 10))
    assert types(uow.events) == ["dossier.supplement_rejected"]
    assert facts(uow)[0].payload["agency"] == JUSTICE
    after = run(uow, "get", code=code)
    assert after["status"] == 5 and after["history"][-1]["action"] == "supplement_rejected"
    assert after["supplement"] == dossier["supplement"]


# --- withdrawal and return -----------------------------------------------------------------------------

def test_withdraw():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    withdrawn = run(uow, "withdraw", code=code, body={"reason": "Không còn nhu cầu"})
    assert withdrawn["status"] == 7 and withdrawn["history"][-1]["note"] == {"reason": "Không còn nhu cầu"}
    assert types(uow.events) == ["dossier.withdrawn"]
    assert refused_unchanged(uow, run, uow, "withdraw", code=code, body={"reason": "x"}).field == "status"


def _processed(uow, code, now=at(4)):
    consume(uow, event("dossier.processed", code=code, agency=WARD_5, result="done",
                       processed_at=now.isoformat()), now)


def test_return_needs_processing_and_settled_fees():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    body = {"collected_by": "Nguyễn Thị Lan"}
    assert refused_unchanged(uow, run, uow, "return", code=code, body=body).field == "status"
    consume(uow, event("fees.charged", code=code, amount=10000, charged_at=MON.isoformat()))
    _processed(uow, code)
    unpaid = refused_unchanged(uow, run, uow, "return", at(4, 11), code=code, body=body)
    assert unpaid.field == "fees" and "10.000 VND" in unpaid.reason
    consume(uow, event("fees.paid", code=code, amount=10000, method="cash", paid_at=at(4).isoformat()))
    returned = run(uow, "return", at(4, 11), code=code, body=body)
    assert returned["status"] == 10 and returned["result_class"] == "early"
    assert returned["returned_to"] == "Nguyễn Thị Lan"
    assert types(uow.events) == ["dossier.returned"] and facts(uow)[0].payload["result_class"] == "early"
    public = run(uow, "public_status", actor=None, code=code, body=returned["secret"])
    assert public["result_class"] == "Trước hạn" and public["status_text"] == "Đã trả kết quả"


def test_a_late_return_and_a_free_procedure():
    uow = FakeUnitOfWork()
    code = receive(uow, procedure_code=BIRTH)["code"]       # due Mon 2 March, no fee
    _processed(uow, code, at(3))
    returned = run(uow, "return", at(3, 11), code=code, body={"collected_by": "Lan"})
    assert returned["result_class"] == "late"
    assert refused_unchanged(uow, run, uow, "return", code=code, body={}).field == "collected_by"


# --- what routing and fees report ---------------------------------------------------------------------

def test_step_started_moves_to_processing_once_and_late_starts_go_in_the_history():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    started = event("dossier.step_started", code=code, agency=WARD_5, step=1, started_at="2026-03-02T10:30:00+07:00")
    consume(uow, started)
    dossier = run(uow, "get", code=code)
    assert dossier["status"] == 4 and dossier["history"][-1]["note"] == {"step": 1}
    assert uow.dossiers.saved[code].transferred_at == datetime(2026, 3, 2, 10, 30, tzinfo=TZ)
    consume(uow, started)                                  # redelivered: nothing changes
    assert run(uow, "get", code=code) == dossier
    _processed(uow, code)
    late = event("dossier.step_started", code=code, agency=WARD_5, step=2, started_at="2026-03-04T10:30:00+07:00")
    consume(uow, late)
    after = run(uow, "get", code=code)
    assert after["status"] == 9
    assert after["history"][-1] == {**after["history"][-1], "action": "step_started", "status_from": 9,
                                    "status_to": 9, "note": {"step": 2, "arrived_after": "processed"}}


def test_obligation_then_fees_settle_it_in_any_order():
    for order in (("fees.charged", "fees.paid"), ("fees.paid", "fees.charged")):
        uow = FakeUnitOfWork()
        code = receive(uow)["code"]
        consume(uow, event("dossier.obligation_requested", code=code, agency=WARD_5, description="Thuế",
                           amount=50000, requested_at=MON.isoformat()))
        assert run(uow, "get", code=code)["status"] == 6
        for type_ in order:
            payload = {"amount": 50000, **({"charged_at": MON.isoformat()} if type_ == "fees.charged"
                                           else {"method": "cash", "paid_at": MON.isoformat()})}
            consume(uow, event(type_, code=code, **payload))
        dossier = run(uow, "get", code=code)
        assert dossier["fees"] == {"required": True, "outstanding": 0, "settled": True}, order
        assert dossier["status"] == (4 if order[-1] == "fees.paid" else 6), order


def test_processed_stopped():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    consume(uow, event("dossier.processed", code=code, agency=WARD_5, result="stopped", note="Không đủ điều kiện",
                       processed_at=at(4).isoformat()))
    dossier = run(uow, "get", code=code)
    assert dossier["status"] == 8 and dossier["processed_at"] == at(4).isoformat()


def test_an_event_a_status_forbids_is_refused_and_changes_nothing():
    uow = FakeUnitOfWork()
    code = online(uow)["code"]
    refusal = refused_unchanged(uow, consume, uow, event("dossier.processed", code=code, agency=WARD_5,
                                                         result="done", processed_at=at(4).isoformat()))
    assert refusal.field == "status"
    assert uow.consumed == set()          # rolled back with the effect: a redelivery is tried again


def test_an_event_about_an_unknown_dossier():
    uow = FakeUnitOfWork()
    with pytest.raises(UnknownDossier):
        consume(uow, event("dossier.step_started", code=f"{WARD_5}-260302-0099", agency=WARD_5, step=1,
                           started_at=MON.isoformat()))


# --- the apology's new date ---------------------------------------------------------------------------

def deadline(code, due_date, previous, reason="supplement", changed_at="2026-03-05T09:00:00+07:00"):
    return event("dossier.deadline_changed", unit=WARD_5, code=code, due_date=due_date,
                 previous_due_date=previous, reason=reason, changed_at=changed_at)


def apology(code, new_date="2026-03-12"):
    return event("dossier.apology_issued", unit=WARD_5, code=code, agency=WARD_5, reason="Chậm xác minh",
                 original_due_date="2026-03-05", new_date=new_date, issued_at="2026-03-05T16:00:00+07:00",
                 official="Phạm Văn Cường")


def test_the_apology_date_becomes_the_appointment_date_once():
    uow = FakeUnitOfWork()
    received = receive(uow)
    code = received["code"]
    issued = apology(code)
    consume(uow, issued, at(5, 16))
    dossier = run(uow, "get", code=code)
    assert dossier["appointment_date"] == "2026-03-12" and dossier["status"] == 2
    assert dossier["appointment_history"] == [{"date": "2026-03-05", "replaced_at": at(5, 16).isoformat(),
                                               "reason": "Thư xin lỗi, hẹn lại ngày trả kết quả (Mẫu 04)"}]
    assert dossier["history"][-1]["action"] == "apology_issued"
    assert dossier["history"][-1]["note"]["previous_appointment_date"] == "2026-03-05"
    public = run(uow, "public_status", actor=None, code=code, body=received["secret"])
    assert public["appointment_date"] == "2026-03-12"
    assert [e["status"] for e in public["history"]] == [2]         # no status changed
    consume(uow, issued, at(5, 17))                                  # redelivered: nothing changes
    assert run(uow, "get", code=code) == dossier
    # A second apology moves it again, the earlier dates kept.
    consume(uow, apology(code, "2026-03-16"), at(12, 16))
    moved = run(uow, "get", code=code)
    assert moved["appointment_date"] == "2026-03-16"
    assert [h["date"] for h in moved["appointment_history"]] == ["2026-03-05", "2026-03-12"]


def test_the_apology_date_counts_for_the_result_class():
    uow = FakeUnitOfWork()
    code = receive(uow, procedure_code=BIRTH)["code"]             # due Mon 2 March
    consume(uow, apology(code, "2026-03-04"), at(3))
    _processed(uow, code, at(4))
    assert run(uow, "return", at(4, 11), code=code, body={"collected_by": "Lan"})["result_class"] == "on_time"


def test_a_closed_dossier_keeps_its_dates():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    run(uow, "withdraw", code=code, body={"reason": "x"})
    consume(uow, apology(code))
    dossier = run(uow, "get", code=code)
    assert dossier["appointment_date"] == "2026-03-05" and dossier["appointment_history"] == []


def test_dates_in_the_answers_are_local():
    received = receive(FakeUnitOfWork(), datetime(2026, 3, 2, 3, 0, tzinfo=TZ).astimezone(tz=None))
    assert received["received_at"].endswith("+07:00")
    assert date.fromisoformat(received["appointment_date"]) == date(2026, 3, 5)


def test_a_supplement_after_an_apology_never_brings_the_date_back():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]                                   # due Thu 5 March
    consume(uow, apology(code, "2026-03-20"), at(5, 16))
    run(uow, "request_supplement", at(6, 9), code=code, body=ASKED)
    run(uow, "receive_supplement", at(9, 9), code=code, body=BROUGHT)
    consume(uow, deadline(code, "2026-03-10", previous=None), at(9, 9))
    back = run(uow, "get", code=code)
    assert back["appointment_date"] == "2026-03-20"
    assert [h["date"] for h in back["appointment_history"]] == ["2026-03-05"]
    # A later deadline (a financial obligation paid late) moves it past the apology's date.
    consume(uow, deadline(code, "2026-03-24", previous="2026-03-10", reason="obligation"), at(20, 9))
    back = run(uow, "get", code=code)
    assert back["appointment_date"] == "2026-03-24"
    assert back["appointment_history"][-1]["reason"] == "Thực hiện nghĩa vụ tài chính"


def test_a_stopped_clock_or_a_closed_dossier_keeps_the_appointment():
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    consume(uow, deadline(code, None, previous="2026-03-05", reason="obligation"), at(3, 9))
    assert run(uow, "get", code=code)["appointment_date"] == "2026-03-05"
    run(uow, "withdraw", code=code, body={"reason": "x"})
    consume(uow, deadline(code, "2026-03-09", previous=None), at(4, 9))
    assert run(uow, "get", code=code)["appointment_history"] == []


def test_the_time_left_is_read_in_the_units_office_hours_by_the_desk_and_the_citizen():
    """Received Monday 2 March 10:00, due Thursday 5 March: the desk's answer and the citizen's page
    say how much working time is left; a stopped clock says so; a returned dossier has none."""
    from motcua.contracts.remaining import STOPPED_TEXT
    from tests.unit.intake_fakes import FakeCatalogue, UNITS
    units = {**UNITS, WARD_5: {**UNITS[WARD_5], "office_hours": "07:00-11:00, 13:30-17:30"}}
    uow = FakeUnitOfWork()
    uow.catalogue = FakeCatalogue(units=units)
    received = receive(uow)
    code = received["code"]
    # Monday 10:00-11:00 and 13:30-17:30 (5 h), then Tuesday to Thursday: 3 days 5 hours.
    assert received["remaining"] == "còn 3 ngày 5 giờ làm việc"
    assert run(uow, "get", at(5, 17), code=code)["remaining"] == "còn 30 phút làm việc"
    page = run(uow, "public_status", at(6, 8), actor=None, code=code, body=received["secret"])
    assert page["remaining"] == "quá hạn 1 giờ"                 # the ward opens at 7:00
    asked = run(uow, "request_supplement", at(6, 9), code=code, body=ASKED)
    assert asked["remaining"] == STOPPED_TEXT
    assert run(uow, "public_status", at(9), actor=None, code=code, body=received["secret"])["remaining"] == STOPPED_TEXT
    withdrawn = run(uow, "withdraw", at(9), code=code, body={"reason": "không làm nữa"})
    assert withdrawn["status"] == 7 and withdrawn["remaining"] is None


def _status_changes(uow) -> list[tuple[int, int]]:
    return [(e.payload["seq"], e.payload["status"]) for e in uow.events if e.type == "dossier.status_changed"]


def test_status_changes_are_numbered_per_dossier_and_only_real_changes_count():
    """The national portal's sync (services/portal) sends what these events say: one sequence per
    dossier, whatever the agencies; a second agency's step, a fee, a moved date change no status."""
    uow = FakeUnitOfWork()
    code = receive(uow)["code"]
    seen = _status_changes(uow)
    received = [e for e in uow.events if e.type == "dossier.status_changed"][0].payload
    assert received == {**received, "code": code, "previous_status": None, "channel": 1, "procedure_code": MARITAL,
                        "changed_at": MON.isoformat()}
    consume(uow, event("fees.charged", code=code, amount=10000, charged_at=MON.isoformat()))
    seen += _status_changes(uow)
    for step, agency in ((1, WARD_5), (2, DISTRICT)):          # linked: two agencies, one status 4
        consume(uow, event("dossier.step_started", code=code, agency=agency, step=step,
                           started_at=at(3).isoformat()), at(3))
        seen += _status_changes(uow)
    consume(uow, event("fees.paid", code=code, amount=10000, method="cash", paid_at=at(3).isoformat()))
    seen += _status_changes(uow)
    _processed(uow, code)
    seen += _status_changes(uow)
    run(uow, "return", at(4, 11), code=code, body={"collected_by": "Nguyễn Thị Lan"})
    seen += _status_changes(uow)
    assert seen == [(1, 2), (2, 4), (3, 9), (4, 10)]


def test_status_changes_of_an_online_dossier_start_at_submission():
    uow = FakeUnitOfWork()
    code = online(uow)["code"]
    seen = _status_changes(uow)
    run(uow, "refuse", code=code, body={"reason": "Không thuộc thẩm quyền"})
    seen += _status_changes(uow)
    assert seen == [(1, 1), (2, 3)]
    assert [e.payload["channel"] for e in uow.events if e.type == "dossier.status_changed"] == [2]
