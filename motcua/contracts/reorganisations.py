"""Units that merge, as the services share it: which unit takes over a dissolved unit's dossiers,
and from which day a dissolved desk no longer receives (domain reference §2: the structure is data).

The catalog service checks and applies a reorganisation file and announces it in
``catalog.units_reorganised`` (``Reorganisation.payload``); intake, routing, fees and notify read
it back with ``Reorganisation.from_payload`` and move their own dossiers in flight. A unit's
catalogue entry carries ``dissolved_on`` and ``successor`` from then on (``dissolved``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable, Iterable, Mapping

ALL = "all"


@dataclass(frozen=True)
class Transfer:
    """The dissolved units of one merger and their successor; ``procedures`` None: every procedure."""
    dissolved: tuple[str, ...]
    successor: str
    procedures: frozenset[str] | None = None

    def takes(self, procedure_code: str) -> bool:
        return self.procedures is None or procedure_code in self.procedures


@dataclass(frozen=True)
class Reorganisation:
    name: str
    effective_from: date
    transfers: tuple[Transfer, ...]

    def successor(self, unit: str, procedure_code: str | None = None) -> str | None:
        """Who holds ``unit``'s dossiers (of that procedure) from the effective date; None: unit unchanged."""
        for transfer in self.transfers:
            if unit in transfer.dissolved and (procedure_code is None or transfer.takes(procedure_code)):
                return transfer.successor
        return None

    @property
    def dissolved(self) -> frozenset[str]:
        return frozenset(code for t in self.transfers for code in t.dissolved)

    def payload(self) -> dict:
        return {"name": self.name, "effective_from": self.effective_from.isoformat(),
                "transfers": [{"dissolved": list(t.dissolved), "successor": t.successor,
                               "procedures": ALL if t.procedures is None else sorted(t.procedures)}
                              for t in self.transfers]}

    @classmethod
    def from_payload(cls, payload: Mapping) -> "Reorganisation":
        return cls(payload["name"], date.fromisoformat(payload["effective_from"]), tuple(
            Transfer(tuple(t["dissolved"]), t["successor"],
                     None if t["procedures"] == ALL else frozenset(t["procedures"]))
            for t in payload["transfers"]))


def dissolved(unit: Mapping | None, day: date) -> str | None:
    """The successor's code if ``unit`` (a catalogue entry) no longer receives on ``day`` (its
    local date, Asia/Ho_Chi_Minh): dissolved on or before it. None while it still receives."""
    if not unit or not unit.get("dissolved_on"):
        return None
    return unit.get("successor") if date.fromisoformat(str(unit["dissolved_on"])) <= day else None


LATE_NAME = "sắp xếp đơn vị hành chính (đã có hiệu lực khi hồ sơ đến)"


def already_in_force(units: Iterable[str], entry: Callable[[str], Mapping | None], day: date) -> Reorganisation | None:
    """For a dossier that reaches a service after its units were dissolved (the service was down
    or behind across the effective date, so ``catalog.units_reorganised`` came first): the moves
    its units' catalogue entries give on ``day``, to apply as the event would have; None if none.
    The entry names one successor per unit: every procedure of a dissolved unit goes there."""
    transfers = []
    for code in sorted(set(units)):
        successor = dissolved(entry(code), day)
        if successor is not None:
            transfers.append(Transfer((code,), successor))
    return Reorganisation(LATE_NAME, day, tuple(transfers)) if transfers else None
