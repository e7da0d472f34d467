"""A hash-chained log, pure: every entry's hash covers all its fields, its sequence number and
the hash of the entry before it. Changing any field, or removing or inserting an entry, breaks
the chain at that point; ``verify`` says where. The gateway's gRPC calls and every service's
HTTP writes keep such a log (``motcua.runtime.audit`` stores them)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

GENESIS = "0" * 64


def canonical(entry: dict, fields: Sequence[str]) -> str:
    """The entry's hashed content: every field named, ``seq`` first among them, as sorted JSON
    (an instant in UTC ISO form, so the text is the same after a round trip through the database)."""
    if "seq" not in fields:
        raise ValueError("a chained entry's fields include its sequence number 'seq'")
    values = {name: entry[name] for name in fields}
    for name, value in values.items():
        if isinstance(value, datetime):
            values[name] = value.astimezone(timezone.utc).isoformat()
    return json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def entry_hash(prev_hash: str, entry: dict, fields: Sequence[str]) -> str:
    return hashlib.sha256((prev_hash + "\n" + canonical(entry, fields)).encode("utf-8")).hexdigest()


def next_entry(head: dict | None, entry: dict, fields: Sequence[str]) -> dict:
    """The row to append after ``head`` (the last entry, None for the first): the entry with its
    sequence number, the previous hash and its own hash."""
    entry = {**entry, "seq": head["seq"] + 1 if head else 1}
    prev_hash = head["hash"] if head else GENESIS
    return {**entry, "prev_hash": prev_hash, "hash": entry_hash(prev_hash, entry, fields)}


@dataclass(frozen=True)
class Break:
    seq: int
    problem: str


def verify(entries: Iterable[dict], fields: Sequence[str]) -> tuple[int, list[Break]]:
    """Walk the chain in order: how many entries, and every place it is broken."""
    breaks, prev_hash, expected_seq, count = [], GENESIS, 1, 0
    for entry in entries:
        count += 1
        if entry["seq"] != expected_seq:
            breaks.append(Break(entry["seq"], f"expected entry {expected_seq}: entries missing or inserted"))
        if entry["prev_hash"] != prev_hash:
            breaks.append(Break(entry["seq"], "does not follow the entry before it (prev_hash differs)"))
        if entry["hash"] != entry_hash(entry["prev_hash"], entry, fields):
            breaks.append(Break(entry["seq"], "altered: its content does not match its hash"))
        prev_hash, expected_seq = entry["hash"], entry["seq"] + 1
    return count, breaks
