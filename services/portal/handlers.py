"""The portal sync's use cases: ``HANDLERS = {command or event type: handler(command, uow)}``.

- ``dossier.status_changed`` (intake): queue the change, once per event id and per (code, seq),
  in the transaction that records the event in the inbox;
- ``portal.record_attempt``: what one attempt at the portal did to its row (sent, or failed and
  due again later), written in one statement once the portal has answered.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from motcua.contracts.events import Envelope
from motcua.runtime.inbox import about
from services.portal.domain import Policy, SyncRow


@dataclass(frozen=True)
class RecordAttempt:
    row: SyncRow
    error: Exception | None          # a client.PortalError (reason, detail, retry_after), or None: sent
    now: datetime
    policy: Policy


def row_from(event: Envelope) -> SyncRow:
    p = event.payload
    return SyncRow(id=None, code=p["code"], seq=p["seq"], status=p["status"], previous_status=p.get("previous_status"),
                   channel=p["channel"], unit=event.unit, procedure_code=p["procedure_code"],
                   handling_agency=p["handling_agency"], changed_at=event.occurred_at,
                   next_attempt_at=event.occurred_at)


def queue_status_changes(events: list[Envelope], uow) -> list:
    """Events delivered together, one transaction. A change told twice (the same event again, or
    another event with the same code and seq) is queued once."""
    queued = []
    with uow:
        for event in events:
            with about(event):
                if event.type != "dossier.status_changed":
                    raise ValueError(f"portal does not consume {event.type}")
                if uow.first_time(event) and uow.rows.add(row_from(event)):
                    queued.append(event.payload["code"])
        uow.commit()
    return queued


def record_attempt(command: RecordAttempt, uow) -> list:
    row, error = command.row, command.error
    if error is None:
        events = row.sent(command.now)
    else:
        events = row.failed(error.reason, error.detail, command.now, command.policy,
                            retry_after=getattr(error, "retry_after", None))
    uow.save_outcome(row)
    return events


HANDLERS = {
    "dossier.status_changed": queue_status_changes,
    "portal.record_attempt": record_attempt,
}


def handle(kind: str, command, uow) -> list:
    return HANDLERS[kind](command, uow)
