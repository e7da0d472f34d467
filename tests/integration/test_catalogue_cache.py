"""A service's copy of the catalogue over real PostgreSQL and RabbitMQ: filled from the catalogue's
events, unchanged by a redelivered one, bootstrapped over RPC when it starts empty, refilled by
``motcua catalog resync``; and a look-up answered from memory or from the service's own tables."""
import copy
import json
import subprocess
import time
from pathlib import Path

import eventlet
import pytest
import yaml
from kombu import Connection, Producer
from nameko.standalone.rpc import ServiceRpcProxy
from prometheus_client import REGISTRY
from sqlalchemy import text

from motcua.runtime import broker
from motcua.runtime.catalogue import CatalogueReadModel, catalogue_consumer
from motcua.runtime.rpc import rpc
from services.catalog.service import CatalogService
from tests.conftest import ROOT

CATALOGUE = Path(__file__).resolve().parents[2] / "services" / "catalog" / "data" / "catalogue.yml"
READER = "intake"          # a stand-in with the intake's schema (its migrations made the tables)
DISTRICT = "000.00.20.H29"


class Reader:
    """Only what the real services declare for the catalogue, and RPC to look up."""
    name = READER
    catalog = CatalogueReadModel()
    catalogue_events = catalogue_consumer()

    @rpc
    def procedure(self, code, at=None, version=None):
        return self.catalog.get_procedure(code, at=at, version=version)

    @rpc
    def unit(self, code):
        return self.catalog.get_unit(code)


@pytest.fixture(scope="module")
def catalogue_data():
    return yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))


def _truncate(engine):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE catalog.units, catalog.procedure_versions, catalog.outbox"))
        connection.execute(text(f"TRUNCATE {READER}.catalogue_procedures, {READER}.catalogue_units, "
                                f"{READER}.processed_events"))


@pytest.fixture
def empty(engine):
    _truncate(engine)
    yield
    _truncate(engine)          # the versions made up here must not reach a later test's intake


@pytest.fixture
def catalog(empty, container_factory, service_config):
    container_factory(CatalogService, service_config).start()
    with ServiceRpcProxy("catalog", service_config, timeout=20) as proxy:
        yield proxy


@pytest.fixture
def start_reader(container_factory, service_config):
    proxies = []

    def start(**config):
        container = container_factory(Reader, {**service_config, **config})
        container.start()
        proxy = ServiceRpcProxy(READER, service_config, timeout=20)
        proxies.append(proxy)
        return proxy.start()

    yield start
    for proxy in proxies:
        proxy.stop()


def counts(engine):
    with engine.connect() as connection:
        return tuple(connection.execute(text(f"SELECT count(*) FROM {READER}.{table}")).scalar()
                     for table in ("catalogue_procedures", "catalogue_units", "processed_events"))


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        eventlet.sleep(0.1)
    raise AssertionError("not in time")


def lookups(kind, outcome):
    return REGISTRY.get_sample_value("motcua_catalogue_lookups_total",
                                     {"service": READER, "kind": kind, "outcome": outcome}) or 0.0


def test_a_published_catalogue_fills_the_copy_from_its_events(catalog, start_reader, engine, catalogue_data):
    reader = start_reader()
    assert reader.procedure("2.000815", at="2026-02-13") is None          # nothing published yet
    catalog.publish(catalogue_data)
    procedures, units = len(catalogue_data["procedures"]), len(catalogue_data["units"])
    # one event per procedure version and one for the units, each kept once through the inbox
    wait_for(lambda: counts(engine) == (procedures, units, procedures + 1))
    assert reader.procedure("2.000815", at="2026-02-13") == catalog.get_procedure("2.000815", at="2026-02-13")
    assert reader.unit(DISTRICT) == catalog.get_unit(DISTRICT)

    # A new version reaches the copy and the reader's answer at once (this replica kept it).
    changed = copy.deepcopy(catalogue_data)
    future = copy.deepcopy(next(p for p in changed["procedures"] if p["code"] == "2.000815"))
    future["effective_from"], future["fees"][0]["cap_per_copy"] = "2027-01-01", 250000
    changed["procedures"].append(future)
    catalog.publish(changed)
    wait_for(lambda: counts(engine)[0] == procedures + 1)
    assert reader.procedure("2.000815", at="2026-12-31")["version"] == 1
    assert reader.procedure("2.000815", at="2027-01-01T08:00")["fees"][0]["cap_per_copy"] == 250000
    assert reader.procedure("2.000815", version=2) == catalog.get_procedure("2.000815", version=2)


