"""The fees' use cases through ``services.fees.handlers`` against in-memory fakes of the repository
and unit of work (tests/fakes/fees_uow.py): no PostgreSQL, no broker, each in milliseconds."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from motcua.contracts.actors import Actor
from motcua.contracts.events import Envelope
from motcua.contracts.refusals import Conflict, Forbidden, NotFound
from services.fees import handlers
from services.fees.domain import CallbackRejected, FeeError, sign
from services.fees.handlers import (HANDLERS, CancelReceipt, CloseCash, GatewayCallback, ImportSettlement,
                                    NotOpenedYet, Outstanding, Pay, RejectCallback, ShowAccount, ShowReceipt,
                                    handle)
from tests.fakes.fees_uow import FakeUnitOfWork

DESK = "000.05.20.H29"
OTHER_DESK = "000.06.20.H29"
OFFICIAL = Actor("Trần Văn Bình", DESK)
CODE = "000.05.20.H29-260302-0001"
NOW = datetime(2026, 3, 2, 2, 5, tzinfo=timezone.utc)           # 09:05 in Hồ Chí Minh City
MERCHANT, SECRET = "motcua-go-vap", "a-test-secret"

CERTIFIED_COPY = {"code": "2.000815", "name": "Chứng thực bản sao từ bản chính", "fees": [
    {"id": "chung-thuc-ban-sao", "type": "phi", "name": "Phí chứng thực bản sao từ bản chính", "kind": "per_page",
     "tiers": [{"from_page": 1, "amount": 2000}, {"from_page": 3, "amount": 1000}], "cap_per_copy": 200000}]}
BIRTH = {"code": "1.001193", "name": "Đăng ký khai sinh", "fees": [
    {"id": "le-phi-khai-sinh", "type": "le_phi", "name": "Lệ phí đăng ký khai sinh", "kind": "flat", "amount": 8000},
    {"id": "phi-ban-sao", "type": "phi", "name": "Phí cấp bản sao trích lục", "kind": "per_copy", "amount": 3000},
    {"id": "mien-le-phi", "kind": "exemption", "type": "le_phi", "waives": "le-phi-khai-sinh",
     "when": "on_time_registration", "description": "Đăng ký khai sinh đúng hạn"}]}
PROCEDURES = {("2.000815", 3): CERTIFIED_COPY, ("1.001193", 2): BIRTH}


def received(code=CODE, procedure=("2.000815", 3), pages=3, copies=1, conditions=None, unit=DESK) -> Envelope:
    return Envelope(type="dossier.received", unit=unit, payload={
        "code": code, "procedure_code": procedure[0], "procedure_version": procedure[1],
        "received_at": "2026-03-02T09:00:00+07:00", "applicant": {"name": "Nguyễn Thị An"},
        "quantities": {"pages": pages, "copies": copies}, "conditions": conditions or []})


def event(type_, code=CODE, unit=DESK, **payload) -> Envelope:
    return Envelope(type=type_, unit=unit, payload={"code": code, **payload})


@pytest.fixture
def uow():
    return FakeUnitOfWork(now=NOW, procedures=PROCEDURES)


def opened(uow, **kwargs):
    uow.run(handle, received(**kwargs))
    return uow


def types(events):
    return [e.type for e in events]


def cash(amount, actor=OFFICIAL, code=CODE):
    return Pay(actor, code, {"method": "cash", "amount": amount})


def callback(code, amount, transaction_id, timestamp="2026-03-02T09:10:00+07:00", secret=SECRET):
    params = {"merchant": MERCHANT, "transaction_id": transaction_id, "order": code, "amount": str(amount),
              "currency": "VND", "timestamp": timestamp}
    params["signature"] = sign(params, secret)
    return GatewayCallback(params, {MERCHANT: SECRET}, 900)


# --- charge on receipt -------------------------------------------------------------------------

def test_a_received_dossier_is_charged_by_its_pinned_version(uow):
    opened(uow, pages=3)
    assert types(uow.emitted) == ["fees.charged"]
    assert uow.emitted[0].payload["amount"] == 5000 and uow.emitted[0].payload["items"][0]["detail"] == \
        "3 trang x 1 bản: 2.000 + 2.000 + 1.000"
    view = uow.run(handle, ShowAccount(OFFICIAL, CODE))
    assert (view["charged"], view["outstanding"], view["settled"]) == (5000, 5000, False)
    assert view["totals"] == {"phi": 5000, "le_phi": 0}
    assert view["charges"][0]["origin"] == "receipt"


def test_phi_and_le_phi_are_kept_apart_and_an_exemption_waives_only_its_target(uow):
    opened(uow, procedure=("1.001193", 2), copies=2, conditions=["on_time_registration"])
    view = uow.run(handle, ShowAccount(OFFICIAL, CODE))
    assert view["totals"] == {"phi": 6000, "le_phi": 0} and view["charged"] == 6000
    assert [c["detail"] for c in view["charges"]] == ["Miễn: Đăng ký khai sinh đúng hạn", "2 bản x 3.000"]


def test_a_dossier_that_owes_nothing_is_settled_at_once(uow):
    uow.procedures[("0.000001", 1)] = {"name": "Miễn phí", "fees": []}
    opened(uow, procedure=("0.000001", 1))
    assert types(uow.emitted) == ["fees.charged", "fees.settled"]
    assert uow.run(handle, ShowAccount(OFFICIAL, CODE))["settled"] is True


def test_an_unknown_procedure_version_opens_nothing(uow):
    with pytest.raises(LookupError):
        uow.run(handle, received(procedure=("2.000815", 99)))
    assert uow.accounts.stored == {} and uow.outbox == []


# --- payments at the desk ----------------------------------------------------------------------

def test_cash_in_full_gives_receipt_1_and_settles(uow):
    opened(uow)
    answer = uow.run(handle, cash(5000))
    assert answer["recorded"] is True and answer["outstanding"] == 0 and answer["settled"] is True
    assert types(uow.emitted) == ["fees.paid", "fees.settled"]
    paid = uow.emitted[0]
    assert paid.unit == DESK and paid.payload == {"code": CODE, "amount": 5000, "method": "cash",
                                                  "paid_at": "2026-03-02T09:05:00+07:00",
                                                  "receipt_number": "0000001/2026"}
    assert answer["payments"][0]["receipt"] == "0000001/2026" and answer["payments"][0]["reference"].startswith("cash-")
    assert uow.accounts.loads == 1 and uow.accounts.saves == 2      # opened, then paid: one save each


def test_a_part_payment_leaves_the_rest_outstanding_and_its_receipt_lists_what_it_covers(uow):
    opened(uow, procedure=("1.001193", 2), copies=1)            # 8 000 lệ phí + 3 000 phí
    uow.run(handle, cash(9000))
    assert types(uow.emitted) == ["fees.paid"]
    account, receipt = uow.run(handle, ShowReceipt(OFFICIAL, 2026, 1))
    assert receipt.lines == [{"name": "Lệ phí đăng ký khai sinh", "type": "le_phi", "amount": 8000},
                             {"name": "Phí cấp bản sao trích lục", "type": "phi", "amount": 1000}]
    answer = uow.run(handle, cash(2000))
    assert answer["outstanding"] == 0 and types(uow.emitted) == ["fees.paid", "fees.settled"]
    assert uow.run(handle, ShowReceipt(OFFICIAL, 2026, 2))[1].lines == [
        {"name": "Phí cấp bản sao trích lục", "type": "phi", "amount": 2000}]


def test_a_transfer_needs_its_reference_and_the_same_one_twice_is_one_payment(uow):
    opened(uow)
    with pytest.raises(FeeError) as refused:
        uow.run(handle, Pay(OFFICIAL, CODE, {"method": "transfer", "amount": 1000}))
    assert refused.value.field == "reference"
    transfer = Pay(OFFICIAL, CODE, {"method": "transfer", "amount": 1000, "reference": " VCB-1 "})
    assert uow.run(handle, transfer)["recorded"] is True
    again = uow.run(handle, transfer)
    assert again["recorded"] is False and uow.emitted == [] and again["paid"] == 1000
    assert again["payments"][0]["reference"] == "VCB-1"
    with pytest.raises(Conflict) as conflict:
        uow.run(handle, Pay(OFFICIAL, CODE, {"method": "transfer", "amount": 2000, "reference": "VCB-1"}))
    assert conflict.value.field == "reference"


def test_a_reference_used_for_another_dossier_is_refused(uow):
    opened(uow)
    opened(uow, code="000.05.20.H29-260302-0002")
    uow.run(handle, Pay(OFFICIAL, CODE, {"method": "transfer", "amount": 1000, "reference": "VCB-1"}))
    with pytest.raises(Conflict) as conflict:
        uow.run(handle, Pay(OFFICIAL, "000.05.20.H29-260302-0002",
                            {"method": "transfer", "amount": 1000, "reference": "VCB-1"}))
    assert conflict.value.field == "reference" and CODE in str(conflict.value)


@pytest.mark.parametrize("body, field", [
    ([], "body"),
    ({"method": "cheque", "amount": 1000}, "method"),
    ({"method": "online", "amount": 1000, "reference": "TX"}, "method"),
    ({"method": "cash", "amount": 0}, "amount"),
    ({"method": "cash", "amount": 10.5}, "amount"),
    ({"method": "cash", "amount": "1000"}, "amount"),
    ({"method": "cash", "amount": 1000, "currency": "USD"}, "currency"),
    ({"method": "cash", "amount": 1000, "reference": "x" * 101}, "reference"),
])
def test_bad_payment_input_is_refused_naming_the_field_and_changes_nothing(uow, body, field):
    opened(uow)
    before = uow.accounts.saves
    with pytest.raises(FeeError) as refused:
        uow.run(handle, Pay(OFFICIAL, CODE, body))
    assert refused.value.field == field
    assert uow.accounts.saves == before and uow.counters == {}


def test_overpayment_another_desk_and_an_unknown_dossier_are_refused_without_a_receipt_number(uow):
    opened(uow)
    with pytest.raises(Conflict) as over:
        uow.run(handle, cash(5001))
    assert over.value.field == "amount" and "5000 VND outstanding" in str(over.value)
    with pytest.raises(Forbidden):
        uow.run(handle, cash(1000, actor=Actor("Lê Văn C", OTHER_DESK)))
    with pytest.raises(NotFound) as unknown:
        uow.run(handle, cash(1000, code="000.05.20.H29-260302-0099"))
    assert unknown.value.field == "code"
    assert uow.counters == {} and uow.accounts.stored[CODE].payments == []
    assert uow.run(handle, cash(1000))["payments"][0]["receipt"] == "0000001/2026"


# --- the gateway's signed callback -------------------------------------------------------------

def test_a_signed_callback_is_an_online_payment_recorded_once(uow):
    opened(uow)
    first = uow.run(handle, callback(CODE, 5000, "TX-1001"))
    assert first == {"status": "ok", "code": CODE, "outstanding": 0}
    assert types(uow.emitted) == ["fees.paid", "fees.settled"] and uow.emitted[0].payload["method"] == "online"
    again = uow.run(handle, callback(CODE, 5000, "TX-1001"))
    assert again == first and uow.emitted == []
    assert [(c["accepted"], c["reason"]) for c in uow.books.callbacks] == [(True, None), (True, "duplicate")]
    payment = uow.accounts.stored[CODE].payments[0]
    assert (payment.method, payment.reference, payment.official) == ("online", "TX-1001", None)


@pytest.mark.parametrize("change, reason", [
    ({"signature": "0" * 64}, "bad_signature"),
    ({"merchant": "somebody"}, "unknown_merchant"),
])
def test_a_callback_that_fails_verification_records_no_payment(uow, change, reason):
    opened(uow)
    command = callback(CODE, 5000, "TX-1002")
    command = GatewayCallback({**command.params, **change}, command.secrets, 900)
    with pytest.raises(CallbackRejected) as rejected:
        uow.run(handle, command)
    assert rejected.value.reason == reason
    assert uow.accounts.stored[CODE].payments == [] and uow.books.callbacks == []
    uow.run(handle, RejectCallback(command.params, f"{reason}: {rejected.value}"))
    assert uow.books.callbacks[0]["accepted"] is False


def test_a_stale_callback_and_an_overpaying_one_are_refused(uow):
    opened(uow)
    with pytest.raises(CallbackRejected) as stale:
        uow.run(handle, callback(CODE, 5000, "TX-1", timestamp="2026-03-01T09:10:00+07:00"))
    assert stale.value.reason == "stale"
    with pytest.raises(Conflict):
        uow.run(handle, callback(CODE, 6000, "TX-2"))
    assert uow.accounts.stored[CODE].payments == [] and uow.counters == {}


# --- cancelling a receipt ----------------------------------------------------------------------

def test_a_cancelled_receipt_keeps_its_number_and_the_debt_comes_back(uow):
    opened(uow)
    uow.run(handle, cash(5000))
    uow.now = NOW + timedelta(minutes=5)
    receipt = uow.run(handle, CancelReceipt(OFFICIAL, 2026, 1, {"reason": " Thu nhầm "}))
    assert (receipt["label"], receipt["cancel_reason"], receipt["cancelled_by"]) == \
        ("0000001/2026", "Thu nhầm", "Trần Văn Bình")
    assert receipt["cancelled_at"] == "2026-03-02T09:10:00+07:00"
    assert types(uow.emitted) == ["fees.payment_cancelled"]
    assert uow.emitted[0].payload == {"code": CODE, "amount": 5000, "receipt_number": "0000001/2026",
                                      "reason": "Thu nhầm", "cancelled_at": "2026-03-02T09:10:00+07:00"}
    view = uow.run(handle, ShowAccount(OFFICIAL, CODE))
    assert (view["paid"], view["outstanding"], view["settled"]) == (0, 5000, False)
    assert view["payments"][0]["cancelled"] is True
    # paid again: the next number, and settled again
    uow.run(handle, cash(5000))
    assert types(uow.emitted) == ["fees.paid", "fees.settled"]
    assert uow.emitted[0].payload["receipt_number"] == "0000002/2026"


def test_cancelling_is_refused_without_a_reason_twice_for_a_refund_or_at_another_desk(uow):
    opened(uow)
    uow.run(handle, cash(5000))
    with pytest.raises(FeeError) as no_reason:
        uow.run(handle, CancelReceipt(OFFICIAL, 2026, 1, {"reason": "  "}))
    assert no_reason.value.field == "reason"
    with pytest.raises(NotFound) as elsewhere:
        uow.run(handle, CancelReceipt(Actor("Lê Văn C", OTHER_DESK), 2026, 1, {"reason": "x"}))
    assert elsewhere.value.field == "number"
    with pytest.raises(NotFound):
        uow.run(handle, CancelReceipt(OFFICIAL, 2026, 7, {"reason": "x"}))
    uow.run(handle, CancelReceipt(OFFICIAL, 2026, 1, {"reason": "x"}))
    with pytest.raises(Conflict):
        uow.run(handle, CancelReceipt(OFFICIAL, 2026, 1, {"reason": "x"}))
    uow.run(handle, cash(5000))
    uow.run(handle, event("dossier.refused"))
    with pytest.raises(Conflict) as refund:
        uow.run(handle, CancelReceipt(OFFICIAL, 2026, 3, {"reason": "x"}))
    assert "only a payment receipt" in str(refund.value)
    with pytest.raises(Conflict) as refunded:       # its money went back with the refund
        uow.run(handle, CancelReceipt(OFFICIAL, 2026, 2, {"reason": "x"}))
    assert "was refunded" in str(refunded.value)
    assert uow.accounts.stored[CODE].receipts[1].cancelled_at is None


# --- refunds -----------------------------------------------------------------------------------

def test_a_refused_dossier_is_refunded_what_was_paid_with_a_receipt_of_its_own(uow):
    opened(uow)
    uow.run(handle, cash(3000))
    uow.run(handle, Pay(OFFICIAL, CODE, {"method": "transfer", "amount": 2000, "reference": "VCB-9"}))
    uow.run(handle, event("dossier.refused"))
    assert types(uow.emitted) == ["fees.refunded"]
    assert uow.emitted[0].payload == {"code": CODE, "amount": 5000, "reason": "refused",
                                      "refunded_at": "2026-03-02T09:05:00+07:00", "receipt_number": "0000003/2026"}
    view = uow.run(handle, ShowAccount(OFFICIAL, CODE))
    assert view["closed"] == "refused" and view["refunded"] == 5000
    assert view["refunds"] == [{"amount": 5000, "reason": "refused", "refunded_at": "2026-03-02T09:05:00+07:00",
                                "receipt": "0000003/2026", "for_receipt": "0000001/2026, 0000002/2026"}]
    account, receipt = uow.run(handle, ShowReceipt(OFFICIAL, 2026, 3))
    assert (receipt.kind, receipt.method) == ("refund", "transfer")
    assert account.receipt_form(receipt, {"code": DESK})["for_receipt"] == "0000001/2026, 0000002/2026"
    with pytest.raises(Conflict) as closed:
        uow.run(handle, cash(1000))
    assert "refused" in str(closed.value)


def test_a_withdrawal_refunds_before_processing_and_keeps_the_fee_after(uow):
    opened(uow)
    uow.run(handle, cash(5000))
    uow.run(handle, event("dossier.withdrawn"))
    assert uow.emitted[0].payload["amount"] == 5000 and uow.emitted[0].payload["reason"] == "withdrawn"
    assert uow.accounts.stored[CODE].refunds[0].method == "cash"

    other = "000.05.20.H29-260302-0002"
    opened(uow, code=other)
    uow.run(handle, cash(5000, code=other))
    uow.run(handle, event("dossier.step_started", code=other))
    uow.run(handle, event("dossier.withdrawn", code=other))
    assert uow.emitted == [] and uow.accounts.stored[other].closed_reason == "withdrawn"
    assert uow.accounts.stored[other].refunds == []


def test_a_dossier_refused_before_receipt_has_nothing_to_refund(uow):
    uow.run(handle, event("dossier.refused"))
    assert uow.outbox == [] and uow.accounts.stored == {}


# --- obligations and processing ----------------------------------------------------------------

def test_an_obligation_is_one_more_le_phi_and_paying_it_settles_again(uow):
    opened(uow)
    uow.run(handle, cash(5000))
    uow.run(handle, event("dossier.obligation_requested", agency="000.00.31.H29", description="Lệ phí trước bạ",
                          amount=250000, requested_at="2026-03-03T10:00:00+07:00"))
    assert types(uow.emitted) == ["fees.charged"]
    assert uow.emitted[0].payload["items"] == [{"item_id": "nghia-vu-tai-chinh", "type": "le_phi",
                                                "name": "Lệ phí trước bạ", "amount": 250000}]
    view = uow.run(handle, ShowAccount(OFFICIAL, CODE))
    assert (view["outstanding"], view["settled"], view["totals"]) == (250000, False, {"phi": 5000, "le_phi": 250000})
    assert view["charges"][1] == {"item_id": "nghia-vu-tai-chinh", "type": "le_phi",
                                  "name": "Nghĩa vụ tài chính: Lệ phí trước bạ", "amount": 250000,
                                  "detail": "000.00.31.H29", "origin": "obligation"}
    uow.run(handle, cash(250000))
    assert types(uow.emitted) == ["fees.paid", "fees.settled"]      # routing restarts its clock on this


@pytest.mark.parametrize("type_", ["dossier.obligation_requested", "dossier.step_started"])
def test_an_event_before_the_account_is_opened_is_put_back(uow, type_):
    with pytest.raises(NotOpenedYet):
        uow.run(handle, event(type_, agency="x", description="x", amount=1))
    assert uow.outbox == []


def test_processing_started_is_saved_once(uow):
    opened(uow)
    uow.run(handle, event("dossier.step_started"))
    saves = uow.accounts.saves
    uow.run(handle, event("dossier.step_started"))
    assert uow.accounts.saves == saves and uow.accounts.stored[CODE].processing_started is True


# --- reading -----------------------------------------------------------------------------------

def test_another_desk_cannot_read_an_account_and_outstanding_needs_a_known_dossier(uow):
    opened(uow)
    with pytest.raises(Forbidden):
        uow.run(handle, ShowAccount(Actor("Lê Văn C", OTHER_DESK), CODE))
    assert uow.run(handle, Outstanding(CODE)) == 5000
    with pytest.raises(NotFound):
        uow.run(handle, Outstanding("nope"))
    with pytest.raises(NotFound):
        uow.run(handle, ShowReceipt(OFFICIAL, 2026, 1))


# --- the desk's cash and the gateway's settlement file -----------------------------------------

def test_cash_closing_counts_cash_not_cancelled_less_cash_refunded(uow):
    opened(uow)
    opened(uow, code="000.05.20.H29-260302-0002")
    uow.run(handle, cash(5000))
    uow.run(handle, cash(4000, code="000.05.20.H29-260302-0002"))
    uow.run(handle, CancelReceipt(OFFICIAL, 2026, 2, {"reason": "nhầm"}))
    answer = uow.run(handle, CloseCash(OFFICIAL, {"day": "2026-03-02", "declared": 4000}))
    assert answer == {"unit": DESK, "day": "2026-03-02", "expected": 5000, "declared": 4000, "difference": -1000,
                      "balanced": False}
    assert uow.books.closings[(DESK, datetime(2026, 3, 2).date())]["official"] == "Trần Văn Bình"
    for body, field in (({"day": "02/03/2026", "declared": 1}, "day"), ({"day": "2026-03-02", "declared": -1},
                                                                          "declared"), ("x", "body")):
        with pytest.raises(FeeError) as refused:
            uow.run(handle, CloseCash(OFFICIAL, body))
        assert refused.value.field == field


def test_a_settlement_file_is_matched_against_the_online_payments(uow):
    opened(uow)
    uow.run(handle, callback(CODE, 2000, "TX-1"))
    uow.run(handle, callback(CODE, 1000, "TX-2"))
    text = ("transaction_id,order,amount,currency,paid_at\n"
            f"TX-1,{CODE},2000,VND,2026-03-02T09:10:00+07:00\n"
            "TX-9,000.05.20.H29-260302-0009,500,VND,2026-03-02T09:20:00+07:00\n")
    result = uow.run(handle, ImportSettlement(OFFICIAL, text))
    assert (result["matched"], result["missing"], result["extra"], result["balanced"]) == \
        (["TX-1"], ["TX-2"], ["TX-9"], False)
    assert (result["from"], result["to"], result["lines"], result["id"]) == ("2026-03-02", "2026-03-02", 2, 1)
    with pytest.raises(FeeError):
        uow.run(handle, ImportSettlement(OFFICIAL, "not,a,settlement\n"))


# --- the table and the metrics -----------------------------------------------------------------

def test_every_event_handler_has_its_consumer_and_an_unknown_message_is_refused():
    source = Path(handlers.__file__).with_name("service.py").read_text()
    assert set(re.findall(r'@event_consumer\("([^"]+)"\)', source)) == set(handlers.EVENT_TYPES)
    assert all(callable(h) for h in HANDLERS.values())
    with pytest.raises(ValueError):
        handle(Envelope(type="dossier.returned", unit=DESK, payload={}), FakeUnitOfWork())


def test_the_money_metrics_are_counted_from_the_emitted_events(uow):
    from services.fees.service import count

    unit = "999.99.99.H99"       # a desk of its own: the counters are process-wide

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0

    opened(uow, code="999.99.99.H99-260302-0001", unit=unit, procedure=("1.001193", 2))
    count(uow.emitted)
    uow.run(handle, cash(11000, actor=Actor("A", unit), code="999.99.99.H99-260302-0001"))
    count(uow.emitted)
    uow.run(handle, event("dossier.refused", code="999.99.99.H99-260302-0001", unit=unit))
    count(uow.emitted)
    assert value("motcua_fees_charged_vnd_total", unit=unit, type="le_phi") == 8000
    assert value("motcua_fees_charged_vnd_total", unit=unit, type="phi") == 3000
    assert value("motcua_fees_collected_vnd_total", unit=unit, method="cash") == 11000
    assert value("motcua_fees_refunded_vnd_total", unit=unit) == 11000


def test_a_reorganisation_moves_open_accounts_to_the_successor_desk_and_its_receipt_numbers(uow):
    from motcua.contracts.reorganisations import Reorganisation, Transfer

    opened(uow)
    uow.run(handle, cash(2000))                                   # receipt 1 at the old desk
    opened(uow, code="000.05.20.H29-260302-0002")
    uow.run(handle, event("dossier.withdrawn", code="000.05.20.H29-260302-0002", reason="rút",
                          withdrawn_at="2026-03-02T10:00:00+07:00"))
    moved = Envelope(type="catalog.units_reorganised", unit="000.00.20.H29", payload=Reorganisation(
        "test", datetime(2026, 3, 2).date(), (Transfer((DESK,), OTHER_DESK),)).payload())
    uow.run(handle, moved)
    account = uow.accounts.stored[CODE]
    assert account.unit == OTHER_DESK and account.receipts[0].unit == DESK     # issued receipts stay
    assert uow.accounts.stored["000.05.20.H29-260302-0002"].unit == DESK      # closed: stays
    # The successor's official takes the rest, on the successor's numbers; the old desk's cannot.
    with pytest.raises(Forbidden):
        uow.run(handle, cash(2000))
    uow.run(handle, cash(2000, actor=Actor("Lê Thị Hoa", OTHER_DESK)))
    assert [(r.unit, r.number) for r in uow.accounts.stored[CODE].receipts] == [(DESK, 1), (OTHER_DESK, 1)]


def test_an_account_opened_after_its_desk_was_dissolved_is_kept_at_the_successor(uow):
    """fees was behind across the effective date: catalog.units_reorganised came first, then
    dossier.received of a dossier of the old desk. The desk's catalogue entry says where it went."""
    uow.now = datetime(2026, 3, 3, 2, 0, tzinfo=timezone.utc)                   # 3 March, 9:00 local
    uow.units[DESK] = {"code": DESK, "dissolved_on": "2026-03-03", "successor": OTHER_DESK}
    opened(uow)
    assert uow.accounts.stored[CODE].unit == OTHER_DESK
    uow.run(handle, cash(2000, actor=Actor("Lê Thị Hoa", OTHER_DESK)))
    assert [(r.unit, r.number) for r in uow.accounts.stored[CODE].receipts] == [(OTHER_DESK, 1)]


def test_an_account_of_a_desk_dissolved_later_stays_there(uow):
    uow.units[DESK] = {"code": DESK, "dissolved_on": "2026-07-01", "successor": OTHER_DESK}
    opened(uow)
    assert uow.accounts.stored[CODE].unit == DESK
