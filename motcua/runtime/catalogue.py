"""The catalogue as the other services read it: a local read model, kept from the catalogue's events.

Intake, routing, fees and notify keep their own copy of the catalogue in their own schema
(``catalogue_tables``: every published procedure version, whole, and every unit) and answer a
look-up from it, with a memory in the process on top: no network call on a look-up, so a desk
keeps working while the broker (or the catalog service) is down, and no look-up waits on the
network inside an open transaction.

- Kept from events: ``catalog.procedure_published`` (version 2 carries the whole version) and
  ``catalog.units_published`` (every unit), consumed through the platform's inbox (a redelivery
  changes nothing). A service declares the consumer in one line: ``catalogue_events = catalogue_consumer()``.
- Bootstrap: a service whose copy is empty at start asks the catalogue over RPC for everything
  (outside any transaction), and keeps trying in the background while it cannot; ``motcua catalog
  resync`` refills a copy from the catalogue's own tables.
- Memory: a published version never changes, so ``(code, version)`` is remembered for good. Which
  versions of a code exist and the units may change (a new catalogue loaded): they are remembered
  for ``CATALOGUE_CACHE_SECONDS`` (default 60), because the event that changes them reaches only one
  replica of a service (the others read the tables again once that time has passed).
- In force at an instant: the latest version whose effective date is on or before that instant's
  local date (Asia/Ho_Chi_Minh), the latest version number among those of one date: exactly the
  catalog service's rule (``services/catalog/store.py`` ``_in_force``).
"""
from __future__ import annotations

import copy
import time
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Iterable

import eventlet
import structlog
from eventlet.event import Event
from nameko.extensions import DependencyProvider
from prometheus_client import Counter
from sqlalchemy import Column, Date, DateTime, Integer, MetaData, PrimaryKeyConstraint, Table, Text, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from motcua.contracts.calendar import TZ, local_date
from motcua.contracts.events import Envelope
from motcua.runtime import broker
from motcua.runtime.db import autocommit, database_url, make_engine, service_metadata
from motcua.runtime.inbox import EventConsumer, first_time, inbox_table

log = structlog.get_logger("motcua.runtime.catalogue")

LOOKUPS = Counter("motcua_catalogue_lookups_total", "Catalogue look-ups by a service, answered from its "
                  "memory (hit) or read from its local copy of the catalogue (miss).",
                  ["service", "kind", "outcome"])
KINDS = ("procedure_version", "procedure_in_force", "unit")
UNIT_SECONDS = 60.0
MAX_ENTRIES = 4096        # far more than a catalogue has; a bound all the same (least recently used go)
BOOTSTRAP_RPC_TIMEOUT = 30.0
BOOTSTRAP_MAX_PAUSE = 30.0
# A look-up that finds nothing while the first bootstrap is still under way waits for it this long
# (a service answering requests a moment after it started, before its copy was filled).
FIRST_FILL_WAIT = 15.0
EVENT_TYPES = ("catalog.procedure_published", "catalog.units_published")


# --- the tables ------------------------------------------------------------------------------

