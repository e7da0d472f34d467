"""The fee rules (services/fees/domain.py) against the domain reference §1 row 5a and §7.

Every expected value is written by hand. The certified copy from the original (2.000815) costs 2.000 đồng a
page for pages 1 and 2, 1.000 from page 3, at most 200.000 a copy: 3 pages = 2.000 + 2.000 + 1.000 = 5.000;
197 pages = 4.000 + 195.000 = 199.000; 198 pages = 200.000 exactly; 199 pages would be 201.000, capped.
"""
from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.fees import domain
from services.fees.domain import (Callback, CallbackRejected, ChargeLine, FeeError, Recorded, SettlementLine,
                                  canonical, cash_closing, compute_charges, format_vnd, match_settlement,
                                  parse_amount, parse_currency, parse_settlement_csv, refund_due, sign, totals,
                                  verify_callback, vnd_in_words)

VN = timezone(timedelta(hours=7))
UTC = timezone.utc

CERTIFIED_COPY = {
    "id": "chung-thuc-ban-sao", "type": "phi", "name": "Phí chứng thực bản sao từ bản chính", "kind": "per_page",
    "tiers": [{"from_page": 1, "amount": 2000}, {"from_page": 3, "amount": 1000}], "cap_per_copy": 200000,
}
SIGNATURE_FEE = {"id": "chung-thuc-chu-ky", "type": "phi", "name": "Phí chứng thực chữ ký", "kind": "flat",
                 "amount": 10000}
EXTRACT_COPY = {"id": "ban-sao-trich-luc", "type": "le_phi", "name": "Lệ phí cấp bản sao trích lục",
                "kind": "per_copy", "amount": 8000}
BIRTH = {"id": "le-phi-khai-sinh", "type": "le_phi", "name": "Lệ phí đăng ký khai sinh", "kind": "flat",
         "amount": 5000}
BIRTH_ON_TIME = {"id": "mien-khai-sinh-dung-han", "type": "le_phi", "name": "Miễn lệ phí đăng ký khai sinh đúng hạn",
                 "kind": "exemption", "waives": "le-phi-khai-sinh", "when": "on_time_registration",
                 "description": "Đăng ký khai sinh đúng hạn (trong 60 ngày kể từ ngày sinh) được miễn lệ phí"}
BIRTH_POOR = {"id": "mien-ho-ngheo", "type": "le_phi", "name": "Miễn lệ phí cho người thuộc hộ nghèo",
              "kind": "exemption", "waives": "le-phi-khai-sinh", "when": "poor_household",
              "description": "Người thuộc hộ nghèo được miễn lệ phí đăng ký hộ tịch"}


# --- amounts and currency --------------------------------------------------------------------------

def test_fee_error_names_the_field_and_is_a_400():
    error = FeeError("pages", "must be at least 1, got 0")
    assert (error.field, error.reason, str(error), error.status) == (
        "pages", "must be at least 1, got 0", "pages: must be at least 1, got 0", 400)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("value", [1, 5000, 200000, 999_999_999_999_999])
def test_parse_amount_takes_positive_ints(value):
    assert parse_amount(value) == value


@pytest.mark.parametrize("value", [0, -1, True, False, 5000.0, "5000", "100", None, [5000], 10**15])
def test_parse_amount_refuses_everything_else_naming_the_field(value):
    with pytest.raises(FeeError) as caught:
        parse_amount(value, field="body.amount")
    assert caught.value.field == "body.amount"
    with pytest.raises(FeeError) as caught:
        parse_amount(value)
    assert caught.value.field == "amount"


@pytest.mark.parametrize("value", ["VND", "vnd", "Vnd"])
def test_parse_currency_takes_vnd_in_any_case(value):
    assert parse_currency(value) == "VND"


@pytest.mark.parametrize("value", ["USD", "đồng", " VND", "", None, 704])
def test_parse_currency_refuses_the_rest(value):
    with pytest.raises(FeeError) as caught:
        parse_currency(value, "currency")
    assert caught.value.field == "currency"


