"""The audit log: every call (who, what, which dossier, result), each entry chained to the one
before by a SHA-256 hash. Changing, removing or inserting an entry breaks the chain at that
point, and ``motcua gateway audit verify`` says where."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from services.gateway.models import audit_log

GENESIS = "0" * 64
FIELDS = ("seq", "at", "unit", "credential", "method", "dossier", "result", "detail")
# One writer at a time appends: the chain has one head (a transaction-scoped advisory lock).
_APPEND_LOCK = 0x6D63_6175   # "mcau"


def canonical(entry: dict) -> str:
    values = {name: entry[name] for name in FIELDS}
    at = values["at"]
    values["at"] = at.astimezone(timezone.utc).isoformat() if isinstance(at, datetime) else at
    return json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def entry_hash(prev_hash: str, entry: dict) -> str:
    return hashlib.sha256((prev_hash + "\n" + canonical(entry)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Break:
    seq: int
    problem: str


def verify(entries: Iterable[dict]) -> tuple[int, list[Break]]:
    """Walk the chain in order: how many entries, and every place it is broken."""
    breaks, prev_hash, expected_seq, count = [], GENESIS, 1, 0
    for entry in entries:
        count += 1
        if entry["seq"] != expected_seq:
            breaks.append(Break(entry["seq"], f"expected entry {expected_seq}: entries missing or inserted"))
        if entry["prev_hash"] != prev_hash:
            breaks.append(Break(entry["seq"], "does not follow the entry before it (prev_hash differs)"))
        if entry["hash"] != entry_hash(entry["prev_hash"], entry):
            breaks.append(Break(entry["seq"], "altered: its content does not match its hash"))
        prev_hash, expected_seq = entry["hash"], entry["seq"] + 1
    return count, breaks


def append(session: Session, *, at: datetime, unit: str, credential: str, method: str, dossier: str,
           result: str, detail: str) -> int:
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
    head = session.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc())
                           .limit(1)).first()
    entry = {"seq": head.seq + 1 if head else 1, "at": at, "unit": unit, "credential": credential,
             "method": method, "dossier": dossier, "result": result, "detail": detail[:500]}
    prev_hash = head.hash if head else GENESIS
    session.execute(insert(audit_log).values(**entry, prev_hash=prev_hash, hash=entry_hash(prev_hash, entry)))
    return entry["seq"]


def entries(session: Session, batch: int = 5000):
    """The whole log in order, read in batches (it grows with every call)."""
    after = 0
    while True:
        rows = session.execute(select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq)
                               .limit(batch)).mappings().all()
        if not rows:
            return
        yield from (dict(row) for row in rows)
        after = rows[-1]["seq"]
