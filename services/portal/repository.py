"""The portal sync's units of work on PostgreSQL: one transaction for a batch of events (inbox rows
and queued changes together), one autocommitted statement for an attempt's outcome."""
from __future__ import annotations

from typing import Self

from sqlalchemy.engine import Engine

from motcua.runtime.db import autocommit
from motcua.runtime.inbox import first_time
from services.portal import models, store


class SqlRows:
    def __init__(self, session):
        self.session = session

    def add(self, row) -> bool:
        return store.add(self.session, row)


class SqlUnitOfWork:
    """``with uow: ... uow.commit()``: one transaction; leaving without commit rolls back."""

    def __init__(self, sessions):
        self.sessions = sessions                  # the service's motcua.runtime.db.UnitOfWork

    def __enter__(self) -> Self:
        self._transaction = self.sessions.transaction()
        self.session = self._transaction.__enter__()
        self.rows = SqlRows(self.session)
        self._committed = False
        return self

    def first_time(self, event) -> bool:
        return first_time(self.session, models.processed_events, event)

    def commit(self) -> None:
        self.session.info["wake_outbox"] = True   # the after-commit callbacks: the sender wakes
        self._committed = True

    def __exit__(self, kind, error, traceback):
        # The handler commits or raises: an error rolls the transaction back.
        return self._transaction.__exit__(kind, error, traceback)


class OutcomeWriter:
    """An attempt's outcome in one statement outside any transaction, right after the portal answered."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def save_outcome(self, row) -> None:
        with autocommit(self.engine) as connection:
            store.save_outcome(connection, row)
