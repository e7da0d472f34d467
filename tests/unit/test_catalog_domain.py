"""Catalogue parsing and validation (services/catalog/domain.py) and the shipped catalogue.yml.

Every rule is checked by breaking one thing in a small valid catalogue and asserting the exact
entry and field of the issue it reports.
"""
from __future__ import annotations

import copy
import json
import unicodedata
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.catalog.domain import (
    CONDITIONS,
    Catalogue,
    CatalogueInvalid,
    Document,
    FeeItem,
    Issue,
    Procedure,
    Stage,
    Step,
    Tier,
    Unit,
    parse_catalogue,
)

CATALOGUE_FILE = Path(__file__).resolve().parents[2] / "services" / "catalog" / "data" / "catalogue.yml"

DISTRICT = "000.00.20.H29"
WARD_1 = "000.01.20.H29"
WARD_3 = "000.03.20.H29"
JUSTICE = "000.23.20.H29"
LAND = "000.41.20.H29"
TAX = "000.42.20.H29"


# --------------------------------------------------------------------------------------------
# A small valid catalogue to break
# --------------------------------------------------------------------------------------------


def _unit(code, name, kind, parent, desk, **extra):
    return {"code": code, "name": name, "short_name": name, "kind": kind, "parent": parent, "desk": desk, **extra}


def base() -> dict:
    return {
        "units": [
            _unit(DISTRICT, "Ủy ban nhân dân quận Gò Vấp", "district", None, True, admin_code="764",
                  address="332 Quang Trung, Phường 10, quận Gò Vấp"),
            _unit(WARD_1, "Ủy ban nhân dân Phường 1", "ward", DISTRICT, True, admin_code="26896"),
            _unit(WARD_3, "Ủy ban nhân dân Phường 3", "ward", DISTRICT, True, admin_code="26902"),
            _unit(JUSTICE, "Phòng Tư pháp quận Gò Vấp", "office", DISTRICT, False),
            _unit(LAND, "Chi nhánh Văn phòng Đăng ký đất đai quận Gò Vấp", "agency", None, False),
            _unit(TAX, "Chi cục Thuế quận Gò Vấp", "agency", None, False),
        ],
        "procedures": [
            {  # procedures[0]: ward level, same day, per-page fee
                "code": "2.000815",
                "name": "Chứng thực bản sao từ bản chính",
                "field": "Chứng thực",
                "level": "ward",
                "submitted_at": "Bộ phận tiếp nhận và trả kết quả UBND phường",
                "handling_agency": "self",
                "legal_basis": ["Nghị định 23/2015/NĐ-CP", "Thông tư 226/2016/TT-BTC"],
                "time_limit": "same day",
                "documents": [{"name": "Bản chính giấy tờ", "form": "original", "count": 1}],
                "sets": 1,
                "fees": [
                    {
                        "id": "chung-thuc-ban-sao",
                        "type": "phi",
                        "name": "Phí chứng thực bản sao từ bản chính",
                        "kind": "per_page",
                        "tiers": [{"from_page": 1, "amount": 2000}, {"from_page": 3, "amount": 1000}],
                        "cap_per_copy": 200000,
                    }
                ],
                "one_stop": True,
                "inter_agency": False,
                "steps": [{"agency": "self", "days": 0}],
                "online_level": "partial",
                "effective_from": "2021-07-01",
            },
            {  # procedures[1]: ward level, flat fee with exemptions
                "code": "1.001193",
                "name": "Đăng ký khai sinh",
                "field": "Hộ tịch",
                "level": "ward",
                "submitted_at": "Bộ phận tiếp nhận và trả kết quả UBND phường",
                "handling_agency": "self",
                "legal_basis": ["Luật Hộ tịch số 60/2014/QH13"],
                "time_limit": "same day",
                "documents": [
                    {"name": "Tờ khai đăng ký khai sinh", "form": "original", "count": 1},
                    {"name": "Giấy chứng sinh", "form": "original", "count": 1},
                ],
                "sets": 1,
                "fees": [
                    {"id": "le-phi-khai-sinh", "type": "le_phi", "name": "Lệ phí đăng ký khai sinh",
                     "kind": "flat", "amount": 5000},
                    {"id": "mien-dung-han", "type": "le_phi", "name": "Miễn lệ phí khai sinh đúng hạn",
                     "kind": "exemption", "waives": "le-phi-khai-sinh", "when": "on_time_registration",
                     "description": "Đăng ký đúng hạn được miễn lệ phí"},
                ],
                "one_stop": True,
                "inter_agency": False,
                "steps": [{"agency": "self", "days": 0}],
                "online_level": "full",
                "effective_from": "2021-07-01",
            },
            {  # procedures[2]: district level, inter-agency with a parallel stage
                "code": "1.013831",
                "name": "Đăng ký biến động quyền sử dụng đất",
                "field": "Đất đai",
                "level": "district",
                "submitted_at": "Bộ phận tiếp nhận và trả kết quả UBND quận Gò Vấp",
                "handling_agency": LAND,
                "legal_basis": ["Luật Đất đai số 45/2013/QH13", "Nghị định 43/2014/NĐ-CP"],
                "time_limit": "10 working days",
                "documents": [{"name": "Đơn đăng ký biến động", "form": "original", "count": 1}],
                "sets": 1,
                "fees": [
                    {"id": "le-phi-bien-dong", "type": "le_phi", "name": "Lệ phí đăng ký biến động",
                     "kind": "flat", "amount": 28000, "description": "Thuế do Chi cục Thuế thông báo"},
                    {"id": "phi-ban-sao", "type": "phi", "name": "Phí cấp bản sao", "kind": "per_copy",
                     "amount": 8000},
                ],
                "one_stop": True,
                "inter_agency": True,
                "steps": [
                    {"agency": LAND, "days": 3},
                    {"parallel": [{"agency": TAX, "days": 3}, {"agency": JUSTICE, "days": 2}]},
                    {"agency": LAND, "days": 4},
                ],
                "online_level": "partial",
                "effective_from": "2021-07-01",
            },
        ],
    }