# --- charges ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("pages, one_copy, three_copies", [
    (1, 2000, 6000),
    (2, 4000, 12000),
    (3, 5000, 15000),
    (4, 6000, 18000),
    (10, 12000, 36000),
    (197, 199000, 597000),
    (198, 200000, 600000),
    (199, 200000, 600000),
    (200, 200000, 600000),
    (201, 200000, 600000),
    (300, 200000, 600000),
])
def test_certified_copy_per_page_with_tiers_and_cap(pages, one_copy, three_copies):
    (line,) = compute_charges([CERTIFIED_COPY], pages=pages, copies=1)
    assert (line.item_id, line.type, line.amount) == ("chung-thuc-ban-sao", "phi", one_copy)
    (line,) = compute_charges([CERTIFIED_COPY], pages=pages, copies=3)
    assert line.amount == three_copies


def test_certified_copy_details_show_the_working():
    (three,) = compute_charges([CERTIFIED_COPY], pages=3)
    assert three == ChargeLine("chung-thuc-ban-sao", "phi", "Phí chứng thực bản sao từ bản chính", 5000,
                               "3 trang x 1 bản: 2.000 + 2.000 + 1.000")
    (capped,) = compute_charges([CERTIFIED_COPY], pages=199, copies=2)
    assert capped.detail == "199 trang x 2 bản: 2 x 2.000 + 197 x 1.000 = 201.000, tối đa 200.000 mỗi bản"
    assert capped.amount == 400000
    (exact,) = compute_charges([CERTIFIED_COPY], pages=198)
    assert exact.detail == "198 trang x 1 bản: 2 x 2.000 + 196 x 1.000"


def test_tiers_are_read_in_page_order_and_without_a_cap_nothing_is_capped():
    item = {**CERTIFIED_COPY, "tiers": [{"from_page": 3, "amount": 1000}, {"from_page": 1, "amount": 2000}]}
    del item["cap_per_copy"]
    (line,) = compute_charges([item], pages=300, copies=2)
    assert line.amount == 2 * (2 * 2000 + 298 * 1000)  # 604.000


def test_three_tiers():
    item = {"id": "x", "type": "phi", "name": "X", "kind": "per_page",
            "tiers": [{"from_page": 1, "amount": 3000}, {"from_page": 2, "amount": 2000},
                      {"from_page": 5, "amount": 500}]}
    amounts = [compute_charges([item], pages=p)[0].amount for p in (1, 2, 4, 5, 6)]
    assert amounts == [3000, 5000, 9000, 9500, 10000]


def test_flat_ignores_pages_and_copies_and_per_copy_multiplies():
    lines = compute_charges([SIGNATURE_FEE, EXTRACT_COPY], pages=7, copies=3)
    assert [(line.item_id, line.amount) for line in lines] == [("chung-thuc-chu-ky", 10000),
                                                               ("ban-sao-trich-luc", 24000)]
    assert lines[0].detail == "Mức thu: 10.000"
    assert lines[1].detail == "3 bản x 8.000"


def test_exemption_applies_when_its_condition_holds():
    fees = [BIRTH, BIRTH_ON_TIME, BIRTH_POOR]
    (line,) = compute_charges(fees, conditions=frozenset({"on_time_registration"}))
    assert line == ChargeLine("le-phi-khai-sinh", "le_phi", "Lệ phí đăng ký khai sinh", 0,
                              "Miễn: Đăng ký khai sinh đúng hạn (trong 60 ngày kể từ ngày sinh) được miễn lệ phí")
    (line,) = compute_charges(fees, conditions=frozenset({"poor_household", "child_under_6"}))
    assert (line.amount, line.detail) == (0, "Miễn: Người thuộc hộ nghèo được miễn lệ phí đăng ký hộ tịch")


def test_exemption_not_applied_without_its_condition():
    fees = [BIRTH, BIRTH_ON_TIME, BIRTH_POOR]
    for conditions in (frozenset(), frozenset({"child_under_6", "person_with_disability"})):
        (line,) = compute_charges(fees, conditions=conditions)
        assert (line.amount, line.detail) == (5000, "Mức thu: 5.000")


