"""The portal sync's rules, free of I/O: the mapping of a status change to the portal's message, the
idempotency key, the order, the backoff, the outcome of an attempt, and the reconciliation's
differences. The clock is a parameter.

A ``SyncRow`` is one change of a dossier's national status (intake's ``dossier.status_changed``)
on its way to the portal. Its methods decide what an attempt's outcome does to it and return what
happened (``Sent``, ``Failed``), from which the metrics are counted.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from motcua.contracts.calendar import TZ

DEFAULT_FIELDS_FILE = Path(__file__).parent / "data" / "portal-fields.yml"
FACTS = ("code", "procedure_code", "channel", "status", "changed_at", "handling_agency", "unit", "seq", "key")
# Why an attempt failed: the label of motcua_portal_sync_failures_total.
REASONS = ("throttled", "unavailable", "unreachable", "rejected")


class MappingInvalid(ValueError):
    """The fields file cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class PortalFields:
    """``portal-fields.yml``: the portal's names for our facts (every one [verify] there)."""
    send_path: str
    service: str
    updating: bool
    idempotency_header: str
    fields: Mapping[str, str]
    time_format: str
    query_path: str
    from_param: str
    to_param: str
    date_format: str
    query_list: str


def load_mapping(path: str | Path | None = None) -> PortalFields:
    source = Path(path) if path else DEFAULT_FIELDS_FILE
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        send, query = data["send"], data["query"]
        fields = dict(send["fields"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise MappingInvalid(f"{source}: cannot be read as the portal's fields ({error!r})") from None
    missing = [fact for fact in FACTS if not isinstance(fields.get(fact), str) or not fields[fact]]
    if missing:
        raise MappingInvalid(f"{source}: send.fields.{missing[0]} must name the portal's field")
    names = list(fields.values())
    if len(set(names)) != len(names):
        raise MappingInvalid(f"{source}: send.fields names one portal field twice")
    try:
        return PortalFields(send_path=str(send["path"]), service=str(send["service"]), updating=bool(send["updating"]),
                        idempotency_header=str(send["idempotency_header"]), fields=fields,
                        time_format=str(send["time_format"]), query_path=str(query["path"]),
                        from_param=str(query["from_param"]), to_param=str(query["to_param"]),
                        date_format=str(query["date_format"]), query_list=str(query["list"]))
    except KeyError as error:
        raise MappingInvalid(f"{source}: {error.args[0]} is missing") from None


def idempotency_key(code: str, seq: int) -> str:
    """One key per dossier and status change: ``<code>:<seq>``. The same change sent again (after
    a crash, a timeout, a reconciliation) carries the same key, which the portal can drop."""
    return f"{code}:{seq}"


def backoff(failures: int, first: float, cap: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: ``first``, doubling, at most ``cap``."""
    return min(cap, first * 2 ** max(failures - 1, 0))


@dataclass(frozen=True)
class Policy:
    backoff_seconds: float = 5.0
    backoff_max_seconds: float = 300.0
    lease_seconds: float = 60.0


@dataclass(frozen=True)
class Sent:
    unit: str
    code: str
    seq: int
    status: int
    lag_seconds: float       # from the status change to the portal's acceptance
    resent: bool


@dataclass(frozen=True)
class Failed:
    unit: str
    code: str
    seq: int
    reason: str              # one of REASONS
    detail: str
    retry_in: float


@dataclass
class SyncRow:
    id: int | None
    code: str
    seq: int
    status: int
    previous_status: int | None
    channel: int
    unit: str
    procedure_code: str
    handling_agency: str
    changed_at: datetime
    state: str = "pending"
    attempts: int = 0            # counted when leased (a crash mid-send counts too)
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    resends: int = 0
    queued_at: datetime | None = None      # when this service heard of it (the database's clock)

    @property
    def key(self) -> str:
        return idempotency_key(self.code, self.seq)

    def message(self, mapping: PortalFields) -> dict:
        """The body sent to the portal for this status change."""
        local = self.changed_at.astimezone(TZ)
        facts = {"code": self.code, "procedure_code": self.procedure_code, "channel": str(self.channel),
                 "status": str(self.status), "changed_at": local.strftime(mapping.time_format),
                 "handling_agency": self.handling_agency, "unit": self.unit, "seq": self.seq, "key": self.key}
        record = {mapping.fields[fact]: value for fact, value in facts.items()}
        return {"service": mapping.service, "isUpdating": mapping.updating, "data": [record]}

    def sent(self, now: datetime) -> list:
        resent = self.resends > 0
        self.state, self.sent_at, self.last_error = "sent", now, None
        return [Sent(self.unit, self.code, self.seq, self.status,
                     max((now - self.changed_at).total_seconds(), 0.0), resent)]

    def failed(self, reason: str, detail: str, now: datetime, policy: Policy,
               retry_after: float | None = None) -> list:
        """Never given up: a status the portal must hold is tried again, later each time (a
        rejected one with the longest wait, while the mapping is corrected); a 429's Retry-After
        is the wait the portal asked for."""
        if reason not in REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        if retry_after is not None:
            wait = max(retry_after, 0.0)
        elif reason == "rejected":
            wait = policy.backoff_max_seconds
        else:
            wait = backoff(self.attempts, policy.backoff_seconds, policy.backoff_max_seconds)
        self.next_attempt_at = now + timedelta(seconds=wait)
        self.last_error = f"{reason}: {detail}"[:500]
        return [Failed(self.unit, self.code, self.seq, reason, detail, wait)]


def next_in_order(rows: Iterable[SyncRow]) -> list[SyncRow]:
    """Of these rows, those that may be sent now: per dossier, the first one not sent, and only
    when every earlier change of that dossier has been sent (a change that has not arrived yet
    holds the later ones back). ``store.claim``'s SQL rule, for the tests' fakes (without its wait
    for a predecessor that never comes)."""
    by_code: dict[str, list[SyncRow]] = {}
    for row in rows:
        by_code.setdefault(row.code, []).append(row)
    ready = []
    for code_rows in by_code.values():
        sent = {row.seq for row in code_rows if row.state == "sent"}
        for row in sorted(code_rows, key=lambda r: r.seq):
            if row.state != "sent":
                if row.seq == 1 or row.seq - 1 in sent:
                    ready.append(row)
                break
    return ready


# --- reconciliation ------------------------------------------------------------------------

def period(first: date, last: date) -> tuple[datetime, datetime]:
    """A period of local days as instants [start, end)."""
    if last < first:
        raise ValueError(f"the period ends ({last}) before it starts ({first})")
    start = datetime.combine(first, datetime.min.time(), tzinfo=TZ)
    return start, datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=TZ)


def held_keys(records: Iterable[Mapping[str, Any]], mapping: PortalFields) -> Counter:
    """What the portal says it holds, as our identities: the idempotency key where the record
    carries it, else (code, status)."""
    key_field, code_field, status_field = (mapping.fields["key"], mapping.fields["code"],
                                           mapping.fields["status"])
    held: Counter = Counter()
    for record in records:
        if record.get(key_field):
            held[str(record[key_field])] += 1
        else:
            held[(str(record.get(code_field)), str(record.get(status_field)))] += 1
    return held


def differences(platform: Iterable[SyncRow], held: Counter) -> list[SyncRow]:
    """The platform's sent status changes the portal does not hold, in (code, seq) order. A record
    without a key stands for one change of that dossier to that status."""
    held = Counter(held)
    missing = []
    for row in sorted(platform, key=lambda r: (r.code, r.seq)):
        if held[row.key] > 0:
            held[row.key] -= 1
        elif held[(row.code, str(row.status))] > 0:
            held[(row.code, str(row.status))] -= 1
        else:
            missing.append(row)
    return missing