def issues_of(data) -> list[Issue]:
    with pytest.raises(CatalogueInvalid) as caught:
        parse_catalogue(data)
    assert caught.value.issues, "CatalogueInvalid raised with no issue"
    return caught.value.issues


def only_issue(data) -> Issue:
    issues = issues_of(data)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def where(issue: Issue) -> tuple[str, str]:
    return issue.entry, issue.field


P0, P1, P2 = "procedures[0] 2.000815", "procedures[1] 1.001193", "procedures[2] 1.013831"


# --------------------------------------------------------------------------------------------
# The valid catalogue
# --------------------------------------------------------------------------------------------


def test_valid_catalogue_parses_into_frozen_values():
    catalogue = parse_catalogue(base())
    assert isinstance(catalogue, Catalogue)
    assert catalogue.units[0] == Unit(
        code=DISTRICT, name="Ủy ban nhân dân quận Gò Vấp", short_name="Ủy ban nhân dân quận Gò Vấp",
        kind="district", parent=None, admin_code="764", desk=True,
        address="332 Quang Trung, Phường 10, quận Gò Vấp",
    )
    assert catalogue.units[3].address is None and catalogue.units[3].admin_code is None
    copy_fee, flat = catalogue.procedures[0], catalogue.procedures[1]
    assert copy_fee.legal_basis == ("Nghị định 23/2015/NĐ-CP", "Thông tư 226/2016/TT-BTC")
    assert copy_fee.documents == (Document("Bản chính giấy tờ", "original", 1),)
    assert copy_fee.fees == (
        FeeItem(id="chung-thuc-ban-sao", type="phi", name="Phí chứng thực bản sao từ bản chính", kind="per_page",
                amount=None, tiers=(Tier(1, 2000), Tier(3, 1000)), cap_per_copy=200000),
    )
    assert flat.fees[1].waives == "le-phi-khai-sinh" and flat.fees[1].when == "on_time_registration"
    assert copy_fee.effective_from == date(2021, 7, 1)
    assert copy_fee.steps == (Stage((Step("self", 0),), parallel=False),)
    land = catalogue.procedures[2]
    assert land.steps[1] == Stage((Step(TAX, 3), Step(JUSTICE, 2)), parallel=True)
    assert land.total_step_days() == 3 + 3 + 4
    assert land.agencies() == (LAND, TAX, JUSTICE)
    with pytest.raises(AttributeError):
        land.code = "1.000000"  # type: ignore[misc]


def test_time_limit_is_stored_in_canonical_form():
    data = base()
    data["procedures"][2]["time_limit"] = "10 ngày làm việc"
    data["procedures"][0]["time_limit"] = "trong ngày"
    catalogue = parse_catalogue(data)
    assert catalogue.procedures[2].time_limit == "10 working days"
    assert catalogue.procedures[0].time_limit == "same day"
    assert catalogue.procedures[2].limit().days == 10


def test_effective_from_accepts_a_yaml_date():
    data = base()
    data["procedures"][0]["effective_from"] = date(2026, 1, 1)  # unquoted in YAML
    assert parse_catalogue(data).procedures[0].effective_from == date(2026, 1, 1)


def test_text_is_trimmed_and_nfc_normalised():
    data = base()
    data["procedures"][1]["name"] = "  " + unicodedata.normalize("NFD", "Đăng ký khai sinh") + " "
    assert parse_catalogue(data).procedures[1].name == "Đăng ký khai sinh"


