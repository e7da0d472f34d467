"""Hand-overs signed by the giving unit's key, and checked again later
(``motcua verify-handoffs``). What is signed: ``motcua.contracts.signing.handover_content``."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from motcua.contracts.signing import KeyRegistry, SignatureRefused, Signer, handover_content, verify
from services.routing import models
from services.routing.workflow import DESK


def giver_unit(workflow_unit: str, from_agency: str) -> str:
    """The unit that signs: the giving agency, or the receiving desk's unit for the desk's hand-over."""
    return workflow_unit if from_agency == DESK else from_agency


def content(*, unit: str, key_id: str, code: str, step_id: int | None, from_agency: str, to_agency: str,
            at: datetime, giver: str, result_class: str, note: str | None) -> dict:
    return handover_content(unit=unit, key_id=key_id, dossier=code, step=step_id,
                            action="return_to_desk" if to_agency == DESK else "hand_over", at=at,
                            from_agency=from_agency, to_agency=to_agency, giver=giver, result_class=result_class,
                            note=note)


def signed(signer: Signer | None, workflow_unit: str, row: dict) -> dict:
    """A new hand-over row (``code``, ``step_id``, ``from_agency`` ...) with its signature
    columns; left unsigned (NULL) when the platform holds no key of the giving unit."""
    unit = giver_unit(workflow_unit, row["from_agency"])
    key_id = signer.key_id(unit, row["at"]) if signer is not None else None
    if key_id is None:
        return {**row, "signed_by": None, "key_id": None, "signature": None}
    signature = signer.sign(content(unit=unit, key_id=key_id, **_fields(row)))
    return {**row, "signed_by": unit, "key_id": key_id, "signature": signature}


def _fields(row) -> dict:
    return {name: row[name] for name in ("code", "step_id", "from_agency", "to_agency", "at", "giver",
                                         "result_class", "note")}


@dataclass(frozen=True)
class Mismatch:
    code: str
    handover: int
    at: datetime
    from_agency: str
    to_agency: str
    reason: str

    def __str__(self) -> str:
        return (f"dossier {self.code}, hand-over {self.handover} ({self.from_agency} → {self.to_agency}, "
                f"{self.at.isoformat()}): {self.reason}")


def check(session: Session, registry: KeyRegistry, start: datetime, end: datetime, unit: str | None = None,
          progress: Callable[[int], None] | None = None) -> tuple[int, list[Mismatch]]:
    """Every hand-over kept from ``start`` to ``end`` (given by ``unit``, if named) verified again
    against the registry, with the key valid when it was signed: the count and what does not hold."""
    h = models.handovers
    query = select(h, models.workflows.c.unit.label("workflow_unit")).join(
        models.workflows, models.workflows.c.code == h.c.code).where(h.c.at >= start, h.c.at < end).order_by(h.c.id)
    count, problems = 0, []
    for row in session.execute(query.execution_options(yield_per=1000)).mappings():
        count += 1
        if progress and count % 10000 == 0:
            progress(count)
        giver = giver_unit(row["workflow_unit"], row["from_agency"])
        if unit and giver != unit:
            continue
        problem = _problem(registry, row, giver)
        if problem:
            problems.append(Mismatch(row["code"], row["id"], row["at"], row["from_agency"], row["to_agency"],
                                     problem))
    return count, problems


def _problem(registry: KeyRegistry, row, giver: str) -> str | None:
    if row["signature"] is None:
        return "not signed"
    if row["signed_by"] != giver:
        return f"signed_by is {row['signed_by']}, but the hand-over was given by {giver}"
    try:
        verify(registry, content(unit=giver, key_id=row["key_id"], **_fields(row)), row["signature"], row["at"])
    except SignatureRefused as refused:
        return str(refused)
    return None
