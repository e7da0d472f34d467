"""The catalogue's read model without a database or a broker: the in-force rule, the local date of
``at``, and the memory in front of a service's copy (against an in-memory fake of the copy)."""
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st
from prometheus_client import REGISTRY

from motcua.contracts.events import new_event
from motcua.runtime import catalogue
from motcua.runtime.catalogue import Catalogue, Memory, in_force, local_day

SERVICE = "catalogue_unit_test"
DISTRICT = "000.00.20.H29"

versions_strategy = st.lists(st.tuples(st.dates(date(2020, 1, 1), date(2030, 12, 31)),
                                       st.integers(1, 50)), unique_by=lambda v: v[1], max_size=12)
days = st.dates(date(2019, 1, 1), date(2031, 12, 31))


# --- the in-force rule ---------------------------------------------------------------------------

@given(versions_strategy, days)
def test_in_force_is_the_catalogs_order_latest_date_then_latest_version(versions, day):
    # services/catalog/store.py: effective_from <= at, ORDER BY effective_from DESC, version DESC, first row
    ordered = sorted((v for v in versions if v[0] <= day), key=lambda v: (v[0], v[1]), reverse=True)
    assert in_force(versions, day) == (ordered[0][1] if ordered else None)


@given(versions_strategy, days)
def test_nothing_is_in_force_before_the_first_effective_date(versions, day):
    assert (in_force(versions, day) is None) == all(effective > day for effective, _ in versions)


@given(versions_strategy, days, st.integers(0, 400))
def test_a_later_day_never_goes_back_to_an_earlier_effective_date(versions, day, later):
    effective = {version: when for when, version in versions}
    first, then = in_force(versions, day), in_force(versions, day + timedelta(days=later))
    if first is not None:
        assert then is not None and effective[then] >= effective[first]


def test_two_versions_of_one_date_the_later_number_wins():
    versions = [(date(2026, 1, 1), 1), (date(2027, 1, 1), 2), (date(2026, 1, 1), 3)]
    assert in_force(versions, date(2026, 6, 1)) == 3
    assert in_force(versions, date(2027, 1, 1)) == 2
    assert in_force(versions, date(2025, 12, 31)) is None


def test_at_is_read_as_the_catalog_reads_it():
    assert local_day("2026-02-13") == date(2026, 2, 13)
    assert local_day("2026-02-13T23:30") == date(2026, 2, 13)                 # no zone: local time
    assert local_day("2026-02-13T18:00:00+00:00") == date(2026, 2, 14)        # 01:00 in Hà Nội
    assert local_day(None, now=datetime(2026, 2, 12, 17, 30, tzinfo=timezone.utc)) == date(2026, 2, 13)
    assert local_day("", now=datetime(2026, 2, 12, 16, 30, tzinfo=timezone.utc)) == date(2026, 2, 12)
    with pytest.raises(ValueError, match="^at: must be an ISO date"):
        local_day("13/02/2026")


# --- the memory in front of the copy -------------------------------------------------------------

class FakeCopy:
    """The service's tables as dicts, counting the reads; ``keep`` records event ids like the inbox."""

    def __init__(self):
        self.procedures: dict[tuple[str, int], dict] = {}
        self.units: dict[str, dict] = {}
        self.seen: set[str] = set()
        self.reads = 0

    def version(self, code, version):
        self.reads += 1
        return self.procedures.get((code, version))

    def versions(self, code):
        self.reads += 1
        return [(date.fromisoformat(b["effective_from"]), v) for (c, v), b in self.procedures.items() if c == code]

    def unit(self, code):
        self.reads += 1
        return self.units.get(code)

    def keep(self, envelope, procedures, units):
        if envelope.id in self.seen:
            return False
        self.seen.add(envelope.id)
        for body in procedures:
            self.procedures.setdefault((body["code"], body["version"]), body)
        for body in units:
            self.units[body["code"]] = body
        return True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def procedure(code="1.001193", version=1, effective_from="2026-01-01", amount=50000):
    return {"code": code, "version": version, "effective_from": effective_from,
            "published_at": "2025-12-20T08:00:00+00:00", "name": "Đăng ký khai sinh",
            "fees": [{"amount": amount}]}


def published(body):
    return new_event("catalog.procedure_published", {
        "code": body["code"], "version": body["version"], "effective_from": body["effective_from"],
        "name": body["name"], "field": "Hộ tịch", "level": "ward", "time_limit": "1 working day",
        "procedure": body}, DISTRICT, version=2)


def units_published(*units):
    return new_event("catalog.units_published", {"units": list(units)}, DISTRICT)


@pytest.fixture
def setup():
    local, clock = FakeCopy(), Clock()
    return Catalogue(local, SERVICE, Memory(seconds=60, clock=clock)), local, clock


def lookups(kind, outcome):
    return REGISTRY.get_sample_value("motcua_catalogue_lookups_total",
                                     {"service": SERVICE, "kind": kind, "outcome": outcome}) or 0.0


def test_a_version_is_read_once_then_answered_from_memory_for_good(setup):
    catalog, local, clock = setup
    local.procedures["1.001193", 1] = procedure()
    hits, misses = lookups("procedure_version", "hit"), lookups("procedure_version", "miss")
    assert catalog.get_procedure("1.001193", version=1) == procedure()
    clock.now += 10 ** 6                                        # published versions never change
    assert catalog.get_procedure("1.001193", version=1) == procedure()
    assert local.reads == 1
    assert (lookups("procedure_version", "hit") - hits, lookups("procedure_version", "miss") - misses) == (1, 1)