def test_versions_and_in_force():
    data = base()
    newer = copy.deepcopy(data["procedures"][0])
    newer["effective_from"] = "2027-01-01"
    newer["fees"][0]["cap_per_copy"] = 250000
    data["procedures"].append(newer)
    catalogue = parse_catalogue(data)
    assert [p.effective_from for p in catalogue.versions("2.000815")] == [date(2021, 7, 1), date(2027, 1, 1)]
    assert catalogue.in_force("2.000815", date(2026, 12, 31)).fees[0].cap_per_copy == 200000
    assert catalogue.in_force("2.000815", date(2027, 1, 1)).fees[0].cap_per_copy == 250000
    assert catalogue.in_force("2.000815", date(2020, 1, 1)) is None
    assert catalogue.unit(JUSTICE).kind == "office" and catalogue.unit("000.99.20.H29") is None
    assert [u.code for u in catalogue.desks()] == [DISTRICT, WARD_1, WARD_3]


# --------------------------------------------------------------------------------------------
# Issue and CatalogueInvalid
# --------------------------------------------------------------------------------------------


def test_issue_text_and_exception_message():
    issue = Issue("procedures[3] 2.000815", "fees[1].amount", "must be a whole number of VND, got 2000.5")
    assert str(issue) == "procedures[3] 2.000815: fees[1].amount: must be a whole number of VND, got 2000.5"
    assert str(Issue("catalogue", "", "must be a mapping")) == "catalogue: must be a mapping"
    error = CatalogueInvalid([issue, Issue("units[0]", "code", "missing")])
    assert isinstance(error, ValueError)
    assert str(issue) in str(error) and "units[0]: code: missing" in str(error)
    assert "2 issues" in str(error)


def test_float_amount_reads_as_in_the_spec():
    data = base()
    data["procedures"][1]["fees"][0]["amount"] = 2000.5
    assert str(only_issue(data)) == f"{P1}: fees[0].amount: must be a whole number of VND, got 2000.5"


# --------------------------------------------------------------------------------------------
# The top level
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, [], "units: []", 3])
def test_top_level_must_be_a_mapping(data):
    assert where(only_issue(data)) == ("catalogue", "")


def test_top_level_keys():
    data = base()
    del data["procedures"]
    data["unit"] = []
    issues = issues_of(data)
    assert {where(i) for i in issues} == {("catalogue", "procedures"), ("catalogue", "unit")}


def test_units_must_be_a_list():
    data = base()
    data["units"] = {"code": DISTRICT}
    issues = issues_of(data)
    assert ("catalogue", "units") in {where(i) for i in issues}


# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------

U1 = f"units[1] {WARD_1}"


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda u: u.update(colour="red"), "colour", "unknown key"),
        (lambda u: u.pop("name"), "name", "missing"),
        (lambda u: u.update(name="   "), "name", "must not be empty"),
        (lambda u: u.update(short_name=12), "short_name", "must be text"),
        (lambda u: u.update(kind="commune"), "kind", "must be one of"),
        (lambda u: u.update(desk="yes"), "desk", "true or false"),
        (lambda u: u.update(admin_code=26896), "admin_code", "must be text"),
        (lambda u: u.update(admin_code="P1"), "admin_code", "must look like"),
        (lambda u: u.update(address=""), "address", "must not be empty"),
        (lambda u: u.update(office_hours="7h30-11h30"), "office_hours", "not a period HH:MM-HH:MM"),
        (lambda u: u.update(office_hours="13:00-17:00, 07:30-11:30"), "office_hours", "starts before"),
        (lambda u: u.update(office_hours=8), "office_hours", "must be text"),
        (lambda u: u.update(parent=None), "parent", "needs its parent district"),
        (lambda u: u.update(parent="000.88.20.H29"), "parent", "no unit has the code"),
        (lambda u: u.update(parent=JUSTICE), "parent", "must be a district"),
        (lambda u: u.update(parent="Quận Gò Vấp"), "parent", "must look like"),
    ],
)
def test_unit_field_rules(change, field, words):
    data = base()
    change(data["units"][1])
    issue = only_issue(data)
    assert where(issue) == (U1, field)
    assert words in issue.reason


def test_office_hours_kept_in_canonical_form():
    data = base()
    data["units"][1]["office_hours"] = " 7:00-11:00,13:30-17:30 "
    catalogue = parse_catalogue(data)
    assert catalogue.units[1].office_hours == "07:00-11:00, 13:30-17:30"
    assert catalogue.units[0].office_hours is None


@pytest.mark.parametrize("code", ["000.1.20.H29", "000.01.20.h29", "000.01.20.HCM", "0000.01.20.H29", ""])
def test_unit_code_shape(code):
    data = base()
    data["units"][2]["code"] = code  # Phường 3: nothing refers to it
    issues = issues_of(data)
    assert [i.field for i in issues] == ["code"]
    assert issues[0].entry.startswith("units[2]")


def test_district_has_no_parent():
    data = base()
    data["units"][0]["parent"] = WARD_1
    assert where(only_issue(data)) == (f"units[0] {DISTRICT}", "parent")


def test_unit_entry_must_be_a_mapping():
    data = base()
    data["units"].append("Phường 5")
    assert where(only_issue(data)) == ("units[6]", "")