def test_an_exemption_listed_before_the_item_it_waives_still_applies_and_only_to_it():
    fees = [BIRTH_ON_TIME, SIGNATURE_FEE, BIRTH]
    lines = compute_charges(fees, conditions=frozenset({"on_time_registration"}))
    assert [(line.item_id, line.amount) for line in lines] == [("chung-thuc-chu-ky", 10000), ("le-phi-khai-sinh", 0)]


def test_no_fees_no_lines():
    assert compute_charges([], pages=5, copies=2) == []
    assert totals([]) == {"phi": 0, "le_phi": 0, "total": 0}


def test_totals_keep_phi_and_le_phi_apart():
    lines = compute_charges([CERTIFIED_COPY, EXTRACT_COPY, SIGNATURE_FEE, BIRTH], pages=3, copies=2)
    # phí: 2 x 5.000 + 10.000; lệ phí: 2 x 8.000 + 5.000
    assert totals(lines) == {"phi": 20000, "le_phi": 21000, "total": 41000}
    assert totals([line.as_dict() for line in lines]) == {"phi": 20000, "le_phi": 21000, "total": 41000}


def test_charge_line_as_dict():
    line = ChargeLine("le-phi-khai-sinh", "le_phi", "Lệ phí đăng ký khai sinh", 5000, "Mức thu: 5.000")
    assert line.as_dict() == {"item_id": "le-phi-khai-sinh", "type": "le_phi", "name": "Lệ phí đăng ký khai sinh",
                              "amount": 5000, "detail": "Mức thu: 5.000"}


@pytest.mark.parametrize("field, value", [
    ("pages", 0), ("pages", -3), ("pages", 10001), ("pages", 2.0), ("pages", "3"), ("pages", True), ("pages", None),
    ("copies", 0), ("copies", 10001), ("copies", 1.5), ("copies", "2"), ("copies", False),
])
def test_bad_pages_or_copies(field, value):
    with pytest.raises(FeeError) as caught:
        compute_charges([CERTIFIED_COPY], **{field: value})
    assert caught.value.field == field


def test_the_limits_of_pages_and_copies_are_accepted():
    (line,) = compute_charges([CERTIFIED_COPY], pages=10000, copies=10000)
    assert line.amount == 200000 * 10000


def test_an_ill_shaped_fee_item_is_named():
    with pytest.raises(FeeError) as caught:
        compute_charges([SIGNATURE_FEE, {**BIRTH, "kind": "percent"}])
    assert caught.value.field == "fees[1].kind"
    with pytest.raises(FeeError) as caught:
        compute_charges([{**BIRTH_ON_TIME, "waives": "nothing-here"}, BIRTH])
    assert caught.value.field == "fees[0].waives"


# --- amounts in words and figures ------------------------------------------------------------------

