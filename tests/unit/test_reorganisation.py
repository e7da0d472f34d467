"""The reorganisation file (services/catalog/reorganisation.py) and the shared rule of a dissolved
desk (motcua/contracts/reorganisations.py): pure, against a small catalogue of units."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from motcua.contracts.events import new_event
from motcua.contracts.reorganisations import Reorganisation, dissolved
from services.catalog.reorganisation import ReorganisationInvalid, parse_reorganisation

ROOT = Path(__file__).resolve().parents[2]


def unit(code, kind="ward", desk=True, **extra):
    return {"code": code, "name": f"UBND {code}", "short_name": code, "kind": kind,
            "parent": None if kind in ("district", "agency") else "000.00.20.H29", "admin_code": None, "desk": desk,
            "address": None, "office_hours": None, "dissolved_on": None, "successor": None, **extra}


UNITS = {u["code"]: u for u in [
    unit("000.00.20.H29", "district"), unit("000.01.20.H29"), unit("000.03.20.H29"), unit("000.04.20.H29"),
    unit("000.21.20.H29", "office", desk=False), unit("000.41.20.H29", "agency", desk=False)]}
NEW = {"code": "000.90.20.H29", "name": "Ủy ban nhân dân phường Thử Nghiệm", "short_name": "Phường Thử Nghiệm",
       "kind": "ward", "parent": "000.00.20.H29", "desk": True}


def merger(**changes):
    data = {"name": "test merger", "effective_from": "2026-03-02",
            "mergers": [{"successor": "000.90.20.H29", "dissolved": ["000.01.20.H29", "000.03.20.H29"],
                         "procedures": "all", "unit": dict(NEW)}]}
    for key, value in changes.items():
        if key.startswith("m_"):
            data["mergers"][0][key[2:]] = value
        else:
            data[key] = value
    return data


def issues(data, units=UNITS, procedures=("2.000815",)):
    with pytest.raises(ReorganisationInvalid) as raised:
        parse_reorganisation(data, units, procedures)
    return [str(i) for i in raised.value.issues]


def test_a_merger_into_a_new_ward():
    plan = parse_reorganisation(merger(), UNITS, {"2.000815"})
    r = plan.reorganisation
    assert r.effective_from == date(2026, 3, 2)
    assert r.successor("000.01.20.H29", "2.000815") == "000.90.20.H29"
    assert r.successor("000.04.20.H29") is None
    assert [u.code for u in plan.new_units] == ["000.90.20.H29"]
    # The event's payload is the contract's, and reads back the same.
    event = new_event("catalog.units_reorganised", r.payload(), unit="000.00.20.H29")
    assert Reorganisation.from_payload(event.payload) == r


def test_a_merger_into_a_ward_that_stays_with_some_procedures():
    data = merger(m_successor="000.04.20.H29", m_procedures=["2.000815"])
    del data["mergers"][0]["unit"]
    r = parse_reorganisation(data, UNITS, {"2.000815"}).reorganisation
    assert r.successor("000.03.20.H29", "2.000815") == "000.04.20.H29"
    assert r.successor("000.03.20.H29", "1.000001") is None


def test_every_issue_names_the_entry_the_field_and_the_reason():
    data = merger(effective_from="2026-02-30", m_procedures=["2.000815", "9.999999", "x"])
    data["mergers"][0]["dissolved"] = ["000.01.20.H29", "000.77.20.H29", "000.21.20.H29", "000.01.20.H29", "bad"]
    data["mergers"].append({"successor": "000.01.20.H29", "dissolved": ["000.01.20.H29"], "procedures": "all"})
    found = issues(data)
    assert "reorganisation: effective_from: must be a date written YYYY-MM-DD, got '2026-02-30' (text)" in found
    assert "mergers[0] 000.90.20.H29: dissolved[1]: no unit has the code 000.77.20.H29 in the catalogue" in found
    assert any(f.startswith("mergers[0] 000.90.20.H29: dissolved[2]: 000.21.20.H29") and "without a desk" in f
               for f in found)
    assert "mergers[0] 000.90.20.H29: dissolved[3]: 000.01.20.H29 is listed twice" in found
    assert any(f.startswith("mergers[0] 000.90.20.H29: dissolved[4]: must be a unit code") for f in found)
    assert "mergers[0] 000.90.20.H29: procedures[1]: no procedure has the code 9.999999 in the catalogue" in found
    assert any(f.startswith("mergers[0] 000.90.20.H29: procedures[2]: must be a procedure code") for f in found)
    # The second merger: its successor dissolved by the first (and by itself), a unit merged twice.
    assert any("dissolved[0]: 000.01.20.H29 is the successor itself" in f for f in found)
    assert any(f.startswith("mergers[1] 000.01.20.H29: successor: 000.01.20.H29 is one of the units this file "
                            "dissolves") for f in found)


def test_a_unit_merged_twice():
    data = merger()
    data["mergers"].append({"successor": "000.04.20.H29", "dissolved": ["000.03.20.H29"], "procedures": "all"})
    assert ("mergers[1] 000.04.20.H29: dissolved: 000.03.20.H29 is merged twice: mergers[0] 000.90.20.H29 "
            "dissolves it already") in issues(data)


def test_kinds_and_unknown_successors():
    data = merger(m_successor="000.00.20.H29")
    del data["mergers"][0]["unit"]
    assert ("mergers[0] 000.00.20.H29: successor: 000.00.20.H29 is district; the ward it takes over needs a "
            "successor of kind ward") in issues(data)
    data = merger()
    del data["mergers"][0]["unit"]
    assert ("mergers[0] 000.90.20.H29: successor: no unit has the code 000.90.20.H29: give its catalogue entry "
            "under unit") in issues(data)
    data = merger(m_unit={**NEW, "code": "000.91.20.H29", "colour": "red"})
    found = issues(data)
    assert any(f.startswith("mergers[0] 000.90.20.H29: unit.colour: unknown key") for f in found)
    assert issues({"name": "x", "mergers": [], "when": 1}) == [
        "reorganisation: when: unknown key; a reorganisation has the keys name, effective_from, mergers, source",
        "reorganisation: effective_from: missing",
        "reorganisation: mergers: must have at least 1 item"]


def test_applied_again_it_checks_clean_and_adds_nothing_but_other_facts_are_refused():
    after = dict(UNITS)
    after["000.90.20.H29"] = unit("000.90.20.H29", name=NEW["name"], short_name=NEW["short_name"])
    for code in ("000.01.20.H29", "000.03.20.H29"):
        after[code] = {**UNITS[code], "dissolved_on": "2026-03-02", "successor": "000.90.20.H29"}
    plan = parse_reorganisation(merger(), after, {"2.000815"})
    assert plan.new_units == ()
    assert ("mergers[0] 000.90.20.H29: dissolved: 000.01.20.H29 was already dissolved on 2026-03-02 into "
            "000.90.20.H29") in issues(merger(effective_from="2026-04-01"), after)


def test_a_dissolved_desk_receives_until_the_day_before_and_not_from_the_day():
    ward = {**UNITS["000.01.20.H29"], "dissolved_on": "2026-03-02", "successor": "000.90.20.H29"}
    assert dissolved(ward, date(2026, 3, 1)) is None
    assert dissolved(ward, date(2026, 3, 2)) == "000.90.20.H29"
    assert dissolved(UNITS["000.03.20.H29"], date(2030, 1, 1)) is None


def test_the_go_vap_example_checks_against_the_shipped_catalogue():
    from dataclasses import asdict

    from services.catalog.domain import parse_catalogue

    catalogue = parse_catalogue(yaml.safe_load((ROOT / "services/catalog/data/catalogue.yml").read_text()))
    units = {u.code: {**asdict(u), "dissolved_on": None, "successor": None} for u in catalogue.units}
    path = ROOT / "services/catalog/data/reorganisations/2025-07-01-go-vap.yml"
    plan = parse_reorganisation(yaml.safe_load(path.read_text()), units, {p.code for p in catalogue.procedures})
    assert plan.reorganisation.effective_from == date(2025, 7, 1)


def test_the_command_checks_a_file_and_names_file_entry_field_and_reason(tmp_path, capsys):
    from apps.cli import main

    path = tmp_path / "merger.yml"
    path.write_text(yaml.safe_dump(merger(m_dissolved=["000.03.20.H29", "000.77.20.H29"]), allow_unicode=True))
    assert main(["reorganise", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert (f"{path}: mergers[0] 000.90.20.H29: dissolved[1]: no unit has the code 000.77.20.H29 in the "
            "catalogue") in err
    assert f"{path}: 1 error(s); nothing applied" in err
    path.write_text(yaml.safe_dump(merger(), allow_unicode=True))
    assert main(["reorganise", "check", str(path)]) == 0
    assert "000.01.20.H29, 000.03.20.H29 -> 000.90.20.H29 (1 new unit(s)): valid" in capsys.readouterr().out