def test_duplicate_unit_code_and_admin_code():
    data = base()
    twin = copy.deepcopy(data["units"][2])
    data["units"].append(twin)  # same code and admin code as units[2]
    issues = issues_of(data)
    assert {where(i) for i in issues} == {(f"units[6] {WARD_3}", "code")}
    data = base()
    data["units"][2]["admin_code"] = "26896"  # Phường 1's
    issue = only_issue(data)
    assert where(issue) == (f"units[2] {WARD_3}", "admin_code")
    assert "units[1]" in issue.reason


# --------------------------------------------------------------------------------------------
# Procedures: fields
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda p: p.update(colour="red"), "colour", "unknown key"),
        (lambda p: p.pop("submitted_at"), "submitted_at", "missing"),
        (lambda p: p.update(name=""), "name", "must not be empty"),
        (lambda p: p.update(field=None), "field", "must be text"),
        (lambda p: p.update(level="city"), "level", "must be one of"),
        (lambda p: p.update(legal_basis=[]), "legal_basis", "at least 1"),
        (lambda p: p.update(legal_basis="Nghị định 23/2015/NĐ-CP"), "legal_basis", "must be a list"),
        (lambda p: p.update(legal_basis=["Nghị định 23/2015/NĐ-CP", ""]), "legal_basis[1]", "must not be empty"),
        (lambda p: p.update(time_limit="soon"), "time_limit", "invalid time limit"),
        (lambda p: p.update(time_limit="0 working days"), "time_limit", "invalid time limit"),
        (lambda p: p.update(time_limit=3), "time_limit", "must be text"),
        (lambda p: p.update(documents=[]), "documents", "at least 1"),
        (lambda p: p["documents"][0].update(form="photocopy"), "documents[0].form", "must be one of"),
        (lambda p: p["documents"][0].update(count=0), "documents[0].count", "at least 1"),
        (lambda p: p["documents"][0].update(count=1.0), "documents[0].count", "whole number"),
        (lambda p: p["documents"][0].pop("form"), "documents[0].form", "missing"),
        (lambda p: p["documents"].append("Giấy khai sinh"), "documents[1]", "must be a mapping"),
        (lambda p: p.update(sets=0), "sets", "at least 1"),
        (lambda p: p.update(sets=True), "sets", "whole number"),
        (lambda p: p.update(fees=None), "fees", "must be a list"),
        (lambda p: p.update(one_stop="yes"), "one_stop", "true or false"),
        (lambda p: p.update(online_level="toàn trình"), "online_level", "must be one of"),
        (lambda p: p.update(effective_from="2026-13-01"), "effective_from", "YYYY-MM-DD"),
        (lambda p: p.update(effective_from="1/7/2021"), "effective_from", "YYYY-MM-DD"),
        (lambda p: p.update(effective_from=datetime(2021, 7, 1, 8, 0)), "effective_from", "YYYY-MM-DD"),
        (lambda p: p.update(steps=[]), "steps", "at least 1"),
        (lambda p: p["steps"][0].update(days=-1), "steps[0].days", "at least 0"),
        (lambda p: p["steps"][0].pop("agency"), "steps[0].agency", "missing"),
    ],
)
def test_procedure_field_rules(change, field, words):
    data = base()
    change(data["procedures"][0])
    issue = only_issue(data)
    assert where(issue) == (P0, field)
    assert words in issue.reason


@pytest.mark.parametrize("code", ["2.815", "2-000815", "12.000815", "2.0008150", "", "2.000815.H29"])
def test_procedure_code_shape(code):
    data = base()
    data["procedures"][0]["code"] = code
    issue = only_issue(data)
    assert issue.field == "code" and issue.entry.startswith("procedures[0]")


def test_procedure_entry_must_be_a_mapping():
    data = base()
    data["procedures"].append(["2.000815"])
    assert where(only_issue(data)) == ("procedures[3]", "")


def test_duplicate_code_and_effective_from():
    data = base()
    data["procedures"].append(copy.deepcopy(data["procedures"][0]))
    issue = only_issue(data)
    assert where(issue) == ("procedures[3] 2.000815", "effective_from")
    assert P0.split()[0] in issue.reason


