"""Who acts: an official, for a unit (a desk or an agency); ``unit`` None is the system itself.

``roles`` are the official's roles (motcua/contracts/access.py) and ``scope`` what the call's route
grants them: ``district`` lets a reader see the dossiers of every unit; otherwise the handlers keep
to the official's own unit and the dossiers routed to it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    name: str
    unit: str | None = None
    roles: frozenset[str] = frozenset()
    scope: str | None = None

    @property
    def district_wide(self) -> bool:
        return self.scope == "district"