WORDS = [
    (0, "Không đồng"),
    (1, "Một đồng"),
    (5, "Năm đồng"),
    (10, "Mười đồng"),
    (11, "Mười một đồng"),
    (14, "Mười bốn đồng"),
    (15, "Mười lăm đồng"),
    (20, "Hai mươi đồng"),
    (21, "Hai mươi mốt đồng"),
    (24, "Hai mươi tư đồng"),
    (25, "Hai mươi lăm đồng"),
    (31, "Ba mươi mốt đồng"),
    (44, "Bốn mươi tư đồng"),
    (55, "Năm mươi lăm đồng"),
    (99, "Chín mươi chín đồng"),
    (100, "Một trăm đồng"),
    (101, "Một trăm linh một đồng"),
    (105, "Một trăm linh năm đồng"),
    (110, "Một trăm mười đồng"),
    (115, "Một trăm mười lăm đồng"),
    (1000, "Một nghìn đồng"),
    (1001, "Một nghìn không trăm linh một đồng"),
    (1010, "Một nghìn không trăm mười đồng"),
    (1050, "Một nghìn không trăm năm mươi đồng"),
    (2500, "Hai nghìn năm trăm đồng"),
    (5000, "Năm nghìn đồng"),
    (8000, "Tám nghìn đồng"),
    (10000, "Mười nghìn đồng"),
    (15000, "Mười lăm nghìn đồng"),
    (21000, "Hai mươi mốt nghìn đồng"),
    (24000, "Hai mươi tư nghìn đồng"),
    (50000, "Năm mươi nghìn đồng"),
    (100000, "Một trăm nghìn đồng"),
    (105000, "Một trăm linh năm nghìn đồng"),
    (110000, "Một trăm mười nghìn đồng"),
    (200000, "Hai trăm nghìn đồng"),
    (302000, "Ba trăm linh hai nghìn đồng"),
    (1000000, "Một triệu đồng"),
    (1000001, "Một triệu không trăm linh một đồng"),
    (1005000, "Một triệu không trăm linh năm nghìn đồng"),
    (1234567, "Một triệu hai trăm ba mươi tư nghìn năm trăm sáu mươi bảy đồng"),
    (1000000000, "Một tỷ đồng"),
    (1000000005, "Một tỷ không trăm linh năm đồng"),
    (1000000000000, "Một nghìn tỷ đồng"),
    (999_999_999_999_999, "Chín trăm chín mươi chín nghìn chín trăm chín mươi chín tỷ chín trăm chín mươi chín "
                          "triệu chín trăm chín mươi chín nghìn chín trăm chín mươi chín đồng"),
]


@pytest.mark.parametrize("amount, words", WORDS)
def test_vnd_in_words(amount, words):
    assert vnd_in_words(amount) == words


@pytest.mark.parametrize("amount", [-1, -5000, 10**15, 5000.0, "5000", True])
def test_vnd_in_words_refuses(amount):
    with pytest.raises(FeeError):
        vnd_in_words(amount)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=999_999_999_999_999))
def test_vnd_in_words_is_well_formed(amount):
    words = vnd_in_words(amount)
    assert "  " not in words
    assert words.endswith(" đồng")
    assert words == words.strip()
    assert words[0].isupper() and words[1:] == words[1:].lower()


@pytest.mark.parametrize("amount, text", [
    (0, "0 đồng"), (5, "5 đồng"), (1000, "1.000 đồng"), (200000, "200.000 đồng"), (1234567, "1.234.567 đồng"),
    (-5000, "-5.000 đồng"),
])
def test_format_vnd(amount, text):
    assert format_vnd(amount) == text


# --- gateway callbacks -----------------------------------------------------------------------------

SECRETS = {"VNPAY-GV": "s3cret-for-go-vap", "MOMO-GV": "another-secret"}
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=VN)
CODE = "000.05.20.H29-260302-0007"


def callback(**overrides) -> dict:
    params = {"merchant": "VNPAY-GV", "transaction_id": "TX-1001", "order": CODE, "amount": "5000",
              "currency": "VND", "timestamp": "2026-03-02T09:58:00+07:00"}
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    params["signature"] = sign(params, SECRETS.get(params.get("merchant"), "s3cret-for-go-vap"))
    return params


def rejected(params, now=NOW, **kwargs) -> CallbackRejected:
    with pytest.raises(CallbackRejected) as caught:
        verify_callback(params, SECRETS, now, **kwargs)
    return caught.value


def test_canonical_and_sign():
    params = {"b": 2, "a": "x", "signature": "ignored", "c": "Gò Vấp"}
    assert canonical(params) == "a=x&b=2&c=Gò Vấp"
    expected = hmac.new(b"k", "a=x&b=2&c=Gò Vấp".encode(), hashlib.sha256).hexdigest()
    assert sign(params, "k") == expected
    assert sign({**params, "signature": "other"}, "k") == expected
    assert sign(params, "k2") != expected


