"""The repository of ``DossierMessages`` and the unit of work of a notify command, on PostgreSQL.

A command loads its aggregate once (one locked read of its rows), changes it in memory, and
``commit`` writes what changed and the outbox rows of its events in one transaction. The
repository remembers what it loaded, so only the fields that changed are written: the
dispatcher's lease of other messages of the same dossier is never overwritten.
"""
from __future__ import annotations

import time
from dataclasses import asdict, fields
from datetime import date, datetime
from typing import Callable, Self

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from motcua.contracts.pii import PHONE, RECIPIENT, KeyRing
from motcua.runtime.db import autocommit
from motcua.runtime.inbox import first_time
from services.notify import models, templates
from services.notify.messages import DIGEST_MAX_CODES, DigestFigures, Dossier, DossierMessages, Message

d, m, t = models.dossiers, models.messages, models.templates
_DOSSIER_FIELDS = [f.name for f in fields(Dossier)]
_MESSAGE_FIELDS = [f.name for f in fields(Message)]


# The phone number and every recipient (a phone number, an e-mail address, a webhook) are stored
# sealed (motcua/contracts/pii.py); the aggregate holds them clear: the same message's idempotency key
# whatever key sealed it, and the dispatcher's one message in flight per recipient.

def _dossier(row, pii: KeyRing) -> Dossier:
    values = {name: getattr(row, name) for name in _DOSSIER_FIELDS}
    return Dossier(**{**values, "phone": pii.open(values["phone"], PHONE)})


def _message(row, pii: KeyRing | None = None) -> Message:
    values = {name: getattr(row, name) for name in _MESSAGE_FIELDS}
    if pii is not None:
        values["recipient"] = pii.open(values["recipient"], RECIPIENT)
    return Message(**values)


def _sealed(values: dict, pii: KeyRing) -> dict:
    """Values of a dossier or message row as stored (only those present are sealed)."""
    sealed = dict(values)
    if "phone" in sealed:
        sealed["phone"] = pii.seal(sealed["phone"], PHONE)
    if "recipient" in sealed:
        sealed["recipient"] = pii.seal(sealed["recipient"], RECIPIENT)
    return sealed


def opened(row, pii: KeyRing) -> Message:
    """A message row as leased by the dispatcher, its recipient opened."""
    return _message(row, pii)


_INSERT_MESSAGES = (insert(m).on_conflict_do_nothing(index_elements=["idempotency_key"])
                    .returning(m.c.idempotency_key, m.c.id))
QUEUED = "notify_queued"     # session.info: a message was queued (the dispatcher has work)


class SqlDossiers:
    def __init__(self, session: Session, pii: KeyRing):
        self.session, self.pii = session, pii
        self.seen: list[DossierMessages] = []
        self._loaded: dict[int, tuple] = {}          # id(aggregate) -> (dossier as loaded, {message id: values})
        self._whole: dict[str, DossierMessages] = {}  # code -> the whole aggregate get() loaded

    def _track(self, aggregate: DossierMessages) -> DossierMessages:
        self.seen.append(aggregate)
        self._loaded[id(aggregate)] = (asdict(aggregate.dossier) if aggregate.dossier else None,
                                       {msg.id: asdict(msg) for msg in aggregate.messages})
        return aggregate

    def get(self, code: str, *, lock: bool = True) -> DossierMessages:
        """The dossier (locked) and all its messages; a dossier notify never heard of has none.
        Asked again in the same transaction, the same aggregate (with its changes not yet saved)."""
        if code in self._whole:
            return self._whole[code]
        query = select(d).where(d.c.code == code)
        row = self.session.execute(query.with_for_update() if lock else query).first()
        rows = self.session.execute(select(m).where(m.c.code == code).order_by(m.c.id)).all()
        self._whole[code] = self._track(DossierMessages(code, _dossier(row, self.pii) if row else None,
                                                        [_message(r, self.pii) for r in rows]))
        return self._whole[code]

    def open_at(self, units: list[str]) -> list[str]:
        """The codes of the open dossiers of these desks, in code order."""
        return list(self.session.execute(select(d.c.code).where(d.c.unit.in_(units), d.c.open)
                                         .order_by(d.c.code)).scalars())

    def for_unit(self, unit: str) -> DossierMessages:
        """A unit's messages without a dossier: only new ones are added (the digest)."""
        return self._track(DossierMessages(None))

    def _one(self, where) -> DossierMessages | None:
        row = self.session.execute(select(m).where(where).with_for_update()).first()
        if row is None:
            return None
        return self._track(DossierMessages(row.code, None, [_message(row, self.pii)]))

    def with_message(self, message_id: int) -> DossierMessages | None:
        """The aggregate holding only that message (locked): what a sending attempt changes."""
        return self._one(m.c.id == message_id)

    def with_provider_id(self, provider_id: str) -> DossierMessages | None:
        return self._one(m.c.provider_id == provider_id)

    def save(self, aggregate: DossierMessages) -> None:
        dossier_before, messages_before = self._loaded[id(aggregate)]
        if aggregate.dossier is not None:
            now = asdict(aggregate.dossier)
            if dossier_before is None:
                self.session.execute(insert(d).values(**_sealed(now, self.pii))
                                     .on_conflict_do_nothing(index_elements=["code"]))
            else:
                changed = {k: v for k, v in now.items() if dossier_before.get(k) != v}
                if changed:
                    self.session.execute(update(d).where(d.c.code == aggregate.dossier.code)
                                         .values(**_sealed(changed, self.pii)))
        new = [message for message in aggregate.messages if message.id is None]
        if new:
            # One INSERT for them all; the key's unique index is the last guard against a
            # concurrent duplicate (a message it skips keeps no id).
            rows = [_sealed({k: v for k, v in asdict(message).items() if k != "id"}, self.pii) for message in new]
            ids = dict(self.session.execute(_INSERT_MESSAGES, rows).all())
            for message in new:
                message.id = ids.get(message.idempotency_key)
            self.session.info[QUEUED] = True
        for message in aggregate.messages:
            if any(message is added for added in new):
                continue
            values = asdict(message)
            before = messages_before.get(message.id, {})
            changed = {k: v for k, v in values.items() if before.get(k) != v}
            if changed:
                self.session.execute(update(m).where(m.c.id == message.id).values(**_sealed(changed, self.pii)))
        self._loaded[id(aggregate)] = (asdict(aggregate.dossier) if aggregate.dossier else None,
                                       {msg.id: asdict(msg) for msg in aggregate.messages})


