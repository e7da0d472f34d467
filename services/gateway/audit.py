"""The audit log: every call (who, what, which dossier, result), each entry chained to the one
before by a SHA-256 hash. Changing, removing or inserting an entry breaks the chain at that
point, and ``motcua gateway audit verify`` says where."""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from motcua.contracts import audit_chain
from motcua.contracts.audit_chain import GENESIS, Break  # noqa: F401  (the gateway's callers name them here)
from services.gateway.models import audit_log

# Every field is hashed, the sequence number too: a changed field or an inserted or removed entry
# breaks the chain (motcua.contracts.audit_chain).
FIELDS = ("seq", "at", "unit", "credential", "method", "dossier", "result", "detail")
# One writer at a time appends: the chain has one head (a transaction-scoped advisory lock).
_APPEND_LOCK = 0x6D63_6175   # "mcau"


def canonical(entry: dict) -> str:
    return audit_chain.canonical(entry, FIELDS)


def entry_hash(prev_hash: str, entry: dict) -> str:
    return audit_chain.entry_hash(prev_hash, entry, FIELDS)


def verify(entries: Iterable[dict]) -> tuple[int, list[Break]]:
    """Walk the chain in order: how many entries, and every place it is broken."""
    return audit_chain.verify(entries, FIELDS)


def append(session: Session, *, at: datetime, unit: str, credential: str, method: str, dossier: str,
           result: str, detail: str) -> int:
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
    head = session.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc())
                           .limit(1)).mappings().first()
    row = audit_chain.next_entry(head and dict(head), {
        "at": at, "unit": unit, "credential": credential, "method": method, "dossier": dossier,
        "result": result, "detail": detail[:500]}, FIELDS)
    session.execute(insert(audit_log).values(**row))
    return row["seq"]


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