def test_a_valid_callback():
    result = verify_callback(callback(), SECRETS, NOW)
    assert result == Callback("VNPAY-GV", "TX-1001", CODE, 5000, "VND", datetime(2026, 3, 2, 9, 58, tzinfo=VN))


def test_unsigned():
    params = callback()
    del params["signature"]
    error = rejected(params)
    assert (error.reason, error.field) == ("unsigned", "signature")
    assert rejected({**params, "signature": ""}).reason == "unsigned"


def test_a_signature_with_one_character_changed():
    params = callback()
    last = params["signature"][-1]
    params["signature"] = params["signature"][:-1] + ("0" if last != "0" else "1")
    error = rejected(params)
    assert (error.reason, error.field, str(error)) == ("bad_signature", "signature", "signature: bad_signature")
    assert isinstance(error, FeeError) and error.status == 400


def test_a_changed_amount_breaks_the_signature():
    params = callback()
    params["amount"] = "500"
    assert rejected(params).reason == "bad_signature"


def test_signed_with_another_merchants_secret():
    params = callback()
    params["signature"] = sign(params, SECRETS["MOMO-GV"])
    assert rejected(params).reason == "bad_signature"


def test_unknown_merchant():
    error = rejected(callback(merchant="EVIL"))
    assert (error.reason, error.field) == ("unknown_merchant", "merchant")


def test_stale_and_future_timestamps():
    # NOW is 10:00 +07:00; the window is 900 s back and 300 s ahead, bounds included.
    assert verify_callback(callback(timestamp="2026-03-02T09:45:00+07:00"), SECRETS, NOW).amount == 5000
    assert verify_callback(callback(timestamp="2026-03-02T03:05:00Z"), SECRETS, NOW).amount == 5000
    error = rejected(callback(timestamp="2026-03-02T09:44:59+07:00"))
    assert (error.reason, error.field) == ("stale", "timestamp")
    error = rejected(callback(timestamp="2026-03-02T03:05:01+00:00"))
    assert (error.reason, error.field) == ("stale", "timestamp")
    assert rejected(callback(timestamp="2026-03-01T09:58:00+07:00")).reason == "stale"
    assert rejected(callback(timestamp="2026-03-02T10:00:00+07:00"), max_age_seconds=60,
                    now=NOW + timedelta(seconds=61)).reason == "stale"


def test_non_vnd():
    error = rejected(callback(currency="USD"))
    assert (error.reason, error.field) == ("currency", "currency")
    assert verify_callback(callback(currency="vnd"), SECRETS, NOW).currency == "VND"


@pytest.mark.parametrize("amount", ["10.5", "-1", "abc", "0", "", " 5000", "5,000", "１０００", "05000"])
def test_ill_formed_amounts_are_malformed(amount):
    error = rejected(callback(amount=amount))
    assert (error.reason, error.field) == ("malformed", "amount")


@pytest.mark.parametrize("field", ["transaction_id", "order", "amount", "currency", "timestamp"])
def test_missing_fields_are_malformed_and_named(field):
    error = rejected(callback(**{field: None}))
    assert (error.reason, error.field) == ("malformed", field)


@pytest.mark.parametrize("field, value", [
    ("timestamp", "2026-03-02T09:58:00"),  # no zone
    ("timestamp", "yesterday"),
    ("order", "HS-1"),
    ("order", "000.05.20.H29-261302-0007"),  # month 13
])
def test_ill_formed_fields_are_malformed(field, value):
    error = rejected(callback(**{field: value}))
    assert (error.reason, error.field) == ("malformed", field)


def test_values_that_would_make_the_canonical_form_ambiguous():
    error = rejected(callback(transaction_id="TX-1&amount=1"))
    assert error.reason == "malformed"


def test_now_must_be_aware():
    with pytest.raises(TypeError):
        verify_callback(callback(), SECRETS, datetime(2026, 3, 2, 10, 0))


# --- settlement file -------------------------------------------------------------------------------