class TemplateCache:
    """The officials' templates, kept in memory for ``seconds`` (default 5) by each process.

    Every event that queues a message needs its template; reading the table each time cost a
    statement per event. An edit goes through notify itself (``PUT /api/v1/templates``): the
    process that saved it drops its copy once the edit has committed, so its next message uses
    it. notify may run as several replicas, and the others learn of the edit only when their copy
    expires: a short time to live (not a version check, which would be a statement per event
    again) bounds that to ``seconds``. A copy read while an edit was committing is not kept (the
    generation check), so an edit is never hidden for longer than that.
    """

    def __init__(self, seconds: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._rows: dict | None = None
        self._read_at = 0.0
        self._generation = 0

    def rows(self, read: Callable[[], dict]) -> dict:
        """(key, channel) -> row: the copy in memory while fresh, else ``read()`` (and kept)."""
        now = self.clock()
        if self._rows is not None and now - self._read_at < self.seconds:
            return self._rows
        generation = self._generation
        rows = read()
        if generation == self._generation:        # no edit committed meanwhile
            self._rows, self._read_at = rows, now
        return rows

    def invalidate(self) -> None:
        self._rows = None
        self._generation += 1


class SqlTemplates:
    def __init__(self, session: Session, cache: TemplateCache | None = None):
        self.session = session
        self.cache = cache
        self.saved = False
        self._stored: dict | None = None

    def stored(self) -> dict:
        """(key, channel) -> row of the officials' templates, read from the table once per unit of
        work (what an official lists is never an older copy)."""
        if self._stored is None:
            self._stored = {(r.key, r.channel): r for r in self.session.execute(
                select(t).order_by(t.c.key, t.c.channel)).all()}
        return self._stored

    def get(self, key: str, channel: str) -> templates.Template:
        """The template in force: the officials' version (from the cache when there is one), or
        the packaged default."""
        rows = self.cache.rows(self.stored) if self.cache is not None else self.stored()
        row = rows.get((key, channel))
        if row is not None:
            return templates.Template(key, channel, row.subject, row.body)
        return templates.defaults()[(key, channel)]

    def save(self, template: templates.Template, by: str) -> None:
        statement = insert(t).values(key=template.key, channel=template.channel, subject=template.subject,
                                     body=template.body, updated_by=by)
        self.session.execute(statement.on_conflict_do_update(
            index_elements=["key", "channel"],
            set_={"subject": template.subject, "body": template.body, "updated_by": by, "updated_at": func.now(),
                  "version": t.c.version + 1}))
        self._stored = None
        self.saved = True
        if self.cache is not None:
            self.cache.invalidate()     # and again once committed (SqlUnitOfWork.__exit__)


class SqlDigests:
    def __init__(self, session: Session):
        self.session = session

    def claim(self, unit: str, day: date, now: datetime) -> bool:
        """Once per unit and day, whatever the number of replicas: the row is written in the
        digest's transaction (a crash or a database error rolls it back, and the next check tries
        again); a digest that failed to render keeps its row, marked failed (:meth:`failed`)."""
        statement = insert(models.digests).values(unit=unit, day=day, sent_at=now).on_conflict_do_nothing()
        return self.session.execute(statement.returning(models.digests.c.unit)).first() is not None

    def failed(self, unit: str, day: date, reason: str) -> None:
        """The claimed day's digest could not be rendered: recorded with its reason (committed with
        the claim, so the day is not tried again)."""
        self.session.execute(update(models.digests).where(
            models.digests.c.unit == unit, models.digests.c.day == day).values(state="failed", reason=reason))

    def figures(self, unit: str, since: datetime, today: date, limit: int = DIGEST_MAX_CODES) -> DigestFigures:
        """Same figures as :func:`services.notify.messages.digest_figures`, counted by PostgreSQL:
        the three counts in one statement, then the first ``limit`` codes of each list, each read
        from an index in the list's order (``models``: ``ix_dossiers_digest_*``), never every code.
        Overdue is what routing said (``dossier.overdue``), not a date notify compares."""
        due_where = (d.c.unit == unit, d.c.open, d.c.appointment_date == today)
        overdue_where = (d.c.unit == unit, d.c.open, d.c.overdue)

        def count(*where):
            return select(func.count()).select_from(d).where(*where).scalar_subquery()

        received, due_count, overdue_count = self.session.execute(select(
            count(d.c.unit == unit, d.c.received_at >= since), count(*due_where), count(*overdue_where))).one()
        due = list(self.session.execute(select(d.c.code).where(*due_where).order_by(d.c.code)
                                        .limit(limit)).scalars()) if due_count and limit else []
        overdue = list(self.session.execute(select(d.c.code).where(*overdue_where).order_by(
            d.c.appointment_date.asc().nulls_last(), d.c.code).limit(limit)).scalars()) \
            if overdue_count and limit else []
        return DigestFigures(received, due, overdue, due_count, overdue_count)


class SqlInbox:
    def __init__(self, session: Session):
        self.session = session

    def first_time(self, event) -> bool:
        return first_time(self.session, models.processed_events, event)


class SqlUnitOfWork:
    """``with uow: ... uow.commit()``: one transaction; leaving without commit rolls back."""

    def __init__(self, sessions, templates: TemplateCache | None = None, *, pii: KeyRing):
        self.sessions = sessions                    # the service's motcua.runtime.db.UnitOfWork
        self.template_cache, self.pii = templates, pii

    def __enter__(self) -> Self:
        self._transaction = self.sessions.transaction()
        self.session = self._transaction.__enter__()
        self.dossiers = SqlDossiers(self.session, self.pii)
        self.templates = SqlTemplates(self.session, self.template_cache)
        self.digests = SqlDigests(self.session)
        self.inbox = SqlInbox(self.session)
        self._committed = False
        return self

    def commit(self) -> None:
        for aggregate in self.dossiers.seen:
            self.dossiers.save(aggregate)
            aggregate.events = []
        self.session.info["wake_outbox"] = True     # the after-commit callbacks: the dispatcher
        self._committed = True

    def __exit__(self, kind, error, traceback):
        if kind is None and not self._committed:
            try:                                    # not committed: the transaction is rolled back
                self._transaction.__exit__(_Rollback, _Rollback(), None)
            except _Rollback:
                pass
            return False
        result = self._transaction.__exit__(kind, error, traceback)
        if kind is None and self.templates.saved and self.template_cache is not None:
            self.template_cache.invalidate()        # committed: the next message uses the edit
        return result


class LeasedMessages:
    """The aggregate of a message the dispatcher leased, built from the row the lease returned:
    nothing is read again."""

    def __init__(self):
        self.seen: list[DossierMessages] = []
        self.lost: list[DossierMessages] = []       # the message was no longer 'sending': nothing written
        self._leased: dict[int, dict] = {}

    def leased(self, row) -> DossierMessages:
        message = _message(row)
        aggregate = DossierMessages(row.code, None, [message])
        self.seen.append(aggregate)
        self._leased[id(aggregate)] = asdict(message)
        return aggregate

    def was_lost(self, aggregate: DossierMessages) -> bool:
        return any(lost is aggregate for lost in self.lost)


class SentUnitOfWork:
    """A leased message's outcome written in ONE statement, outside any transaction (autocommit):
    the message's changed fields, only while it is still 'sending' (what another process recorded
    first stays as it is).

    The dispatcher records each message so, right after its provider accepted it and before its
    sender sends the next: a crash re-sends at most the one message each sender had in flight.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def __enter__(self) -> Self:
        self.dossiers = LeasedMessages()
        return self

    def commit(self) -> None:
        with autocommit(self.engine) as connection:
            for aggregate in self.dossiers.seen:
                before = self.dossiers._leased[id(aggregate)]
                [message] = aggregate.messages
                changed = {k: v for k, v in asdict(message).items() if before.get(k) != v}
                aggregate.events = []
                if changed and connection.execute(
                        update(m).where(m.c.id == message.id, m.c.state == "sending").values(**changed)
                        .returning(m.c.id)).first() is None:
                    self.dossiers.lost.append(aggregate)

    def __exit__(self, kind, error, traceback):
        return False


class _Rollback(Exception):
    """Leaves the transaction without writing (a command that decided nothing)."""
