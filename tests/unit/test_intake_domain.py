"""The desk's pure rules (services/intake/domain.py), against the domain reference §3–§5.

Every test asserts an exact value: the parsed record, the field an error names, the status an
action leads to, the appointment date. The life-cycle table below is written by hand from the
law (domain §3), not copied from ``TRANSITIONS``.

The tests of the four bugs a first review found (non-ASCII digits, a list as channel, one sheet
counted for two requirements, a supplement date in UTC) stay here as regressions.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motcua.contracts.calendar import TZ, WorkingCalendar
from motcua.contracts.text import unaccent
from motcua.contracts.vocabulary import Status
from services.intake.domain import (
    Applicant,
    CheckResult,
    Conflict,
    Invalid,
    Missing,
    Presented,
    accepted_at,
    check,
    handling_agency,
    initials,
    missing_documents,
    new_secret,
    parse_applicant,
    parse_channel,
    parse_documents,
    parse_quantities,
)
from services.intake.dossier import (
    TRANSITIONS,
    appointment,
    processed_status,
    require,
    require_supplement_unused,
    result_class,
)

UTC = timezone.utc
CAL = WorkingCalendar()  # package holidays only: tests must not depend on the packaged overrides

DISTRICT = "000.00.20.H29"
WARD_1 = "000.01.20.H29"
JUSTICE = "000.23.20.H29"


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    """An instant in Vietnam local time."""
    return datetime(y, m, d, hh, mm, tzinfo=TZ)


def invalid_field(call, *args) -> str:
    with pytest.raises(Invalid) as caught:
        call(*args)
    return caught.value.field


# --------------------------------------------------------------------------------------------
# parse_applicant
# --------------------------------------------------------------------------------------------

def applicant(**changes) -> dict:
    data = {"name": "Nguyễn Thị Lan", "id_number": "079190001234", "address": "12 Quang Trung, Phường 10",
            "phone": "0903123456", "email": "lan@example.vn"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}   # ``...`` removes a key


def test_parse_applicant_collapses_spaces_in_every_text():
    got = parse_applicant(applicant(name="  Nguyễn   Thị\tLan ", address=" 12  Quang Trung,\n Phường 10 ",
                                    id_number=" 079190001234 ", email="  lan@example.vn "))
    assert got == Applicant(name="Nguyễn Thị Lan", id_number="079190001234",
                            address="12 Quang Trung, Phường 10", phone="0903123456", email="lan@example.vn")


@pytest.mark.parametrize("raw, normalised", [
    ("0903123456", "0903123456"),
    ("0903 123 456", "0903123456"),
    ("0903.123.456", "0903123456"),
    ("0903-123-456", "0903123456"),
    ("  0903  123 456 ", "0903123456"),
    ("+84903123456", "0903123456"),
    ("+84 903 123 456", "0903123456"),
])
def test_parse_applicant_accepts_and_normalises_phone(raw, normalised):
    assert parse_applicant(applicant(phone=raw)).phone == normalised


@pytest.mark.parametrize("email", [None, "", "   ", ...])
def test_parse_applicant_email_is_optional(email):
    assert parse_applicant(applicant(email=email)).email is None


@pytest.mark.parametrize("changes, field", [
    ({"id_number": "07919000123"}, "applicant.id_number"),        # 11 digits
    ({"id_number": "0791900012345"}, "applicant.id_number"),      # 13 digits
    ({"id_number": "07919000123A"}, "applicant.id_number"),       # a letter
    ({"id_number": "ABCDEFGHIJKL"}, "applicant.id_number"),
    ({"id_number": "079-190-001-234"}, "applicant.id_number"),
    ({"id_number": "0791 9000 1234"}, "applicant.id_number"),
    ({"id_number": 79190001234}, "applicant.id_number"),          # a number, not text
    ({"id_number": ...}, "applicant.id_number"),
    ({"id_number": ""}, "applicant.id_number"),
    ({"phone": "090312345"}, "applicant.phone"),                  # 0 + 8 digits
    ({"phone": "09031234567"}, "applicant.phone"),                # 0 + 10 digits
    ({"phone": "84903123456"}, "applicant.phone"),                # no + and no 0
    ({"phone": "+840903123456"}, "applicant.phone"),              # +84 then 0
    ({"phone": "0903/123/456"}, "applicant.phone"),
    ({"phone": "09O3123456"}, "applicant.phone"),                 # letter O
    ({"phone": ...}, "applicant.phone"),
    ({"phone": 903123456}, "applicant.phone"),
    ({"email": "lan@example"}, "applicant.email"),
    ({"email": "lan.example.vn"}, "applicant.email"),
    ({"email": "lan@@example.vn"}, "applicant.email"),
    ({"email": "lan nguyen@example.vn"}, "applicant.email"),
    ({"email": "a" * 244 + "@example.vn"}, "applicant.email"),    # 255 characters > 254
    ({"email": 42}, "applicant.email"),
    ({"name": ...}, "applicant.name"),
    ({"name": None}, "applicant.name"),
    ({"name": ""}, "applicant.name"),
    ({"name": " \t\n "}, "applicant.name"),
    ({"name": 42}, "applicant.name"),
    ({"name": ["Nguyễn", "Lan"]}, "applicant.name"),
    ({"name": "L" * 201}, "applicant.name"),
    ({"address": ...}, "applicant.address"),
    ({"address": "  "}, "applicant.address"),
])
def test_parse_applicant_names_the_invalid_field(changes, field):
    assert invalid_field(parse_applicant, applicant(**changes)) == field


@pytest.mark.parametrize("data", [None, "Nguyễn Thị Lan", ["Nguyễn Thị Lan"], 42])
def test_parse_applicant_needs_an_object(data):
    with pytest.raises(Invalid) as caught:
        parse_applicant(data)
    assert (caught.value.field, caught.value.reason) == ("applicant", "must be an object")


def test_parse_applicant_name_length_is_counted_after_collapsing_spaces():
    assert parse_applicant(applicant(name="L" * 200)).name == "L" * 200
    spaced = "N" * 100 + " " * 50 + "L" * 99          # 249 characters, 200 once collapsed
    assert parse_applicant(applicant(name=spaced)).name == "N" * 100 + " " + "L" * 99
    with pytest.raises(Invalid) as caught:
        parse_applicant(applicant(name="N" * 100 + " " + "L" * 100))
    assert caught.value.reason == "is longer than 200 characters"


def test_invalid_carries_status_400_and_a_message_naming_the_field():
    with pytest.raises(Invalid) as caught:
        parse_applicant(applicant(id_number="123"))
    assert caught.value.status == 400
    assert str(caught.value) == "applicant.id_number: must be a citizen ID (CCCD) of exactly 12 digits"


@pytest.mark.parametrize("changes, field", [
    ({"id_number": "０７９１９０００１２３４"}, "applicant.id_number"),   # full-width digits
    ({"id_number": "٠٧٩١٩٠٠٠١٢٣٤"}, "applicant.id_number"),           # Arabic-Indic digits
    ({"phone": "0９０３１２３４５６"}, "applicant.phone"),
])
def test_parse_applicant_accepts_only_ascii_digits(changes, field):
    assert invalid_field(parse_applicant, applicant(**changes)) == field


# --------------------------------------------------------------------------------------------
# parse_documents, parse_channel, parse_quantities
# --------------------------------------------------------------------------------------------

def test_parse_documents_reads_every_form_and_defaults_count_to_one():
    got = parse_documents([
        {"name": "  Tờ khai   đăng ký khai sinh ", "form": "original"},
        {"name": "Giấy chứng sinh", "form": "certified_copy", "count": 2},
        {"name": "CCCD", "form": "copy", "count": 1000},
    ])
    assert got == [Presented("Tờ khai đăng ký khai sinh", "original", 1),
                   Presented("Giấy chứng sinh", "certified_copy", 2),
                   Presented("CCCD", "copy", 1000)]


def test_parse_documents_empty_list_is_an_empty_list():
    assert parse_documents([]) == []


@pytest.mark.parametrize("count", [0, -1, 1001, "2", True, False, 1.0, None, [1]])
def test_parse_documents_rejects_a_bad_count_naming_its_entry(count):
    documents = [{"name": "Tờ khai", "form": "original"}, {"name": "Giấy chứng sinh", "form": "copy", "count": count}]
    assert invalid_field(parse_documents, documents) == "documents[1].count"


@pytest.mark.parametrize("item, field", [
    ({"name": "Tờ khai", "form": "scan"}, "documents[1].form"),
    ({"name": "Tờ khai", "form": "Original"}, "documents[1].form"),
    ({"name": "Tờ khai"}, "documents[1].form"),
    ({"name": "Tờ khai", "form": ["original"]}, "documents[1].form"),
    ({"form": "copy"}, "documents[1].name"),
    ({"name": "   ", "form": "copy"}, "documents[1].name"),
    ({"name": 7, "form": "copy"}, "documents[1].name"),
    ("Tờ khai", "documents[1]"),
    (["Tờ khai", "original"], "documents[1]"),
])
def test_parse_documents_names_the_invalid_entry_and_field(item, field):
    assert invalid_field(parse_documents, [{"name": "Giấy chứng sinh", "form": "original"}, item]) == field


@pytest.mark.parametrize("data", [None, {"name": "Tờ khai", "form": "original"}, "Tờ khai", 3])
def test_parse_documents_needs_a_list(data):
    assert invalid_field(parse_documents, data) == "documents"


def test_parse_documents_uses_the_given_field_prefix():
    assert invalid_field(parse_documents, [{"name": "X", "form": "x"}], "supplement.documents") \
        == "supplement.documents[0].form"


@pytest.mark.parametrize("channel", ["in_person", "online", "post"])
def test_parse_channel_accepts_the_three_channels(channel):
    assert parse_channel(channel) == channel


@pytest.mark.parametrize("channel", ["Online", "trực tuyến", "", None, 1, 2])
def test_parse_channel_rejects_anything_else(channel):
    assert invalid_field(parse_channel, channel) == "channel"


@pytest.mark.parametrize("channel", [["online"], {"online": True}])
def test_parse_channel_rejects_a_list_or_object_as_invalid(channel):
    assert invalid_field(parse_channel, channel) == "channel"


@pytest.mark.parametrize("data, expected", [
    (None, {"pages": 1, "copies": 1}),
    ({}, {"pages": 1, "copies": 1}),
    ({"pages": 12}, {"pages": 12, "copies": 1}),
    ({"copies": 3}, {"pages": 1, "copies": 3}),
    ({"pages": 10000, "copies": 10000}, {"pages": 10000, "copies": 10000}),
])
def test_parse_quantities_defaults_to_one(data, expected):
    assert parse_quantities(data) == expected


@pytest.mark.parametrize("data, field", [
    ({"colour": 1}, "quantities.colour"),
    ({"pages": 2, "sheets": 1, "another": 1}, "quantities.another"),   # the first unknown key, sorted
    ({"pages": 0}, "quantities.pages"),
    ({"pages": 10001}, "quantities.pages"),
    ({"copies": -1}, "quantities.copies"),
    ({"copies": "2"}, "quantities.copies"),
    ({"copies": True}, "quantities.copies"),
    ({"pages": 2.5}, "quantities.pages"),
    ([1, 2], "quantities"),
    ("pages=2", "quantities"),
])
def test_parse_quantities_names_the_invalid_field(data, field):
    assert invalid_field(parse_quantities, data) == field


# --------------------------------------------------------------------------------------------
# missing_documents and check
# --------------------------------------------------------------------------------------------

def req(name: str, form: str = "original", count: int = 1) -> dict:
    return {"name": name, "form": form, "count": count}


def test_names_match_regardless_of_case_diacritics_and_spaces():
    required = [req("Tờ khai đăng ký khai sinh"), req("Giấy chứng sinh"), req("Đơn đề nghị")]
    presented = [Presented("to khai dang ky khai sinh", "original", 1),
                 Presented("GIẤY   CHỨNG SINH", "original", 1),
                 Presented("don de nghi", "original", 1)]
    assert missing_documents(required, presented) == []


def test_a_different_name_does_not_match():
    assert missing_documents([req("Tờ khai")], [Presented("Tờ trình", "original", 1)]) \
        == [Missing("Tờ khai", "original", 1, 0)]


@pytest.mark.parametrize("required_form, presented_form, satisfied", [
    ("original", "original", True),
    ("original", "certified_copy", False),
    ("original", "copy", False),
    ("certified_copy", "original", True),
    ("certified_copy", "certified_copy", True),
    ("certified_copy", "copy", False),
    ("copy", "original", True),
    ("copy", "certified_copy", True),
    ("copy", "copy", True),
])
def test_a_stronger_form_satisfies_a_weaker_requirement_only(required_form, presented_form, satisfied):
    got = missing_documents([req("Giấy khai sinh", required_form)], [Presented("Giấy khai sinh", presented_form, 1)])
    assert got == ([] if satisfied else [Missing("Giấy khai sinh", required_form, 1, 0)])


def test_counts_add_up_over_several_entries_of_the_same_name():
    required = [req("Tờ khai", "original", 3)]
    assert missing_documents(required, [Presented("Tờ khai", "original", 1), Presented("to khai", "original", 2)]) == []
    assert missing_documents(required, [Presented("Tờ khai", "original", 1), Presented("TỜ KHAI", "original", 1)]) \
        == [Missing("Tờ khai", "original", 3, 2)]
    # copies do not count towards an original; an original and a certified copy both count for a copy
    assert missing_documents(required, [Presented("Tờ khai", "original", 1), Presented("Tờ khai", "copy", 5)]) \
        == [Missing("Tờ khai", "original", 3, 1)]
    assert missing_documents([req("Tờ khai", "copy", 3)],
                             [Presented("Tờ khai", "original", 1), Presented("tờ khai", "certified_copy", 2)]) == []


def test_missing_lists_requirements_in_catalogue_order_with_what_was_presented():
    required = [req("Tờ khai", "original", 1), req("CCCD", "certified_copy", 2), req("Ảnh", "copy", 4)]
    got = missing_documents(required, [Presented("Ảnh", "copy", 4), Presented("cccd", "certified_copy", 1)])
    assert got == [Missing("Tờ khai", "original", 1, 0), Missing("CCCD", "certified_copy", 2, 1)]


def test_one_sheet_does_not_satisfy_two_requirements_of_the_same_name():
    required = [req("Giấy chứng nhận", "original", 1), req("Giấy chứng nhận", "copy", 1)]
    got = missing_documents(required, [Presented("Giấy chứng nhận", "original", 1)])
    assert sum(m.required - m.presented for m in got) == 1


def test_missing_guidance_is_vietnamese():
    assert Missing("Tờ khai", "original", 3, 1).guidance() == "Tờ khai (bản chính): còn thiếu 2 bản"
    assert Missing("CCCD", "certified_copy", 1, 0).guidance() == "CCCD (bản sao có chứng thực): còn thiếu 1 bản"
    assert Missing("Ảnh 4x6", "copy", 2, 0).guidance() == "Ảnh 4x6 (bản sao): còn thiếu 2 bản"


PROCEDURE = {"code": "2.000815", "documents": [req("Tờ khai", "original", 2), req("Giấy khai sinh", "copy", 1)],
             "sets": 2}


def test_check_complete():
    result = check(PROCEDURE, [Presented("to khai", "original", 2), Presented("giay khai sinh", "original", 1)], 2)
    assert result == CheckResult((), 2, 2)
    assert result.complete is True
    assert result.guidance() == []
    assert result.as_dict() == {"complete": True, "missing": [], "sets_required": 2, "sets_presented": 2,
                                "guidance": []}


def test_check_short_of_sets_is_incomplete_with_a_guidance_line():
    result = check(PROCEDURE, [Presented("Tờ khai", "original", 2), Presented("Giấy khai sinh", "copy", 1)], 1)
    assert result.complete is False
    assert result.guidance() == ["Số bộ hồ sơ: cần 2 bộ, mới có 1 bộ"]


def test_check_defaults_to_one_set():
    procedure = {"documents": [req("Tờ khai")]}
    assert check(procedure, [Presented("Tờ khai", "original", 1)], 1).complete is True
    assert check(procedure, [Presented("Tờ khai", "original", 1)], 0).guidance() \
        == ["Số bộ hồ sơ: cần 1 bộ, mới có 0 bộ"]


def test_check_incomplete_as_dict():
    result = check(PROCEDURE, [Presented("Tờ khai", "copy", 2)], 1)
    assert result.complete is False
    assert result.as_dict() == {
        "complete": False,
        "missing": [{"name": "Tờ khai", "form": "original", "required": 2, "presented": 0},
                    {"name": "Giấy khai sinh", "form": "copy", "required": 1, "presented": 0}],
        "sets_required": 2,
        "sets_presented": 1,
        "guidance": ["Tờ khai (bản chính): còn thiếu 2 bản",
                     "Giấy khai sinh (bản sao): còn thiếu 1 bản",
                     "Số bộ hồ sơ: cần 2 bộ, mới có 1 bộ"],
    }


# Words of document names, with and without diacritics, for names the property tests make up.
VI_WORDS = ("tờ", "khai", "giấy", "chứng", "sinh", "đăng", "ký", "bản", "sao", "hộ", "tịch", "đơn", "đề", "nghị",
            "quyết", "định", "hợp", "đồng", "ảnh", "thẻ", "căn", "cước", "công", "dân", "ủy", "quyền", "xác",
            "nhận", "tình", "trạng", "hôn", "nhân", "văn", "đất", "nhà", "ở", "ư", "Đ", "(theo", "mẫu)", "4x6")
NAME = st.lists(st.sampled_from(VI_WORDS), min_size=1, max_size=5).map(" ".join)
FORM = st.sampled_from(["original", "certified_copy", "copy"])


def _requirements():
    return st.lists(st.tuples(NAME, FORM, st.integers(1, 5)), min_size=1, max_size=5,
                    unique_by=lambda r: " ".join(unaccent(r[0]).lower().split())) \
        .map(lambda rows: [req(*row) for row in rows])


CASES = (str, str.lower, str.upper, str.title, str.swapcase)
SPACES = (" ", "  ", "\t", " \u00a0 ")


def _variant(draw, name: str) -> str:
    """The same name as a citizen may write it: other case, with or without diacritics, other spaces."""
    plain, case, inner, outer = draw(st.tuples(st.booleans(), st.sampled_from(CASES),
                                               st.sampled_from(SPACES), st.sampled_from(SPACES)))
    name = case(unaccent(name) if plain else name)
    return outer + inner.join(name.split(" ")) + outer


def _split(draw, total: int) -> list[int]:
    """``total`` sheets handed over in one, two or three entries."""
    cuts = sorted(set(draw(st.lists(st.integers(1, total - 1), max_size=2)))) if total > 1 else []
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:]) if b > a]


@settings(max_examples=50, deadline=None, database=None)
@given(required=_requirements(), data=st.data())
def test_property_originals_in_the_required_count_leave_nothing_missing(required, data):
    presented = []
    for requirement in required:
        total = requirement["count"] + data.draw(st.integers(0, 2))
        for part in _split(data.draw, total):
            presented.append(Presented(_variant(data.draw, requirement["name"]), "original", part))
    presented = data.draw(st.permutations(presented))
    assert missing_documents(required, presented) == []


@settings(max_examples=50, deadline=None, database=None)
@given(required=_requirements(), data=st.data())
def test_property_one_sheet_short_is_reported_exactly(required, data):
    short = data.draw(st.integers(0, len(required) - 1))
    presented = []
    for index, requirement in enumerate(required):
        total = requirement["count"] - (1 if index == short else 0)
        for part in _split(data.draw, total):
            presented.append(Presented(_variant(data.draw, requirement["name"]), "original", part))
    r = required[short]
    assert missing_documents(required, presented) == [Missing(r["name"], r["form"], r["count"], r["count"] - 1)]


# --------------------------------------------------------------------------------------------
# where a procedure is received, and by whom it is handled
# --------------------------------------------------------------------------------------------

WARD_DESK = {"code": WARD_1, "kind": "ward", "desk": True, "short_name": "Phường 1"}
DISTRICT_DESK = {"code": DISTRICT, "kind": "district", "desk": True, "short_name": "Quận Gò Vấp"}
OFFICE = {"code": JUSTICE, "kind": "office", "desk": False, "short_name": "Phòng Tư pháp"}
BIRTH = {"code": "1.001193", "level": "ward", "handling_agency": "self"}
HOUSEHOLD_BUSINESS = {"code": "2.000720", "level": "district", "handling_agency": "000.22.20.H29"}


def test_ward_procedure_is_accepted_at_a_ward_desk():
    assert accepted_at(BIRTH, WARD_DESK) is None
    assert accepted_at(HOUSEHOLD_BUSINESS, DISTRICT_DESK) is None


def test_ward_procedure_at_the_district_desk_is_invalid_on_procedure_code():
    with pytest.raises(Invalid) as caught:
        accepted_at(BIRTH, DISTRICT_DESK)
    assert caught.value.field == "procedure_code"
    assert caught.value.reason == "1.001193 is received at the desk of the ward (UBND phường), not at Quận Gò Vấp"


def test_district_procedure_at_a_ward_desk_is_invalid_on_procedure_code():
    with pytest.raises(Invalid) as caught:
        accepted_at(HOUSEHOLD_BUSINESS, WARD_DESK)
    assert caught.value.field == "procedure_code"
    assert "(UBND quận)" in caught.value.reason


@pytest.mark.parametrize("unit", [OFFICE, {**WARD_DESK, "desk": False},
                                  {k: v for k, v in WARD_DESK.items() if k != "desk"}])
def test_unit_without_a_desk_is_invalid_on_unit(unit):
    with pytest.raises(Invalid) as caught:
        accepted_at(BIRTH, unit)
    assert caught.value.field == "unit"
    assert caught.value.reason == f"{unit['short_name']} has no reception desk"


def test_handling_agency_self_is_the_receiving_unit():
    assert handling_agency(BIRTH, WARD_1) == WARD_1
    assert handling_agency(BIRTH, "000.03.20.H29") == "000.03.20.H29"
    assert handling_agency(HOUSEHOLD_BUSINESS, DISTRICT) == "000.22.20.H29"


# --------------------------------------------------------------------------------------------
# the life cycle
# --------------------------------------------------------------------------------------------

# Written by hand from domain §3 (national status codes 1..10), not from TRANSITIONS:
# action -> (statuses it is allowed in, status it leads to; None: decided by the event)
EXPECTED_LIFE_CYCLE: dict[str, tuple[set[int], int | None]] = {
    # an online submission (1) is received by a desk officer
    "accept": ({1}, 2),
    # refusal slip (Mẫu 03): of an online submission, or by the desk of a dossier it has just received
    "refuse": ({1, 2}, 3),
    # one written notice, by the desk or an agency while handling, also while the fees/tax wait (6);
    # not while already waiting for the citizen (5), nor once processed (9) or returned (10)
    "request_supplement": ({2, 4, 6}, 5),
    # the citizen brings the supplement: back to the status before the request
    "receive_supplement": ({5}, None),
    # the citizen may withdraw while the dossier is open; not once refused, withdrawn, stopped, processed (9+)
    "withdraw": ({1, 2, 4, 5, 6}, 7),
    # a handling step starts on a received dossier or another step follows
    "start_step": ({2, 4}, 4),
    # an obligation appearing later (land tax) while received or being processed
    "request_obligation": ({2, 4}, 6),
    "settle_obligation": ({6}, 4),
    # the handling agency ends the processing: done (9) or stopped (8)
    "processed": ({2, 4, 6}, None),
    # the desk returns the result: 9 -> 10 only
    "return": ({9}, 10),
}


def test_the_expectation_table_covers_every_action():
    assert set(EXPECTED_LIFE_CYCLE) == set(TRANSITIONS)
    assert [int(s) for s in Status] == list(range(1, 11))


@pytest.mark.parametrize("action, status", [(a, s) for a in EXPECTED_LIFE_CYCLE for s in range(1, 11)])
def test_require_allows_each_action_exactly_in_its_statuses(action, status):
    allowed, target = EXPECTED_LIFE_CYCLE[action]
    if status in allowed:
        got = require(action, status)
        assert got == target
        assert got is None or isinstance(got, Status)
        assert require(action, Status(status)) == target
    else:
        with pytest.raises(Conflict) as caught:
            require(action, status)
        assert caught.value.field == "status"
        assert caught.value.status == 409
        assert f"a dossier in status {status} (" in caught.value.reason


def test_require_conflict_message_in_full():
    with pytest.raises(Conflict) as caught:
        require("return", 4)
    assert caught.value.reason == "cannot return (trả kết quả) a dossier in status 4 (Đang giải quyết)"
    with pytest.raises(Conflict) as caught:
        require("request_supplement", Status.SUPPLEMENT_REQUESTED)
    assert caught.value.reason == ("cannot request supplement (yêu cầu bổ sung) a dossier in status 5 "
                                   "(Yêu cầu bổ sung hồ sơ)")


def test_key_transitions_of_the_law():
    assert require("return", 9) is Status.RETURNED
    for status in (1, 2, 3, 4, 5, 6, 7, 8, 10):
        with pytest.raises(Conflict):
            require("return", status)
    for status in (2, 4, 6):
        assert require("request_supplement", status) is Status.SUPPLEMENT_REQUESTED
    for status in (5, 9, 10):
        with pytest.raises(Conflict):
            require("request_supplement", status)
    for status in (9, 10):
        with pytest.raises(Conflict):
            require("withdraw", status)


def test_require_supplement_unused():
    assert require_supplement_unused(None) is None
    with pytest.raises(Conflict) as caught:
        require_supplement_unused(at(2026, 2, 23, 9))
    assert caught.value.field == "supplement"
    assert caught.value.status == 409
    assert caught.value.reason == ("a supplement was already requested for this dossier on 2026-02-23; "
                                   "the law allows one request only")


def test_require_supplement_unused_mentions_the_local_date():
    with pytest.raises(Conflict) as caught:
        require_supplement_unused(datetime(2026, 2, 22, 23, 30, tzinfo=UTC))   # 06:30 on 23/2 in Vietnam
    assert "2026-02-23" in caught.value.reason


@pytest.mark.parametrize("result, status", [("done", 9), ("stopped", 8)])
def test_processed_status(result, status):
    got = processed_status(result)
    assert got == status
    assert isinstance(got, Status)


@pytest.mark.parametrize("result", ["Done", "DONE", "processed", "refused", "", None, 9])
def test_processed_status_rejects_anything_else(result):
    assert invalid_field(processed_status, result) == "payload.result"


# --------------------------------------------------------------------------------------------
# appointment dates and result classes
# --------------------------------------------------------------------------------------------

FRI_BEFORE_TET = at(2026, 2, 13, 10)   # Tết 2026: Mon 16 – Fri 20 Feb off; working again Mon 23


def stop(start: str, end: str | None) -> dict:
    return {"start": start, "end": end}


def test_appointment_three_working_days_over_tet():
    assert appointment(FRI_BEFORE_TET, "3 working days", CAL) == date(2026, 2, 25)
    assert appointment(FRI_BEFORE_TET, "3 ngày làm việc", CAL) == date(2026, 2, 25)


@pytest.mark.parametrize("received, expected", [
    (at(2026, 2, 12, 14, 59), date(2026, 2, 12)),    # Thursday, before the 15:00 cut-off
    (at(2026, 2, 12, 15, 0), date(2026, 2, 12)),     # at 15:00 exactly: still the same day
    (at(2026, 2, 12, 15, 1), date(2026, 2, 13)),     # after 15:00: the next working day
    (at(2026, 2, 13, 15, 1), date(2026, 2, 23)),     # Friday after 15:00, before Tết: Monday after Tết
    (datetime(2026, 2, 12, 7, 59, tzinfo=UTC), date(2026, 2, 12)),   # 14:59 local
    (datetime(2026, 2, 12, 8, 1, tzinfo=UTC), date(2026, 2, 13)),    # 15:01 local
])
def test_appointment_same_day_cut_off_at_15(received, expected):
    assert appointment(received, "same day", CAL) == expected


@pytest.mark.parametrize("returned, expected", [
    (at(2026, 2, 24, 16), "early"),
    (datetime(2026, 2, 24, 16, 59, tzinfo=UTC), "early"),         # 23:59 on the 24th local
    (datetime(2026, 2, 24, 17, 0, tzinfo=UTC), "on_time"),        # 00:00 on the 25th local
    (at(2026, 2, 25, 8), "on_time"),
    (at(2026, 2, 25, 23, 30), "on_time"),                          # 16:30 UTC, same local day
    (datetime(2026, 2, 25, 16, 30, tzinfo=UTC), "on_time"),
    (datetime(2026, 2, 25, 17, 30, tzinfo=UTC), "late"),          # 00:30 on the 26th local
    (at(2026, 2, 26, 8), "late"),
])
def test_result_class_by_the_local_date(returned, expected):
    assert result_class(returned, date(2026, 2, 25)) == expected


# --------------------------------------------------------------------------------------------
# what citizens see
# --------------------------------------------------------------------------------------------

def test_new_secret_format_and_alphabet():
    secrets = [new_secret() for _ in range(200)]
    pattern = re.compile(r"[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{4}-[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{4}")
    assert all(pattern.fullmatch(s) for s in secrets), [s for s in secrets if not pattern.fullmatch(s)]
    assert not set("".join(secrets)) & set("0O1I")
    assert len(set(secrets)) == 200


@pytest.mark.parametrize("name, expected", [
    ("Nguyễn Thị Lan", "N. T. L."),
    ("nguyễn thị lan", "N. T. L."),
    ("  Trần   Văn\tĐức ", "T. V. Đ."),
    ("đặng ánh", "Đ. Á."),
    ("Lan", "L."),
    ("ư", "Ư."),
])
def test_initials(name, expected):
    assert initials(name) == expected


# --- the citizen's channels ------------------------------------------------------------------------

def test_the_citizen_may_choose_zalo():
    from services.intake.domain import parse_notifications
    applicant = Applicant(name="Nguyễn Thị Đào", id_number="079190000001", address="Gò Vấp", phone="0912345678")
    assert parse_notifications({"channels": ["zalo", "sms"]}, applicant) == {"channels": ["sms", "zalo"],
                                                                             "optional": True}
    assert parse_notifications(None, applicant)["channels"] == ["sms"]          # as before
    with pytest.raises(Invalid) as caught:
        parse_notifications({"channels": ["zalo", "whatsapp"]}, applicant)
    assert caught.value.field == "notifications.channels" and "zalo" in caught.value.reason