HEADER = "transaction_id,order,amount,currency,paid_at\n"
ROWS = (f"TX-1,{CODE},5000,VND,2026-03-02T09:58:00+07:00\n"
        "TX-2,000.05.20.H29-260302-0008,200000,vnd,2026-03-02T10:15:00+07:00\n"
        "TX-3,000.05.20.H29-260302-0009,8000,VND,2026-03-02T03:30:00Z\n")


def test_parse_settlement_csv():
    lines = parse_settlement_csv(HEADER + ROWS)
    assert lines == [
        SettlementLine(2, "TX-1", CODE, 5000, "VND", datetime(2026, 3, 2, 9, 58, tzinfo=VN)),
        SettlementLine(3, "TX-2", "000.05.20.H29-260302-0008", 200000, "VND", datetime(2026, 3, 2, 10, 15, tzinfo=VN)),
        SettlementLine(4, "TX-3", "000.05.20.H29-260302-0009", 8000, "VND", datetime(2026, 3, 2, 3, 30, tzinfo=UTC)),
    ]


def test_parse_settlement_csv_with_crlf_and_a_trailing_blank_line():
    text = (HEADER + ROWS).replace("\n", "\r\n") + "\r\n"
    assert [line.transaction_id for line in parse_settlement_csv(text)] == ["TX-1", "TX-2", "TX-3"]


@pytest.mark.parametrize("bad_row, words", [
    ("TX-9,X,5000,VND", "columns"),
    ("TX-9,X,5000,VND,2026-03-02T10:00:00+07:00,extra", "columns"),
    (",X,5000,VND,2026-03-02T10:00:00+07:00", "empty transaction_id"),
    ("TX-9,X,10.5,VND,2026-03-02T10:00:00+07:00", "whole number"),
    ("TX-9,X,abc,VND,2026-03-02T10:00:00+07:00", "whole number"),
    ("TX-9,X,-1,VND,2026-03-02T10:00:00+07:00", "negative"),
    ("TX-9,X,5000,USD,2026-03-02T10:00:00+07:00", "currency"),
    ("TX-9,X,5000,VND,2026-03-02", "bad date"),
    ("TX-9,X,5000,VND,02/03/2026 10:00", "bad date"),
    ("TX-1,X,5000,VND,2026-03-02T10:00:00+07:00", "duplicate transaction_id"),
])
def test_settlement_errors_name_the_line(bad_row, words):
    text = HEADER + ROWS + bad_row + "\n"
    with pytest.raises(FeeError) as caught:
        parse_settlement_csv(text)
    assert caught.value.field == "line 5"
    assert words in caught.value.reason


def test_settlement_error_on_an_inner_line():
    text = HEADER + "TX-1,X,5000,VND,2026-03-02T10:00:00+07:00\nTX-2,X,5000,EUR,2026-03-02T10:00:00+07:00\n" + ROWS
    with pytest.raises(FeeError) as caught:
        parse_settlement_csv(text)
    assert caught.value.field == "line 3"


@pytest.mark.parametrize("text, field", [
    ("", "file"),
    ("\n\n", "file"),
    (HEADER, "file"),
    (HEADER.rstrip("\n"), "file"),
    ("transaction_id,order,amount,currency\n" + ROWS, "line 1"),
    ("id,order,amount,currency,paid_at\n" + ROWS, "line 1"),
])
def test_settlement_empty_or_bad_header(text, field):
    with pytest.raises(FeeError) as caught:
        parse_settlement_csv(text)
    assert caught.value.field == field


def test_match_settlement():
    lines = parse_settlement_csv(HEADER + ROWS + "TX-4,000.05.20.H29-260302-0010,10000,VND,2026-03-02T11:00:00+07:00\n")
    recorded = [
        Recorded("TX-1", CODE, 5000),
        Recorded("TX-2", "000.05.20.H29-260302-0008", 20000),  # the file says 200.000: tampered
        Recorded("TX-3", "000.05.20.H29-260302-0009", 8000),
        Recorded("TX-5", "000.05.20.H29-260302-0011", 5000),  # never settled
    ]
    assert match_settlement(lines, recorded) == {
        "matched": ["TX-1", "TX-3"],
        "missing": ["TX-5"],
        "extra": ["TX-4"],
        "mismatched": [{"transaction_id": "TX-2", "line": 3, "field": "amount", "file": 200000, "recorded": 20000}],
        "balanced": False,
    }


