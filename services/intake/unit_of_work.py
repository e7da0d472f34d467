"""Loading and saving dossiers: the repository (one locked read, one save) and the unit of work
(one transaction for the dossier, its history and its outbox rows)."""
from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Callable, Protocol

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from motcua.contracts.calendar import WorkingCalendar
from motcua.contracts.codes import increment, next_dossier_code
from motcua.contracts.events import Envelope
from motcua.contracts.pii import KeyRing, has_clear, seal_payload
from motcua.runtime.inbox import first_time
from services.intake import models
from services.intake.dossier import CLOSED, Dossier, HistoryEntry

d, h = models.dossiers, models.history


class Catalogue(Protocol):
    """What a command needs of the catalogue (a local read model, no call inside the transaction)."""

    def unit(self, code: str) -> dict | None: ...

    def procedure_in_force(self, code: str, at: datetime) -> dict | None: ...


# The history of a dossier, as one JSON array computed beside its row: one round trip.
_HISTORY = (select(func.coalesce(func.json_agg(aggregate_order_by(func.json_build_object(
    "at", h.c.at, "actor", h.c.actor, "actor_unit", h.c.actor_unit, "action", h.c.action,
    "status_from", h.c.status_from, "status_to", h.c.status_to, "note", h.c.note), h.c.id)), text("'[]'::json")))
    .where(h.c.code == d.c.code).scalar_subquery().label("history"))


SEALED = models.SEALED_DOSSIERS       # the dossier in memory holds the numbers; its row, them sealed


def sealed_row(values: dict, pii: KeyRing) -> dict:
    """Column values as stored: the ID and phone numbers sealed, their search digests beside them."""
    row = dict(values)
    for digest, column in SEALED.digests.items():
        if column in row:
            row[digest] = pii.digest(row[column], SEALED.columns[column])
    for column, purpose in SEALED.columns.items():
        if column in row:
            row[column] = pii.seal(row[column], purpose)
    return row


class SqlDossierRepository:
    def __init__(self, session: Session, pii: KeyRing):
        self.session, self.pii = session, pii
        self._loaded: dict[str, tuple[dict | None, int]] = {}   # code -> (columns as loaded, history length)

    def get(self, code: str, *, for_update: bool = True) -> Dossier | None:
        """The dossier with its history in one SELECT; a command first locks its row (a SELECT
        that waited for the lock would show the history as it was before the other command)."""
        if for_update and self.session.execute(
                select(d.c.code).where(d.c.code == code).with_for_update()).first() is None:
            return None
        row = self.session.execute(select(d, _HISTORY).where(d.c.code == code)).mappings().first()
        if row is None:
            return None
        values = {name: row[name] for name in Dossier.columns()}
        for column, purpose in SEALED.columns.items():
            values[column] = self.pii.open(values[column], purpose)
        history = [HistoryEntry(at=datetime.fromisoformat(e["at"]), actor=e["actor"], actor_unit=e["actor_unit"],
                                action=e["action"], status_from=e["status_from"], status_to=e["status_to"],
                                note=e["note"]) for e in row["history"]]
        dossier = Dossier(**values, history=history)
        self._loaded[code] = (dossier.row(), len(history))
        return dossier

    def add(self, dossier: Dossier) -> None:
        self._loaded[dossier.code] = (None, 0)

    def save(self, dossier: Dossier) -> None:
        """Insert a new dossier once, in its final status; else update only the columns that changed.
        Then the history entries added since it was loaded."""
        loaded, saved_entries = self._loaded[dossier.code]
        current = dossier.row()
        if loaded is None:
            self.session.execute(insert(d).values(**sealed_row(current, self.pii)))
        else:
            changed = {name: value for name, value in current.items() if value != loaded[name]}
            if changed:
                self.session.execute(update(d).where(d.c.code == dossier.code)
                                     .values(**sealed_row(changed, self.pii), updated_at=func.now()))
        entries = dossier.history[saved_entries:]
        if entries:
            self.session.execute(insert(h), [{"code": dossier.code, **dataclasses.asdict(e)} for e in entries])
        self._loaded[dossier.code] = (current, len(dossier.history))

    def in_flight_at(self, units: list[str]) -> list[str]:
        """The codes of the dossiers of these units not yet closed (returned, refused, withdrawn), in
        code order (the order a batch locks them in)."""
        closed = [int(s) for s in CLOSED]
        return list(self.session.execute(select(d.c.code).where(d.c.unit.in_(units), d.c.status.not_in(closed))
                                         .order_by(d.c.code)).scalars())

    # The day's code and the book's line: gapless counters, in the command's transaction.

    def new_code(self, unit: str, day: date) -> str:
        return next_dossier_code(self.session, models.code_counters, unit, day)

    def next_book_line(self, unit: str, year: int) -> int:
        return increment(self.session, models.book_counters, {"unit": unit, "year": year}, "last_line")


class SqlUnitOfWork:
    """One transaction: ``with uow:`` opens it, ``save`` writes a dossier and its events, a clean
    exit commits, an exception rolls everything back (the counters' numbers too)."""

    def __init__(self, db, *, catalogue: Catalogue, calendar: WorkingCalendar,
                 emit: Callable[[Session, Envelope], None], pii: KeyRing, correlation_id: str | None = None,
                 lines_per_volume: int = 1000):
        self.db, self.catalogue, self.calendar, self.lines_per_volume = db, catalogue, calendar, lines_per_volume
        self.pii = pii
        self._emit, self.correlation_id = emit, correlation_id
        self.events: list[Envelope] = []      # written to the outbox by this unit of work

    def __enter__(self) -> SqlUnitOfWork:
        self._transaction = self.db.transaction()
        self.session = self._transaction.__enter__()
        self.dossiers = SqlDossierRepository(self.session, self.pii)
        self.events = []
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._transaction.__exit__(*exc)

    def save(self, dossier: Dossier) -> None:
        self.dossiers.save(dossier)
        for event in dossier.events:
            if self.correlation_id:
                event = dataclasses.replace(event, correlation_id=self.correlation_id)
            if has_clear(event.payload):     # the applicant's phone, for notify: sealed in the outbox and on the wire
                event = dataclasses.replace(event, payload=seal_payload(event.payload, self.pii))
            self._emit(self.session, event)
            self.events.append(event)
        dossier.events.clear()

    def first_time(self, event: Envelope) -> bool:
        """Record an event consumed (the inbox) in this transaction; False if it already was."""
        return first_time(self.session, models.processed_events, event)