# --------------------------------------------------------------------------------------------
# Fees
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount, words",
    [(2000.5, "got 2000.5"), (True, "got true"), (-5000, "at least 0"), ("5000", "got '5000'"), (None, "got null")],
)
def test_amounts_are_whole_non_negative_vnd(amount, words):
    data = base()
    data["procedures"][1]["fees"][0]["amount"] = amount
    issue = only_issue(data)
    assert where(issue) == (P1, "fees[0].amount")
    assert "whole number of VND" in issue.reason and words in issue.reason


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda f: f.update(id="Chứng thực"), "fees[0].id", "must look like"),
        (lambda f: f.update(type="fee"), "fees[0].type", "must be one of"),
        (lambda f: f.update(kind="percent"), "fees[0].kind", "must be one of"),
        (lambda f: f.pop("tiers"), "fees[0].tiers", "missing"),
        (lambda f: f.update(tiers=[]), "fees[0].tiers", "at least 1"),
        (lambda f: f.update(amount=2000), "fees[0].amount", "unknown key"),
        (lambda f: f["tiers"][0].update(from_page=2), "fees[0].tiers[0].from_page", "starts at page 1"),
        (lambda f: f["tiers"][1].update(from_page=1), "fees[0].tiers[1].from_page", "greater than"),
        (lambda f: f["tiers"][1].update(amount=1000.0), "fees[0].tiers[1].amount", "whole number of VND"),
        (lambda f: f["tiers"][1].update(amount=-1), "fees[0].tiers[1].amount", "at least 0"),
        (lambda f: f["tiers"][1].update(page=3), "fees[0].tiers[1].page", "unknown key"),
        (lambda f: f.update(cap_per_copy=0.5), "fees[0].cap_per_copy", "whole number of VND"),
        (lambda f: f.update(cap_per_copy=0), "fees[0].cap_per_copy", "free"),
        (lambda f: f.update(when="poor_household"), "fees[0].when", "unknown key"),
    ],
)
def test_per_page_fee_rules(change, field, words):
    data = base()
    change(data["procedures"][0]["fees"][0])
    issue = only_issue(data)
    assert where(issue) == (P0, field)
    assert words in issue.reason


def test_cap_is_optional_and_flat_fees_reject_per_page_keys():
    data = base()
    del data["procedures"][0]["fees"][0]["cap_per_copy"]
    assert parse_catalogue(data).procedures[0].fees[0].cap_per_copy is None
    data = base()
    data["procedures"][1]["fees"][0]["cap_per_copy"] = 100
    assert where(only_issue(data)) == (P1, "fees[0].cap_per_copy")


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda f: f.update(waives="le-phi-ket-hon"), "fees[1].waives", "no fee item"),
        (lambda f: f.update(waives="mien-dung-han"), "fees[1].waives", "cannot waive itself"),
        (lambda f: f.update(when="rainy_day"), "fees[1].when", "must be one of"),
        (lambda f: f.pop("description"), "fees[1].description", "missing"),
        (lambda f: f.pop("when"), "fees[1].when", "missing"),
        (lambda f: f.update(amount=0), "fees[1].amount", "unknown key"),
        (lambda f: f.update(type="phi"), "fees[1].type", "kept apart"),
    ],
)
def test_exemption_rules(change, field, words):
    data = base()
    change(data["procedures"][1]["fees"][1])
    issue = only_issue(data)
    assert where(issue) == (P1, field)
    assert words in issue.reason


def test_exemption_cannot_waive_an_exemption():
    data = base()
    fees = data["procedures"][1]["fees"]
    fees.append({"id": "mien-ho-ngheo", "type": "le_phi", "name": "Miễn cho hộ nghèo", "kind": "exemption",
                 "waives": "mien-dung-han", "when": "poor_household", "description": "Hộ nghèo"})
    issue = only_issue(data)
    assert where(issue) == (P1, "fees[2].waives") and "itself an exemption" in issue.reason


def test_every_condition_is_accepted():
    data = base()
    fees = data["procedures"][1]["fees"]
    for n, condition in enumerate(CONDITIONS):
        fees.append({"id": f"mien-{n}", "type": "le_phi", "name": "Miễn", "kind": "exemption",
                     "waives": "le-phi-khai-sinh", "when": condition, "description": condition})
    assert {f.when for f in parse_catalogue(data).procedures[1].fees} >= set(CONDITIONS)


def test_duplicate_fee_ids():
    data = base()
    fees = data["procedures"][2]["fees"]
    fees[1]["id"] = fees[0]["id"]
    issue = only_issue(data)
    assert where(issue) == (P2, "fees[1].id") and "duplicate" in issue.reason


def test_same_fee_id_in_two_procedures_is_fine():
    data = base()
    data["procedures"][2]["fees"][1]["id"] = "le-phi-khai-sinh"
    parse_catalogue(data)


def test_exemption_waiving_an_invalid_item_reports_only_that_item():
    data = base()
    data["procedures"][1]["fees"][0]["amount"] = -1
    assert where(only_issue(data)) == (P1, "fees[0].amount")


# --------------------------------------------------------------------------------------------
# References to units
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, words",
    [
        ("000.77.20.H29", "no unit has the code"),
        (WARD_1, "is a ward"),
        (DISTRICT, "is a district"),
        ("Phòng Tư pháp", "must be 'self' or a unit code"),
        ("", "must not be empty"),
    ],
)
def test_handling_agency_reference(value, words):
    data = base()
    data["procedures"][0]["handling_agency"] = value
    issue = only_issue(data)
    assert where(issue) == (P0, "handling_agency")
    assert words in issue.reason


def test_handling_agency_may_be_an_office_or_an_agency():
    data = base()
    data["procedures"][0]["handling_agency"] = JUSTICE
    data["procedures"][1]["handling_agency"] = TAX
    parse_catalogue(data)