def catalogue_tables(metadata: MetaData) -> tuple[Table, Table]:
    """A service's copy of the catalogue: ``(catalogue_procedures, catalogue_units)``."""
    procedures = Table(
        "catalogue_procedures", metadata,
        Column("code", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("effective_from", Date, nullable=False),
        Column("body", JSONB, nullable=False),      # what the catalogue answers for this version
        PrimaryKeyConstraint("code", "version"),
    )
    units = Table(
        "catalogue_units", metadata,
        Column("code", Text, primary_key=True),
        Column("body", JSONB, nullable=False),
        # When the catalogue said so: an older word (a late redelivery) never overwrites a newer one.
        Column("as_of", DateTime(timezone=True), nullable=False),
    )
    return procedures, units


@lru_cache(maxsize=None)
def tables_of(service: str) -> tuple[Table, Table, Table]:
    """The copy's tables and the inbox of a service, by its schema (the service's name)."""
    metadata = service_metadata(service)
    return (*catalogue_tables(metadata), inbox_table(metadata))


def fill(connection: Connection, service: str, procedures: Iterable[dict] = (), units: Iterable[dict] = (),
         as_of: datetime | None = None) -> tuple[int, int]:
    """Write procedure versions (each as the catalogue answers it) and units into a service's copy.

    Idempotent: a version already there is left alone (published versions never change); a unit is
    replaced only by a word at least as recent. Returns (versions added, units written)."""
    procedure_table, unit_table, _ = tables_of(service)
    as_of = as_of or datetime.now(timezone.utc)
    added = written = 0
    rows = [{"code": p["code"], "version": int(p["version"]),
             "effective_from": date.fromisoformat(p["effective_from"]), "body": p} for p in procedures]
    if rows:
        added = connection.execute(insert(procedure_table).values(rows)
                                   .on_conflict_do_nothing(index_elements=["code", "version"])).rowcount
    unit_rows = [{"code": u["code"], "body": u, "as_of": as_of} for u in units]
    if unit_rows:
        statement = insert(unit_table).values(unit_rows)
        written = connection.execute(statement.on_conflict_do_update(
            index_elements=["code"], set_={"body": statement.excluded.body, "as_of": statement.excluded.as_of},
            where=unit_table.c.as_of <= statement.excluded.as_of)).rowcount
    return added, written


def is_empty(connection: Connection, service: str) -> bool:
    procedure_table, unit_table, _ = tables_of(service)
    return (connection.execute(select(procedure_table.c.code).limit(1)).first() is None
            and connection.execute(select(unit_table.c.code).limit(1)).first() is None)


# --- the rule ----------------------------------------------------------------------------------

def local_day(at: str | None, now: datetime | None = None) -> date:
    """``at`` as the catalog service reads it: an ISO date, or a date-time (local time if it has no
    zone) taken as its local date; None or "" is today."""
    if at in (None, ""):
        return local_date(now or datetime.now(TZ))
    try:
        if len(at) == 10:
            return date.fromisoformat(at)
        instant = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        raise ValueError(f"at: must be an ISO date (2026-02-13) or date-time, got {at!r}") from None
    return local_date(instant if instant.tzinfo else instant.replace(tzinfo=TZ))


def in_force(versions: Iterable[tuple[date, int]], day: date) -> int | None:
    """The version in force on ``day`` among ``(effective_from, version)``: the latest effective
    date on or before it, then the latest version of that date; None before the first."""
    candidates = [(effective, version) for effective, version in versions if effective <= day]
    return max(candidates)[1] if candidates else None


# --- the memory --------------------------------------------------------------------------------

class Memory:
    """What a process remembers of its copy: versions for good, the rest for ``seconds``.
    Bounded to ``MAX_ENTRIES`` per kind, the least recently used going first."""

    def __init__(self, seconds: float = UNIT_SECONDS, clock=time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.versions: dict[tuple[str, int], dict] = {}
        self.index: dict[str, tuple[float, list[tuple[date, int]]]] = {}
        self.units: dict[str, tuple[float, dict]] = {}

    def version(self, code: str, version: int) -> dict | None:
        return _recall(self.versions, (code, version))

    def remember_version(self, body: dict) -> None:
        _remember(self.versions, (body["code"], int(body["version"])), body)

    def versions_of(self, code: str) -> list[tuple[date, int]] | None:
        return self._fresh(self.index, code)

    def remember_versions_of(self, code: str, versions: list[tuple[date, int]]) -> None:
        _remember(self.index, code, (self.clock(), versions))

    def unit(self, code: str) -> dict | None:
        return self._fresh(self.units, code)

    def remember_unit(self, body: dict) -> None:
        _remember(self.units, body["code"], (self.clock(), body))

    def forget(self, procedure_codes: Iterable[str] = (), unit_codes: Iterable[str] = ()) -> None:
        """What this process just wrote is read again (its versions stay: they cannot change)."""
        for code in procedure_codes:
            self.index.pop(code, None)
        for code in unit_codes:
            self.units.pop(code, None)

    def forget_all(self) -> None:
        self.index.clear()
        self.units.clear()

    def _fresh(self, memory: dict, key):
        entry = _recall(memory, key)
        if entry is None:
            return None
        if self.clock() - entry[0] >= self.seconds:
            memory.pop(key, None)
            return None
        return entry[1]


def _remember(memory: dict, key, value) -> None:
    """Store (or refresh) an entry as the most recently used; past ``MAX_ENTRIES`` the least
    recently used goes (dicts keep insertion order: the first key is the least recent)."""
    memory.pop(key, None)
    if len(memory) >= MAX_ENTRIES:
        memory.pop(next(iter(memory)))
    memory[key] = value


def _recall(memory: dict, key):
    """An entry, now the most recently used; None if absent."""
    value = memory.pop(key, None)
    if value is not None:
        memory[key] = value
    return value


# --- the read model ----------------------------------------------------------------------------

class LocalCopy:
    """A service's copy of the catalogue in its own tables: reads and writes, nothing else."""

    def __init__(self, engine: Engine, service: str):
        self.engine, self.service = engine, service
        self.procedures, self.units, self.inbox = tables_of(service)

    def version(self, code: str, version: int) -> dict | None:
        t = self.procedures
        with autocommit(self.engine) as connection:     # one statement: no transaction
            return connection.execute(select(t.c.body).where(t.c.code == code, t.c.version == version)).scalar()

    def versions(self, code: str) -> list[tuple[date, int]]:
        t = self.procedures
        with autocommit(self.engine) as connection:     # one statement: no transaction
            return [tuple(row) for row in connection.execute(
                select(t.c.effective_from, t.c.version).where(t.c.code == code)).all()]

    def unit(self, code: str) -> dict | None:
        with autocommit(self.engine) as connection:     # one statement: no transaction
            return connection.execute(select(self.units.c.body).where(self.units.c.code == code)).scalar()

    def keep(self, envelope: Envelope, procedures: list[dict], units: list[dict]) -> bool:
        """Write what an event carries, with its id in the inbox, in one transaction; False if the
        event was already kept (a redelivery)."""
        with Session(self.engine) as session, session.begin():
            if not first_time(session, self.inbox, envelope):
                return False
            fill(session.connection(), self.service, procedures, units, as_of=envelope.occurred_at)
        return True


class Catalogue:
    """What a worker gets: look-ups in the service's copy through a memory, and ``apply`` for the
    catalogue's events. Answers are copies: a caller may change its dict without changing the next
    caller's."""

    def __init__(self, local: LocalCopy, service: str, memory: Memory, first_fill: Event | None = None,
                 first_fill_wait: float = FIRST_FILL_WAIT):
        self.local, self.service, self.memory = local, service, memory
        self.first_fill, self.first_fill_wait = first_fill, first_fill_wait

    def get_procedure(self, code: str, at: str | None = None, version: int | None = None) -> dict | None:
        """The exact ``version``, or the version in force at ``at`` (default today)."""
        if version is None:
            version = self._in_force(code, local_day(at))
            if version is None:
                return None
        version = int(version)
        found = self.memory.version(code, version)
        if found is not None:
            self._count("procedure_version", "hit")
            return copy.deepcopy(found)
        self._count("procedure_version", "miss")
        found = self._read(lambda: self.local.version(code, version))
        if found is None:           # not here (yet): read again next time
            return None
        self.memory.remember_version(found)
        return copy.deepcopy(found)

    def get_unit(self, code: str) -> dict | None:
        found = self.memory.unit(code)
        if found is not None:
            self._count("unit", "hit")
            return copy.deepcopy(found)
        self._count("unit", "miss")
        found = self._read(lambda: self.local.unit(code))
        if found is None:
            return None
        self.memory.remember_unit(found)
        return copy.deepcopy(found)

    def apply(self, envelope: Envelope) -> bool:
        """Keep what a catalogue event says, once (False for a redelivery or an event of no use)."""
        procedures, units = _contents(envelope)
        if not procedures and not units:
            return False
        if not self.local.keep(envelope, procedures, units):
            return False
        self.memory.forget([p["code"] for p in procedures], [u["code"] for u in units])
        return True

    def _in_force(self, code: str, day: date) -> int | None:
        versions = self.memory.versions_of(code)
        if versions is not None:
            self._count("procedure_in_force", "hit")
        else:
            self._count("procedure_in_force", "miss")
            versions = self._read(lambda: self.local.versions(code))
            if not versions:
                return None
            self.memory.remember_versions_of(code, versions)
        return in_force(versions, day)

    def _read(self, query):
        found = query()
        if not found and self.first_fill is not None and not self.first_fill.ready():
            # Started a moment ago with an empty copy: the bootstrap is filling it.
            with eventlet.Timeout(self.first_fill_wait, False):
                self.first_fill.wait()
            found = query()
        return found

    def _count(self, kind: str, outcome: str) -> None:
        LOOKUPS.labels(self.service, kind, outcome).inc()


def _contents(envelope: Envelope) -> tuple[list[dict], list[dict]]:
    """(procedure versions, units) an event carries; nothing for v1 of procedure_published (it
    lacks the body: the bootstrap or ``motcua catalog resync`` brings it) or another type."""
    if envelope.type == "catalog.procedure_published" and envelope.version >= 2:
        return [envelope.payload["procedure"]], []
    if envelope.type == "catalog.units_published":
        return [], list(envelope.payload["units"])
    return [], []


class CatalogueReadModel(DependencyProvider):
    """Declared as ``catalog = CatalogueReadModel()``: the catalogue from the service's own copy."""

    def setup(self) -> None:
        config = self.container.config
        self.service = self.container.service_name
        self.memory = Memory(float(config.get("CATALOGUE_CACHE_SECONDS", UNIT_SECONDS)))
        self.first_fill = Event()
        self.running = False
        # Its own small pool: a look-up made by a worker that holds a connection of the service's
        # pool never waits for another connection of that same pool.
        self.engine = make_engine(database_url(config), pool_size=1, max_overflow=3,
                                  application_name=f"{self.service}-catalogue")
        self.local = LocalCopy(self.engine, self.service)
        # Decided before any entry point starts: an event consumed a moment later must not make a
        # copy that holds only that event look filled.
        try:
            with self.engine.connect() as connection:
                self.empty_at_start = is_empty(connection, self.service)
        except Exception:           # database not reachable yet: filling again changes nothing
            self.empty_at_start = True
        for kind in KINDS:
            for outcome in ("hit", "miss"):
                LOOKUPS.labels(self.service, kind, outcome)

    def start(self) -> None:
        self.running = True
        self.container.spawn_managed_thread(self._bootstrap, identifier="catalogue-bootstrap")

    def stop(self) -> None:
        self.running = False
        self.first_fill.ready() or self.first_fill.send(False)
        self.engine.dispose()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx) -> Catalogue:
        return Catalogue(self.local, self.service, self.memory, self.first_fill)

    def _bootstrap(self) -> None:
        """Fill an empty copy from the catalogue over RPC; while that fails, try again later."""
        pause = 1.0
        while self.running and self.empty_at_start:
            try:
                procedures, units = self._ask_catalogue()
                with self.engine.begin() as connection:
                    added, written = fill(connection, self.service, procedures, units)
                self.memory.forget_all()
                log.info("catalogue copy filled from the catalogue", versions=added, units=written)
                break
            except Exception as error:   # broker, catalogue or database down: try again
                log.warning("catalogue copy not filled yet; retrying", retry_in_s=pause,
                            error=f"{type(error).__name__}: {error}"[:300])
                self.first_fill.ready() or self.first_fill.send(False)   # look-ups stop waiting for it
                eventlet.sleep(pause)
                pause = min(pause * 2, BOOTSTRAP_MAX_PAUSE)
        self.first_fill.ready() or self.first_fill.send(True)

    def _ask_catalogue(self) -> tuple[list[dict], list[dict]]:
        from nameko.standalone.rpc import ClusterRpcProxy
        config = {**self.container.config, "AMQP_URI": broker.amqp_uri(self.container.config)}
        with ClusterRpcProxy(config, timeout=BOOTSTRAP_RPC_TIMEOUT) as cluster:
            return cluster.catalog.list_procedure_versions(), cluster.catalog.list_units()


class CatalogueEventConsumer(EventConsumer):
    """Every ``catalog.*`` event on one durable queue of the service, ``<service>.<method>``."""

    def accepts(self, event_type: str) -> bool:
        return event_type.startswith("catalog.")


def catalogue_consumer():
    """The entry point that keeps a service's copy: ``catalogue_events = catalogue_consumer()``
    on the service class (beside ``catalog = CatalogueReadModel()``)."""

    @CatalogueEventConsumer.decorator("catalog.#")
    def catalogue_events(self, envelopes: list[Envelope]) -> None:
        # Each in a transaction of its own: these are few (a catalogue load), and one applied
        # stays applied (its id in the inbox) if a later one of the batch fails.
        for envelope in envelopes:
            self.catalog.apply(envelope)

    return catalogue_events
