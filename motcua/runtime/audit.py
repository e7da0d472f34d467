"""The audit log of a service's HTTP writes, hash-chained (``motcua.contracts.audit_chain``).

One table per service, in its own schema (``audit_table``): a service owns its data, and its
entry goes in with the write's effect in the write's own transaction, which a table shared by
every service could not (it would need a second database transaction or a network call).
Who (the acting official and unit), what (method, route, dossier code, outcome status,
idempotency key), when, and a SHA-256 of the body: never the body itself, whose personal data
(ID and phone numbers) would then sit in clear in the log."""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Iterator

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text, insert, select, text
from sqlalchemy.orm import Session

from motcua.contracts import audit_chain
from motcua.runtime.db import make_engine

FIELDS = ("seq", "at", "official", "unit", "method", "route", "dossier", "status", "idempotency_key",
          "body_sha256")
# One writer at a time appends to a chain: its head is read and extended under a transaction-scoped
# advisory lock (the first key, "mcau"; the second, the table's schema).
_APPEND_LOCK = 0x6D63_6175

# The services' audit tables, by schema (= service name): which chain an entry point appends to.
TABLES: dict[str, Table] = {}


def audit_table(metadata: MetaData) -> Table:
    table = Table(
        "audit_log", metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("official", Text, nullable=False),          # "" when no official acted (a citizen, a provider)
        Column("unit", Text, nullable=False),
        Column("method", Text, nullable=False),
        Column("route", Text, nullable=False),             # the route's rule, e.g. /api/v1/dossiers/<string:code>
        Column("dossier", Text, nullable=False),           # the dossier code, "" when none
        Column("status", Integer, nullable=False),
        Column("idempotency_key", Text, nullable=False),   # "" when the call sent none
        Column("body_sha256", Text, nullable=False),
        Column("prev_hash", Text, nullable=False),
        Column("hash", Text, nullable=False),
    )
    TABLES[metadata.schema] = table
    return table


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def append(session: Session, table: Table, *, at: datetime, official: str, unit: str, method: str, route: str,
           dossier: str, status: int, idempotency_key: str, body_sha256: str) -> int:
    """Append one entry in the caller's transaction (the lock is held until it ends: call it last)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key, hashtext(:chain))"),
                    {"key": _APPEND_LOCK, "chain": table.fullname})
    head = session.execute(select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)).mappings().first()
    row = audit_chain.next_entry(head and dict(head), {
        "at": at, "official": official, "unit": unit, "method": method, "route": route, "dossier": dossier,
        "status": status, "idempotency_key": idempotency_key, "body_sha256": body_sha256}, FIELDS)
    session.execute(insert(table).values(**row))
    return row["seq"]


def entries(session: Session, table: Table, batch: int = 5000) -> Iterator[dict]:
    """The whole log in order, read in batches (it grows with every write)."""
    after = 0
    while True:
        rows = session.execute(select(table).where(table.c.seq > after).order_by(table.c.seq)
                               .limit(batch)).mappings().all()
        if not rows:
            return
        yield from (dict(row) for row in rows)
        after = rows[-1]["seq"]


def verify(session: Session, table: Table) -> tuple[int, list[audit_chain.Break]]:
    return audit_chain.verify(entries(session, table), FIELDS)


def verify_database(url: str, table: Table) -> tuple[int, list[audit_chain.Break]]:
    """A service's chain, read in one transaction (one snapshot: appends meanwhile are not half seen)."""
    engine = make_engine(url, pool_size=1, application_name=f"audit-verify-{table.schema}")
    try:
        with Session(engine) as session, session.begin():
            session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            return verify(session, table)
    finally:
        engine.dispose()