def test_step_agency_references():
    data = base()
    data["procedures"][2]["steps"][1]["parallel"][0]["agency"] = "000.77.20.H29"
    issue = only_issue(data)
    assert where(issue) == (P2, "steps[1].parallel[0].agency")
    assert "no unit has the code" in issue.reason
    # Any kind of unit may take a step, a ward or the district included.
    data = base()
    data["procedures"][2]["steps"][2]["agency"] = DISTRICT
    data["procedures"][2]["steps"][1]["parallel"][1]["agency"] = WARD_3
    parse_catalogue(data)


def test_references_to_a_unit_with_a_bad_kind_are_not_reported_twice():
    data = base()
    data["units"][4]["kind"] = "branch"  # the land registry
    issues = issues_of(data)
    assert [where(i) for i in issues] == [(f"units[4] {LAND}", "kind")]


# --------------------------------------------------------------------------------------------
# Workflow rules
# --------------------------------------------------------------------------------------------


def test_inter_agency_needs_two_distinct_agencies():
    data = base()
    p = data["procedures"][2]
    p["steps"] = [{"agency": LAND, "days": 3}, {"agency": LAND, "days": 4}]
    issue = only_issue(data)
    assert where(issue) == (P2, "inter_agency") and "two distinct agencies" in issue.reason


def test_self_counts_as_an_agency():
    data = base()
    data["procedures"][2]["steps"] = [{"agency": "self", "days": 1}, {"agency": TAX, "days": 2}]
    parse_catalogue(data)


@pytest.mark.parametrize(
    "steps",
    [
        [{"agency": "self", "days": 0}, {"agency": "self", "days": 0}],
        [{"parallel": [{"agency": "self", "days": 0}, {"agency": TAX, "days": 0}]}],
    ],
)
def test_single_agency_procedure_has_one_stage_with_one_step(steps):
    data = base()
    data["procedures"][0]["steps"] = steps
    issue = only_issue(data)
    assert where(issue) == (P0, "inter_agency") and "exactly one stage with one step" in issue.reason


def test_parallel_group_needs_two_steps_and_no_other_key():
    data = base()
    data["procedures"][2]["steps"][1] = {"parallel": [{"agency": TAX, "days": 3}]}
    assert where(only_issue(data)) == (P2, "steps[1].parallel")
    data = base()
    data["procedures"][2]["steps"][1]["days"] = 3
    issue = only_issue(data)
    assert where(issue) == (P2, "steps[1].days") and "unknown key" in issue.reason


def test_parallel_group_lasts_its_longest_step():
    data = base()
    # 3 + max(5, 2) + 2 = 10: fits although the steps add up to 12.
    data["procedures"][2]["steps"] = [
        {"agency": LAND, "days": 3},
        {"parallel": [{"agency": TAX, "days": 5}, {"agency": JUSTICE, "days": 2}]},
        {"agency": LAND, "days": 2},
    ]
    assert parse_catalogue(data).procedures[2].total_step_days() == 10
    data["procedures"][2]["steps"][2]["days"] = 3  # 11 > 10
    issue = only_issue(data)
    assert where(issue) == (P2, "steps")
    assert "11 working days" in issue.reason and "10 working days" in issue.reason


def test_same_day_procedure_steps_take_zero_days():
    data = base()
    data["procedures"][0]["steps"][0]["days"] = 1
    issue = only_issue(data)
    assert where(issue) == (P0, "steps[0].days") and "same-day" in issue.reason
    data = base()
    data["procedures"][2]["time_limit"] = "same day"
    issues = issues_of(data)
    assert {i.field for i in issues} == {"steps[0].days", "steps[1].parallel[0].days",
                                         "steps[1].parallel[1].days", "steps[2].days"}


def test_calendar_day_limits_are_not_compared_with_step_days():
    data = base()
    data["procedures"][2]["time_limit"] = "5 days"
    assert parse_catalogue(data).procedures[2].time_limit == "5 days"


def test_ward_level_procedure_needs_a_ward_desk():
    data = base()
    for unit in data["units"][1:3]:
        unit["desk"] = False
    issues = issues_of(data)
    assert {where(i) for i in issues} == {(P0, "level"), (P1, "level")}
    assert "ward with a desk" in issues[0].reason


def test_district_level_procedure_needs_the_district_desk():
    data = base()
    data["units"][0]["desk"] = False
    issue = only_issue(data)
    assert where(issue) == (P2, "level") and "district" in issue.reason


def test_desks_are_data_not_a_fixed_count():
    data = base()
    data["units"].append(_unit("000.05.20.H29", "Ủy ban nhân dân Phường 5", "ward", DISTRICT, False))
    catalogue = parse_catalogue(data)
    assert len(catalogue.desks()) == 3


# --------------------------------------------------------------------------------------------
# Every issue at once
# --------------------------------------------------------------------------------------------


