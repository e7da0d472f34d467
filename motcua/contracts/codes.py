"""Dossier codes: ``<unit code>-YYMMDD-XXXX`` (Circular 01/2018 art. 19).

XXXX is the day's sequence at the receiving unit. It must never repeat and never skip,
whatever the number of replicas and restarts: the counter is a row per (unit, day) that
is incremented with an upsert inside the transaction that records the dossier. The row
lock serialises concurrent callers; a rollback gives the number back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Column, Date, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

UNIT_CODE = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.H\d{2}$")
DOSSIER_CODE = re.compile(r"^(?P<unit>\d{3}\.\d{2}\.\d{2}\.H\d{2})-(?P<day>\d{6})-(?P<seq>\d{4})$")
MAX_PER_DAY = 9999


class CodeError(ValueError):
    pass


@dataclass(frozen=True)
class DossierCode:
    unit: str
    day: date
    seq: int

    def __str__(self) -> str:
        return f"{self.unit}-{self.day:%y%m%d}-{self.seq:04d}"


def format_dossier_code(unit: str, day: date, seq: int) -> str:
    if not UNIT_CODE.match(unit):
        raise CodeError(f"unit code {unit!r} is not of the shape 000.00.00.H00 (QCVN 102:2016)")
    if not 1 <= seq <= MAX_PER_DAY:
        raise CodeError(f"sequence {seq} is outside 1..{MAX_PER_DAY}")
    return str(DossierCode(unit, day, seq))


def parse_dossier_code(code: str) -> DossierCode:
    match = DOSSIER_CODE.match(code or "")
    if not match:
        raise CodeError(f"dossier code {code!r} is not of the shape <unit code>-YYMMDD-XXXX")
    try:
        day = date(2000 + int(match["day"][:2]), int(match["day"][2:4]), int(match["day"][4:]))
    except ValueError:
        raise CodeError(f"dossier code {code!r} has no valid date") from None
    seq = int(match["seq"])
    if seq < 1:
        raise CodeError(f"dossier code {code!r} has sequence 0000")
    return DossierCode(match["unit"], day, seq)


def code_counter_table(metadata: MetaData) -> Table:
    return Table(
        "dossier_code_counters", metadata,
        Column("unit", Text, primary_key=True),
        Column("day", Date, primary_key=True),
        Column("last_seq", Integer, nullable=False),
    )


def increment(session: Session, table: Table, keys: dict, column: str) -> int:
    """The next number of a gapless sequence kept as one row per key, in the caller's transaction.

    The upsert takes the row's lock: concurrent callers queue, a rollback gives the number back.
    """
    statement = insert(table).values(**keys, **{column: 1})
    statement = statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in keys], set_={column: table.c[column] + 1},
    ).returning(table.c[column])
    return session.execute(statement).scalar_one()


def next_dossier_code(session: Session, table: Table, unit: str, day: date) -> str:
    """The next code of ``unit`` on ``day``, allocated in the caller's transaction."""
    seq = increment(session, table, {"unit": unit, "day": day}, "last_seq")
    if seq > MAX_PER_DAY:
        raise CodeError(f"unit {unit} has received {MAX_PER_DAY} dossiers on {day}: no code left")
    return format_dossier_code(unit, day, seq)
