"""What a caller remembers of the catalogue, over real RabbitMQ: published versions for good,
units for ``CATALOGUE_CACHE_SECONDS``, the version in force never; and only answers that exist."""
from collections import Counter

import eventlet
import pytest
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from prometheus_client import REGISTRY

from motcua.runtime import catalogue
from motcua.runtime.catalogue import CatalogueProxy

CALLER = "catalogue_caller"
calls = Counter()           # (method, code) -> RPC calls the fake catalogue answered
known = set()               # codes the fake catalogue knows


class FakeCatalog:
    """A stand-in catalogue that counts the calls it answers."""
    name = "catalog"

    @rpc
    def get_procedure(self, code, at=None, version=None):
        calls["get_procedure", code] += 1
        if code not in known:
            return None
        return {"code": code, "version": version or 1, "at": at, "fees": [{"amount": 50000}]}

    @rpc
    def get_unit(self, code):
        calls["get_unit", code] += 1
        return {"code": code, "name": f"Unit {code}", "contact": {"phone": "0243"}} if code in known else None


class Caller:
    name = CALLER
    catalog = CatalogueProxy()

    @rpc
    def procedure(self, code, at=None, version=None):
        return self.catalog.get_procedure(code, at=at, version=version)

    @rpc
    def unit(self, code):
        return self.catalog.get_unit(code)

    @rpc
    def meddle(self, code, version):
        """Changes its answers in place, as a careless caller might, then asks once more."""
        for _ in range(2):
            self.catalog.get_procedure(code, version=version)["fees"][0]["amount"] = 0
            self.catalog.get_unit(code)["contact"]["phone"] = "changed"
        return self.catalog.get_procedure(code, version=version), self.catalog.get_unit(code)


def lookups(kind, outcome):
    return REGISTRY.get_sample_value("motcua_catalogue_lookups_total",
                                     {"service": CALLER, "kind": kind, "outcome": outcome})


@pytest.fixture
def start_caller(container_factory, rabbit_config):
    """Starts the fake catalogue and a caller (config overrides given); yields the caller's proxy."""
    calls.clear()
    known.clear()
    known.update({"1.001193", "2.000815", "000.00.20.H29"})
    proxies = []

    def start(**config):
        config = {**rabbit_config, **config}
        for service_cls in (FakeCatalog, Caller):
            container_factory(service_cls, config).start()
        proxy = ServiceRpcProxy(CALLER, config, timeout=10)
        proxies.append(proxy)
        return proxy.start()

    yield start
    for proxy in proxies:
        proxy.stop()


def test_a_published_version_is_asked_once(start_caller):
    caller = start_caller()
    hits, misses = lookups("procedure_version", "hit"), lookups("procedure_version", "miss")
    first = caller.procedure("1.001193", version=2)
    assert caller.procedure("1.001193", version=2) == first == {
        "code": "1.001193", "version": 2, "at": None, "fees": [{"amount": 50000}]}
    assert calls["get_procedure", "1.001193"] == 1
    # another version is another answer
    assert caller.procedure("1.001193", version=1)["version"] == 1
    assert calls["get_procedure", "1.001193"] == 2
    assert lookups("procedure_version", "hit") - hits == 1
    assert lookups("procedure_version", "miss") - misses == 2


def test_the_version_in_force_is_always_asked(start_caller):
    """A newly published version may take effect now: ``at`` is never answered from memory."""
    caller = start_caller()
    hits, misses = lookups("procedure_version", "hit"), lookups("procedure_version", "miss")
    for _ in range(3):
        assert caller.procedure("2.000815", at="2026-12-01")["at"] == "2026-12-01"
    assert caller.procedure("2.000815")["at"] is None
    assert calls["get_procedure", "2.000815"] == 4
    assert (lookups("procedure_version", "hit"), lookups("procedure_version", "miss")) == (hits, misses)


def test_an_unknown_code_is_asked_again(start_caller):
    """None means not published yet: once the catalogue knows the code, the caller hears of it."""
    caller = start_caller()
    assert caller.procedure("9.999999", version=1) is None
    assert caller.unit("999.99.99.H99") is None
    known.update({"9.999999", "999.99.99.H99"})
    assert caller.procedure("9.999999", version=1)["code"] == "9.999999"
    assert caller.unit("999.99.99.H99")["code"] == "999.99.99.H99"
    assert (calls["get_procedure", "9.999999"], calls["get_unit", "999.99.99.H99"]) == (2, 2)


def test_changing_an_answer_does_not_change_the_next_one(start_caller):
    caller = start_caller()
    procedure, unit = caller.meddle("000.00.20.H29", 1)
    assert procedure["fees"] == [{"amount": 50000}]
    assert unit["contact"] == {"phone": "0243"}
    assert (calls["get_procedure", "000.00.20.H29"], calls["get_unit", "000.00.20.H29"]) == (1, 1)


def test_a_unit_is_remembered_for_catalogue_cache_seconds(start_caller):
    caller = start_caller(CATALOGUE_CACHE_SECONDS=0.2)
    hits, misses = lookups("unit", "hit"), lookups("unit", "miss")
    assert caller.unit("000.00.20.H29") == caller.unit("000.00.20.H29")
    assert calls["get_unit", "000.00.20.H29"] == 1
    eventlet.sleep(0.3)
    assert caller.unit("000.00.20.H29")["name"] == "Unit 000.00.20.H29"
    assert calls["get_unit", "000.00.20.H29"] == 2
    assert (lookups("unit", "hit") - hits, lookups("unit", "miss") - misses) == (1, 2)


def test_past_max_entries_the_least_recently_used_answer_is_forgotten(start_caller, monkeypatch):
    monkeypatch.setattr(catalogue, "MAX_ENTRIES", 2)
    caller = start_caller()
    caller.procedure("1.001193", version=1)
    caller.procedure("1.001193", version=2)
    caller.procedure("1.001193", version=1)        # a hit: version 1 is now the most recent
    caller.procedure("1.001193", version=3)        # pushes out version 2, the least recently used
    assert calls["get_procedure", "1.001193"] == 3
    caller.procedure("1.001193", version=1)
    caller.procedure("1.001193", version=3)
    assert calls["get_procedure", "1.001193"] == 3
    caller.procedure("1.001193", version=2)
    assert calls["get_procedure", "1.001193"] == 4


def test_refreshing_a_unit_forgets_nothing_else(start_caller, monkeypatch):
    """An expired unit fetched again takes its own place, not another entry's."""
    monkeypatch.setattr(catalogue, "MAX_ENTRIES", 2)
    caller = start_caller(CATALOGUE_CACHE_SECONDS=0.2)
    caller.unit("000.00.20.H29")
    eventlet.sleep(0.3)
    caller.unit("1.001193")
    caller.unit("000.00.20.H29")                   # expired: asked again, stored in its own place
    caller.unit("1.001193")                        # still remembered
    assert (calls["get_unit", "000.00.20.H29"], calls["get_unit", "1.001193"]) == (2, 1)