def test_a_bad_file_reports_every_issue_at_once():
    data = base()
    data["units"][1]["kind"] = "commune"
    data["units"][2]["parent"] = "000.99.20.H29"
    data["units"].append(copy.deepcopy(data["units"][3]))
    data["procedures"][0]["fees"][0]["tiers"][0]["amount"] = 2000.5
    data["procedures"][0]["time_limit"] = "whenever"
    data["procedures"][1]["handling_agency"] = WARD_3
    data["procedures"][1]["fees"][1]["when"] = "birthday"
    data["procedures"][2]["steps"][0]["days"] = 9
    data["procedures"][2]["sets"] = 0
    data["procedures"].append({"code": "1.000894", "name": "Đăng ký kết hôn"})
    with pytest.raises(CatalogueInvalid) as caught:
        parse_catalogue(data)
    found = {where(i) for i in caught.value.issues}
    expected = {
        (U1, "kind"),
        (f"units[2] {WARD_3}", "parent"),
        (f"units[6] {JUSTICE}", "code"),
        (P0, "fees[0].tiers[0].amount"),
        (P0, "time_limit"),
        (P1, "handling_agency"),
        (P1, "fees[1].when"),
        (P2, "steps"),
        (P2, "sets"),
        ("procedures[3] 1.000894", "field"),
        ("procedures[3] 1.000894", "steps"),
        ("procedures[3] 1.000894", "effective_from"),
    }
    assert expected <= found
    message = str(caught.value)
    assert all(str(issue) in message for issue in caught.value.issues)


# --------------------------------------------------------------------------------------------
# content() and from_content()
# --------------------------------------------------------------------------------------------


def test_content_round_trip_and_json():
    for procedure in parse_catalogue(base()).procedures:
        content = procedure.content()
        assert "code" not in content and "effective_from" not in content
        assert json.loads(json.dumps(content, ensure_ascii=False)) == content
        assert Procedure.from_content(procedure.code, procedure.effective_from, content) == procedure


def test_content_uses_the_file_vocabulary():
    land = parse_catalogue(base()).procedures[2].content()
    assert land["steps"][1] == {"parallel": [{"agency": TAX, "days": 3}, {"agency": JUSTICE, "days": 2}]}
    assert land["fees"][0] == {"id": "le-phi-bien-dong", "type": "le_phi", "name": "Lệ phí đăng ký biến động",
                               "kind": "flat", "amount": 28000, "description": "Thuế do Chi cục Thuế thông báo"}
    assert land["legal_basis"] == ["Luật Đất đai số 45/2013/QH13", "Nghị định 43/2014/NĐ-CP"]


def test_two_versions_compare_by_content():
    data = base()
    later = copy.deepcopy(data["procedures"][0])
    later["effective_from"] = "2027-01-01"
    data["procedures"].append(later)
    catalogue = parse_catalogue(data)
    assert catalogue.procedures[0].content() == catalogue.procedures[3].content()
    assert catalogue.procedures[0] != catalogue.procedures[3]


def test_from_content_validates():
    content = parse_catalogue(base()).procedures[1].content()
    content["fees"][0]["amount"] = 1.5
    with pytest.raises(CatalogueInvalid) as caught:
        Procedure.from_content("1.001193", date(2021, 7, 1), content)
    assert [(i.entry, i.field) for i in caught.value.issues] == [("procedure 1.001193", "fees[0].amount")]
    content = parse_catalogue(base()).procedures[1].content()
    content["code"] = "1.001193"
    with pytest.raises(CatalogueInvalid):
        Procedure.from_content("1.001193", date(2021, 7, 1), content)
    with pytest.raises(CatalogueInvalid):
        Procedure.from_content("1.001193", date(2021, 7, 1), ["not", "a", "mapping"])  # type: ignore[arg-type]


_words = st.text(
    alphabet=st.sampled_from(list("abcdeghiklmnopqrstuvxyĐđăâêôơưáàảãạếềểễệốồổỗộớờởỡợứừửữự ")), min_size=1, max_size=30
).filter(lambda s: s.strip())
_fee_ids = st.from_regex(r"[a-z]{1,8}(-[a-z0-9]{1,5}){0,2}", fullmatch=True)
_amounts = st.integers(min_value=0, max_value=50_000_000)
AGENCY_POOL = ["self", DISTRICT, WARD_1, JUSTICE, LAND, TAX]
_agencies = st.sampled_from(AGENCY_POOL)


@st.composite
def _fee_items(draw):
    ids = draw(st.lists(_fee_ids, min_size=0, max_size=4, unique=True))
    items = []
    payable = []
    for fee_id in ids:
        kind = draw(st.sampled_from(["flat", "per_copy", "per_page", "exemption"]))
        fee_type = draw(st.sampled_from(["phi", "le_phi"]))
        item = {"id": fee_id, "type": fee_type, "name": draw(_words), "kind": kind}
        if kind == "exemption":
            if not payable:
                item["kind"] = kind = "flat"
            else:
                target = draw(st.sampled_from(payable))
                item.update(type=target["type"], waives=target["id"], when=draw(st.sampled_from(CONDITIONS)),
                            description=draw(_words))
        if kind in ("flat", "per_copy"):
            item["amount"] = draw(_amounts)
        elif kind == "per_page":
            starts = sorted(draw(st.sets(st.integers(2, 500), max_size=3)))
            item["tiers"] = [{"from_page": page, "amount": draw(_amounts)} for page in [1, *starts]]
            if draw(st.booleans()):
                item["cap_per_copy"] = draw(st.integers(1, 10_000_000))
        if kind != "exemption" and draw(st.booleans()):
            item["description"] = draw(_words)
        if kind != "exemption":
            payable.append(item)
        items.append(item)
    return items