def test_match_settlement_order_mismatch_and_balanced():
    lines = parse_settlement_csv(HEADER + ROWS)
    recorded = [Recorded("TX-1", CODE, 5000), Recorded("TX-2", "000.05.20.H29-260302-0008", 200000),
                Recorded("TX-3", "000.05.20.H29-260302-0009", 8000)]
    assert match_settlement(lines, recorded) == {"matched": ["TX-1", "TX-2", "TX-3"], "missing": [], "extra": [],
                                                 "mismatched": [], "balanced": True}
    recorded[0] = Recorded("TX-1", "000.05.20.H29-260302-0099", 5000)
    result = match_settlement(lines, recorded)
    assert result["mismatched"] == [{"transaction_id": "TX-1", "line": 2, "field": "order", "file": CODE,
                                     "recorded": "000.05.20.H29-260302-0099"}]
    assert (result["matched"], result["balanced"]) == (["TX-2", "TX-3"], False)


def test_match_settlement_with_one_missing_only_is_not_balanced():
    lines = parse_settlement_csv(HEADER + ROWS)
    recorded = [Recorded("TX-1", CODE, 5000), Recorded("TX-2", "000.05.20.H29-260302-0008", 200000),
                Recorded("TX-3", "000.05.20.H29-260302-0009", 8000), Recorded("TX-0", CODE, 1000)]
    result = match_settlement(lines, recorded)
    assert (result["missing"], result["extra"], result["mismatched"], result["balanced"]) == (["TX-0"], [], [], False)


# --- cash and refunds ------------------------------------------------------------------------------

def test_cash_closing():
    assert cash_closing(215000, 215000) == {"expected": 215000, "declared": 215000, "difference": 0, "balanced": True}
    assert cash_closing(215000, 210000) == {"expected": 215000, "declared": 210000, "difference": -5000,
                                            "balanced": False}
    assert cash_closing(0, 2000) == {"expected": 0, "declared": 2000, "difference": 2000, "balanced": False}
    with pytest.raises(FeeError) as caught:
        cash_closing(1000, -1)
    assert caught.value.field == "declared"
    with pytest.raises(FeeError) as caught:
        cash_closing(1000.0, 1000)
    assert caught.value.field == "expected"


@pytest.mark.parametrize("paid, refunded, reason, started, due", [
    (15000, 0, "refused", False, 15000),
    (15000, 0, "refused", True, 15000),
    (15000, 5000, "refused", True, 10000),
    (15000, 15000, "refused", False, 0),
    (15000, 0, "withdrawn", False, 15000),
    (15000, 5000, "withdrawn", False, 10000),
    (15000, 0, "withdrawn", True, 0),
    (0, 0, "refused", False, 0),
])
def test_refund_due(paid, refunded, reason, started, due):
    assert refund_due(paid, refunded, reason=reason, processing_started=started) == due


@pytest.mark.parametrize("args, field", [
    ((15000, 0, "cancelled", False), "reason"),
    ((15000, 0, "", False), "reason"),
    ((15000, 20000, "refused", False), "refunded"),
    ((-1, 0, "refused", False), "paid"),
    ((15000, 0, "refused", "no"), "processing_started"),
])
def test_refund_due_refuses(args, field):
    paid, refunded, reason, started = args
    with pytest.raises(FeeError) as caught:
        refund_due(paid, refunded, reason=reason, processing_started=started)
    assert caught.value.field == field


def test_the_module_does_no_io():
    source = open(domain.__file__, encoding="utf-8").read()
    for forbidden in ("open(", "sqlalchemy", "datetime.now", "time.time", "requests", "os.environ"):
        assert forbidden not in source, forbidden