def test_a_redelivered_event_changes_nothing(catalog, start_reader, engine, catalogue_data, rabbit_config):
    start_reader()
    catalog.publish(catalogue_data)
    procedures, units = len(catalogue_data["procedures"]), len(catalogue_data["units"])
    wait_for(lambda: counts(engine) == (procedures, units, procedures + 1))
    with engine.connect() as connection:
        envelope = connection.execute(text(
            "SELECT envelope FROM catalog.outbox WHERE type = 'catalog.units_published'")).scalar_one()
        before = connection.execute(text(f"SELECT body FROM {READER}.catalogue_units WHERE code = :c"),
                                    {"c": DISTRICT}).scalar_one()
    # The same event again (same id), its content altered as a stale copy's could be.
    for unit in envelope["payload"]["units"]:
        unit["name"] = "should not be kept"
    duplicates = REGISTRY.get_sample_value("motcua_events_duplicate_total",
                                           {"service": READER, "type": "catalog.units_published"}) or 0.0
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        Producer(connection.default_channel, exchange=broker.events_exchange).publish(
            json.dumps(envelope), routing_key="catalog.units_published", content_type="application/json",
            content_encoding="utf-8", message_id=envelope["id"], delivery_mode=2)
    wait_for(lambda: (REGISTRY.get_sample_value("motcua_events_duplicate_total",
                                                {"service": READER, "type": "catalog.units_published"})
                      or 0.0) == duplicates + 1)
    assert counts(engine) == (procedures, units, procedures + 1)
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT body FROM {READER}.catalogue_units WHERE code = :c"),
                                  {"c": DISTRICT}).scalar_one() == before


def test_a_service_that_starts_empty_fills_its_copy_from_the_catalogue(catalog, start_reader, engine,
                                                                       catalogue_data):
    catalog.publish(catalogue_data)      # before the reader's queue exists: its events never reach it
    reader = start_reader()
    # the first look-up waits for the bootstrap, which asked the catalogue over RPC
    assert reader.procedure("1.001193", at="2026-02-13") == catalog.get_procedure("1.001193", at="2026-02-13")
    assert counts(engine)[:2] == (len(catalogue_data["procedures"]), len(catalogue_data["units"]))
    # answered from memory once read from the tables
    hits, misses = lookups("procedure_version", "hit"), lookups("procedure_version", "miss")
    version = reader.procedure("1.001193", at="2026-02-13")["version"]
    for _ in range(3):
        assert reader.procedure("1.001193", version=version)["code"] == "1.001193"
    assert (lookups("procedure_version", "hit") - hits, lookups("procedure_version", "miss") - misses) == (4, 0)


def test_resync_refills_a_copy_from_the_catalogues_tables_idempotently(catalog, engine, catalogue_data,
                                                                       cli_env, motcua_cmd):
    catalog.publish(catalogue_data)
    procedures, units = len(catalogue_data["procedures"]), len(catalogue_data["units"])

    def resync(*names):
        return subprocess.run([*motcua_cmd, "catalog", "resync", *names], env=cli_env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    first = resync(READER)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"{READER}: {procedures} procedure versions added")
    assert counts(engine)[:2] == (procedures, units)
    again = resync(READER)
    assert again.returncode == 0 and again.stdout.startswith(f"{READER}: 0 procedure versions added")
    assert counts(engine)[:2] == (procedures, units)
    refused = resync("catalog")
    assert refused.returncode == 2 and "keeps no copy of the catalogue" in refused.stderr


def test_while_the_catalogue_cannot_answer_the_bootstrap_keeps_trying(empty, start_reader, engine,
                                                                      container_factory, service_config,
                                                                      catalogue_data, monkeypatch):
    """No catalog service at first: the reader starts, answers what its (empty) tables hold at once,
    and fills its copy over RPC once the catalogue answers. The catalogue's relay is off, so no
    event can be what filled it."""
    from motcua.runtime import catalogue
    monkeypatch.setattr(catalogue, "BOOTSTRAP_RPC_TIMEOUT", 1.0)
    monkeypatch.setattr(catalogue, "BOOTSTRAP_MAX_PAUSE", 1.0)
    reader = start_reader()
    started = time.monotonic()
    assert reader.unit(DISTRICT) is None
    assert time.monotonic() - started < 5
    container_factory(CatalogService, {**service_config, "OUTBOX_RELAY": False}).start()
    with ServiceRpcProxy("catalog", service_config, timeout=20) as catalog:
        catalog.publish(catalogue_data)
        wait_for(lambda: counts(engine)[:2] == (len(catalogue_data["procedures"]),
                                                 len(catalogue_data["units"])), timeout=30)
        assert counts(engine)[2] == 0          # no event was kept: the bootstrap filled it
        assert reader.unit(DISTRICT) == catalog.get_unit(DISTRICT)
