"""The catalog service in a real nameko container: RPC, versions, events through the outbox."""
import copy
from pathlib import Path

import pytest
import yaml
from nameko.standalone.rpc import ServiceRpcProxy
from sqlalchemy import text

from services.catalog.service import CatalogService

CATALOGUE = Path(__file__).resolve().parents[2] / "services" / "catalog" / "data" / "catalogue.yml"


@pytest.fixture(scope="module")
def catalogue_data():
    return yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))


@pytest.fixture
def catalog(container_factory, service_config, engine):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE catalog.units, catalog.procedure_versions, catalog.outbox"))
    container = container_factory(CatalogService, service_config)
    container.start()
    with ServiceRpcProxy("catalog", service_config) as proxy:
        yield proxy


def entry(data, code):
    return next(p for p in data["procedures"] if p["code"] == code)


def test_publishing_the_catalogue_publishes_every_procedure_once(catalog, catalogue_data, event_tap):
    tap = event_tap("catalog.procedure_published")
    report = catalog.publish(catalogue_data)
    assert len(report["published"]) == len(catalogue_data["procedures"])
    assert {p["version"] for p in report["published"]} == {1}
    events = tap.drain(expect=len(report["published"]))
    assert sorted(e["payload"]["code"] for e in events) == sorted(p["code"] for p in catalogue_data["procedures"])
    assert {e["unit"] for e in events} == {"000.00.20.H29"}
    # The same file again changes nothing and publishes nothing: once a change published after it
    # (the marker) has arrived, nothing came before it (the relay publishes in the outbox's order).
    again = catalog.publish(catalogue_data)
    assert again["published"] == [] and again["unchanged"] == len(catalogue_data["procedures"])
    changed = copy.deepcopy(catalogue_data)
    marker = changed["procedures"][0]
    marker["name"] += " (sửa)"
    assert [p["code"] for p in catalog.publish(changed)["published"]] == [marker["code"]]
    assert [(e["payload"]["code"], e["payload"]["version"]) for e in tap.drain(expect=1, settle=0)] == \
        [(marker["code"], 2)]


def test_a_change_is_a_new_version_and_every_version_stays_readable(catalog, catalogue_data):
    catalog.publish(catalogue_data)
    changed = copy.deepcopy(catalogue_data)
    future = copy.deepcopy(entry(changed, "2.000815"))
    future["effective_from"] = "2027-01-01"
    future["fees"][0]["cap_per_copy"] = 250000
    changed["procedures"].append(future)
    report = catalog.publish(changed)
    assert report["published"] == [{"code": "2.000815", "version": 2}]

    before = catalog.get_procedure("2.000815", at="2026-12-31")
    after = catalog.get_procedure("2.000815", at="2027-01-01T08:00")
    assert (before["version"], before["fees"][0]["cap_per_copy"]) == (1, 200000)
    assert (after["version"], after["fees"][0]["cap_per_copy"]) == (2, 250000)
    assert catalog.get_procedure("2.000815", version=1)["fees"][0]["cap_per_copy"] == 200000
    # Before the first version took effect nothing was in force.
    assert catalog.get_procedure("2.000815", at="2000-01-01") is None


def test_a_bad_catalogue_loads_nothing(catalog, catalogue_data):
    bad = copy.deepcopy(catalogue_data)
    entry(bad, "2.000815")["fees"][0]["tiers"][0]["amount"] = 2000.5
    entry(bad, "1.001193")["handling_agency"] = "000.99.20.H29"
    with pytest.raises(Exception) as raised:
        catalog.publish(bad)
    message = str(raised.value)
    assert "2.000815" in message and "fees[0].tiers[0].amount" in message
    assert "1.001193" in message and "handling_agency" in message
    assert catalog.list_units() == []
    assert catalog.get_procedure("2.000815") is None


def test_search_by_unit_field_and_words_with_or_without_diacritics(catalog, catalogue_data):
    catalog.publish(catalogue_data)
    for query in ("khai sinh", "Đăng ký khai sinh", "dang ky KHAI SINH"):
        names = [p["name"] for p in catalog.list_procedures(q=query)]
        assert "Đăng ký khai sinh" in names, query
    ward = [p["level"] for p in catalog.list_procedures(unit="000.07.20.H29")]
    district = [p["level"] for p in catalog.list_procedures(unit="000.00.20.H29")]
    assert ward and set(ward) == {"ward"}
    assert district and set(district) == {"district"}
    fields = {p["field"] for p in catalog.list_procedures(field="Chứng thực")}
    assert fields == {"Chứng thực"}
    assert [p["code"] for p in catalog.list_procedures(q="2.000815")] == ["2.000815"]
    # A partner agency sees the procedures routed through it.
    land_registry = catalog.list_procedures(unit="000.41.20.H29")
    assert land_registry and all("000.41.20.H29" in p["handling_agency"] + str(p["steps"])
                                 for p in land_registry)


def test_units(catalog, catalogue_data):
    catalog.publish(catalogue_data)
    units = catalog.list_units()
    desks = [u for u in units if u["desk"]]
    wards = [u["short_name"] for u in units if u["kind"] == "ward"]
    assert len(desks) == 17 and len(wards) == 16 and "Phường 2" not in wards
    assert catalog.get_unit("000.00.20.H29")["admin_code"] == "764"
    assert catalog.get_unit("000.99.20.H29") is None