@st.composite
def _contents(draw):
    limit_kind = draw(st.sampled_from(["same day", "working", "calendar"]))
    days = draw(st.integers(1, 60))
    time_limit = {"same day": "same day", "working": f"{days} working days", "calendar": f"{days} ngày"}[limit_kind]
    budget = 0 if limit_kind == "same day" else days

    def step():
        # At most four stages below, so a quarter of the budget each keeps within the limit.
        return {"agency": draw(_agencies), "days": draw(st.integers(0, budget // 4))}

    inter_agency = draw(st.booleans())
    if inter_agency:
        stages = [step() for _ in range(draw(st.integers(1, 3)))]
        if draw(st.booleans()):
            stages.insert(draw(st.integers(0, len(stages))), {"parallel": [step(), step()]})
        agencies = {s["agency"] for stage in stages for s in stage.get("parallel", [stage])}
        if len(agencies) < 2:
            stages.append({"agency": next(a for a in AGENCY_POOL if a not in agencies), "days": 0})
    else:
        stages = [step()]
    return {
        "name": draw(_words),
        "field": draw(_words),
        "level": draw(st.sampled_from(["ward", "district"])),
        "submitted_at": draw(_words),
        "handling_agency": draw(st.sampled_from(["self", JUSTICE, LAND, TAX])),
        "legal_basis": draw(st.lists(_words, min_size=1, max_size=3)),
        "time_limit": time_limit,
        "documents": draw(st.lists(
            st.fixed_dictionaries({"name": _words, "form": st.sampled_from(["original", "certified_copy", "copy"]),
                                   "count": st.integers(1, 5)}), min_size=1, max_size=4)),
        "sets": draw(st.integers(1, 3)),
        "fees": draw(_fee_items()),
        "one_stop": draw(st.booleans()),
        "inter_agency": inter_agency,
        "steps": stages,
        "online_level": draw(st.sampled_from(["none", "partial", "full"])),
    }


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    code=st.from_regex(r"[0-9]\.[0-9]{6}", fullmatch=True),
    effective_from=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    content=_contents(),
)
def test_content_round_trip_property(code, effective_from, content):
    procedure = Procedure.from_content(code, effective_from, content)
    stored = json.loads(json.dumps(procedure.content()))
    again = Procedure.from_content(code, effective_from, stored)
    assert again == procedure
    assert again.content() == procedure.content()


# --------------------------------------------------------------------------------------------
# The shipped catalogue
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Catalogue:
    with CATALOGUE_FILE.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    try:
        return parse_catalogue(data)
    except CatalogueInvalid as exc:  # show every issue, not just "it failed"
        pytest.fail(str(exc))


def test_shipped_catalogue_structure(shipped):
    units = shipped.units
    district = [u for u in units if u.kind == "district"]
    wards = [u for u in units if u.kind == "ward"]
    assert len(district) == 1 and district[0].admin_code == "764"
    assert sorted(int(u.short_name.split()[-1]) for u in wards) == [1, *range(3, 18)]  # no Phường 2
    assert len(shipped.desks()) == 17
    assert {u.code for u in shipped.desks()} == {u.code for u in district + wards}
    assert len([u for u in units if u.kind == "office"]) == 11
    assert len([u for u in units if u.kind == "agency"]) == 4
    assert {u.admin_code for u in wards} >= {"26896", "26902"}


def test_shipped_catalogue_procedures(shipped):
    procedures = shipped.procedures
    assert len(procedures) >= 22
    assert sum(p.inter_agency for p in procedures) >= 3
    assert {p.level for p in procedures} == {"ward", "district"}
    codes = {p.code for p in procedures}
    assert {"2.000815", "2.000635", "1.001193", "2.000884"} <= codes
    copy_fee = shipped.in_force("2.000815", date(2026, 1, 1)).fees[0]
    assert copy_fee.tiers == (Tier(1, 2000), Tier(3, 1000)) and copy_fee.cap_per_copy == 200000
    assert shipped.in_force("2.000635", date(2026, 1, 1)).fees[0].amount == 8000
    for procedure in procedures:
        for fee in procedure.fees:
            for amount in (fee.amount, fee.cap_per_copy, *(t.amount for t in fee.tiers)):
                assert amount is None or (type(amount) is int and amount >= 0)


def test_shipped_catalogue_round_trips(shipped):
    for procedure in shipped.procedures:
        content = json.loads(json.dumps(procedure.content(), ensure_ascii=False))
        assert Procedure.from_content(procedure.code, procedure.effective_from, content) == procedure
