"""The catalogue as the other services call it: nameko RPC that remembers what cannot change.

A published procedure version is immutable (the catalogue publishes a change as a new
version), so a caller asking for ``(code, version)`` again gets the answer it had. Units
change only when a new catalogue is loaded; they are remembered for ``CATALOGUE_CACHE_SECONDS``
(default 60). The version in force at a moment (``get_procedure(code, at=...)``) is always
asked: a newly published version may take effect now. The throughput benchmark counted about
eight catalogue round trips in a dossier's life, each one a worker and a transaction on both
sides, all but one of them for such answers.
"""
from __future__ import annotations

import copy
import time

from nameko.rpc import RpcProxy
from prometheus_client import Counter

LOOKUPS = Counter("motcua_catalogue_lookups_total", "Catalogue look-ups by a calling service, answered from "
                  "memory (hit) or over RPC (miss).", ["service", "kind", "outcome"])
UNIT_SECONDS = 60.0
MAX_ENTRIES = 4096        # far more than a catalogue has; a bound all the same (least recently used go)


class CatalogueProxy(RpcProxy):
    """Declared as ``catalog = CatalogueProxy()``: the catalogue's RPC methods, some remembered."""

    def __init__(self, **options):
        super().__init__("catalog", **options)

    def setup(self) -> None:
        super().setup()
        self.unit_seconds = float(self.container.config.get("CATALOGUE_CACHE_SECONDS", UNIT_SECONDS))
        self.versions: dict[tuple[str, int], dict] = {}
        self.units: dict[str, tuple[float, dict]] = {}
        service = self.container.service_name
        for kind in ("procedure_version", "unit"):
            for outcome in ("hit", "miss"):
                LOOKUPS.labels(service, kind, outcome)

    def get_dependency(self, worker_ctx) -> "RememberingCatalogue":
        return RememberingCatalogue(super().get_dependency(worker_ctx), self)


class RememberingCatalogue:
    """What a worker gets: the catalogue's RPC proxy, with ``get_procedure(code, version=…)`` and
    ``get_unit`` answered from memory when they can be. Answers are copies: a caller may change
    its dict without changing the next caller's."""

    def __init__(self, proxy, memory: CatalogueProxy):
        self._proxy, self._memory = proxy, memory

    def __getattr__(self, name):
        return getattr(self._proxy, name)

    def get_procedure(self, code: str, at: str | None = None, version: int | None = None) -> dict | None:
        if version is None:
            return self._proxy.get_procedure(code, at=at)
        key = (code, int(version))
        found = _recall(self._memory.versions, key)
        if found is None:
            found = self._proxy.get_procedure(code, version=version)
            self._count("procedure_version", "miss")
            if found is None:        # not published (yet): ask again next time
                return None
            _remember(self._memory.versions, key, found)
        else:
            self._count("procedure_version", "hit")
        return copy.deepcopy(found)

    def get_unit(self, code: str) -> dict | None:
        now = time.monotonic()
        entry = _recall(self._memory.units, code)
        if entry is not None and now - entry[0] < self._memory.unit_seconds:
            self._count("unit", "hit")
            return copy.deepcopy(entry[1])
        unit = self._proxy.get_unit(code)
        self._count("unit", "miss")
        if unit is not None:
            _remember(self._memory.units, code, (now, unit))
        return copy.deepcopy(unit)

    def _count(self, kind: str, outcome: str) -> None:
        LOOKUPS.labels(self._memory.container.service_name, kind, outcome).inc()


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