def test_what_is_not_there_is_read_again(setup):
    catalog, local, _ = setup
    assert catalog.get_procedure("1.001193", version=1) is None
    assert catalog.get_unit(DISTRICT) is None
    local.procedures["1.001193", 1] = procedure()
    local.units[DISTRICT] = {"code": DISTRICT, "name": "Quận"}
    assert catalog.get_procedure("1.001193", version=1)["version"] == 1
    assert catalog.get_unit(DISTRICT)["name"] == "Quận"


def test_the_version_in_force_follows_the_date_and_new_versions(setup):
    catalog, local, clock = setup
    local.procedures["1.001193", 1] = procedure()
    assert catalog.get_procedure("1.001193", at="2026-12-31T10:00:00+07:00")["version"] == 1
    assert catalog.get_procedure("1.001193", at="2025-12-31") is None
    # A new version published through an event: this process reads the versions again at once.
    assert catalog.apply(published(procedure(version=2, effective_from="2027-01-01", amount=60000)))
    assert catalog.get_procedure("1.001193", at="2026-12-31")["version"] == 1
    assert catalog.get_procedure("1.001193", at="2027-01-01T08:00")["fees"] == [{"amount": 60000}]
    # One another replica kept (straight into the tables): seen once CATALOGUE_CACHE_SECONDS pass.
    local.procedures["1.001193", 3] = procedure(version=3, effective_from="2027-01-01", amount=70000)
    assert catalog.get_procedure("1.001193", at="2027-02-01")["version"] == 2
    clock.now += 60
    assert catalog.get_procedure("1.001193", at="2027-02-01")["version"] == 3


def test_which_versions_exist_is_remembered_for_the_configured_seconds(setup):
    catalog, local, clock = setup
    local.procedures["1.001193", 1] = procedure()
    hits = lookups("procedure_in_force", "hit")
    catalog.get_procedure("1.001193", at="2026-06-01")
    reads = local.reads
    catalog.get_procedure("1.001193", at="2026-06-02")
    assert local.reads == reads and lookups("procedure_in_force", "hit") - hits == 1
    clock.now += 59.9
    catalog.get_procedure("1.001193", at="2026-06-02")
    assert local.reads == reads
    clock.now += 0.2
    catalog.get_procedure("1.001193", at="2026-06-02")
    assert local.reads == reads + 1


def test_a_unit_is_remembered_for_the_configured_seconds_and_an_event_replaces_it(setup):
    catalog, local, clock = setup
    local.units[DISTRICT] = {"code": DISTRICT, "name": "Quận 1"}
    assert catalog.get_unit(DISTRICT)["name"] == "Quận 1"
    local.units[DISTRICT] = {"code": DISTRICT, "name": "changed behind its back"}
    assert catalog.get_unit(DISTRICT)["name"] == "Quận 1"
    clock.now += 61
    assert catalog.get_unit(DISTRICT)["name"] == "changed behind its back"
    assert catalog.apply(units_published({"code": DISTRICT, "name": "Quận Một"}))
    assert catalog.get_unit(DISTRICT)["name"] == "Quận Một"


def test_a_redelivered_event_changes_nothing(setup):
    catalog, local, _ = setup
    event = units_published({"code": DISTRICT, "name": "Quận 1"})
    assert catalog.apply(event) is True
    local.units[DISTRICT] = {"code": DISTRICT, "name": "a later word"}
    assert catalog.apply(event) is False
    assert local.units[DISTRICT]["name"] == "a later word"


def test_version_1_of_procedure_published_carries_no_body_and_is_passed_over(setup):
    catalog, local, _ = setup
    event = new_event("catalog.procedure_published", {
        "code": "1.001193", "version": 1, "effective_from": "2026-01-01", "name": "Đăng ký khai sinh",
        "field": "Hộ tịch", "level": "ward", "time_limit": "1 working day"}, DISTRICT)
    assert catalog.apply(event) is False
    assert local.procedures == {} and local.seen == set()


def test_changing_an_answer_does_not_change_the_next_one(setup):
    catalog, local, _ = setup
    local.procedures["1.001193", 1] = procedure()
    local.units[DISTRICT] = {"code": DISTRICT, "contact": {"phone": "0243"}}
    for _ in range(2):
        catalog.get_procedure("1.001193", version=1)["fees"][0]["amount"] = 0
        catalog.get_unit(DISTRICT)["contact"]["phone"] = "changed"
    assert catalog.get_procedure("1.001193", version=1)["fees"] == [{"amount": 50000}]
    assert catalog.get_unit(DISTRICT)["contact"] == {"phone": "0243"}


def test_past_max_entries_the_least_recently_used_version_is_forgotten(setup, monkeypatch):
    monkeypatch.setattr(catalogue, "MAX_ENTRIES", 2)
    catalog, local, _ = setup
    for version in (1, 2, 3):
        local.procedures["1.001193", version] = procedure(version=version)
    for version in (1, 2, 1, 3):        # 1 is used again, so 3 pushes out 2
        catalog.get_procedure("1.001193", version=version)
    assert local.reads == 3
    catalog.get_procedure("1.001193", version=1)
    catalog.get_procedure("1.001193", version=3)
    assert local.reads == 3
    catalog.get_procedure("1.001193", version=2)
    assert local.reads == 4


def test_a_look_up_in_an_empty_copy_waits_for_the_first_fill():
    import eventlet
    from eventlet.event import Event
    local, first_fill = FakeCopy(), Event()
    catalog = Catalogue(local, SERVICE, Memory(), first_fill, first_fill_wait=5)

    def bootstrap():
        eventlet.sleep(0.05)
        local.units[DISTRICT] = {"code": DISTRICT, "name": "Quận 1"}
        first_fill.send(True)

    eventlet.spawn(bootstrap)
    assert catalog.get_unit(DISTRICT)["name"] == "Quận 1"
    # Once the first fill is over (done or failed), a miss is answered at once.
    assert catalog.get_unit("999.99.99.H99") is None
