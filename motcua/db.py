"""Database access: SQLAlchemy 2 over psycopg2, one PostgreSQL schema per service.

psycopg2 is cooperative under eventlet's monkey patching, so a blocking query yields to
other workers. Each service declares its tables on a ``MetaData(schema=<service>)`` and
keeps its own Alembic migrations (see ``motcua.migrations``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

from nameko.extensions import DependencyProvider
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATABASE_URL = "postgresql+psycopg2://motcua@127.0.0.1:5432/motcua"

# Constraint names that Alembic can compare and drop: the same on every machine.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def database_url(config: dict | None = None) -> str:
    return (config or {}).get("DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def make_engine(url: str, *, pool_size: int = 10, application_name: str = "motcua") -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"application_name": application_name},
    )


class UnitOfWork:
    """What a worker gets: transactions on the service's database.

    ``after_commit`` callbacks run once a transaction that asked for them has committed
    (the outbox uses it to wake its relay without waiting for the next poll).
    """

    def __init__(self, sessions: sessionmaker, after_commit: list[Callable[[], None]]):
        self._sessions = sessions
        self._after_commit = after_commit

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            with session.begin():
                yield session
            if session.info.pop("wake_outbox", False):
                for callback in self._after_commit:
                    callback()
        finally:
            session.close()

    def ping(self) -> None:
        with self._sessions() as session:
            session.execute(text("SELECT 1"))


class Database(DependencyProvider):
    """nameko dependency: one engine per container, a UnitOfWork per worker."""

    def __init__(self, pool_size: int = 10):
        self.pool_size = pool_size
        self.after_commit: list[Callable[[], None]] = []

    def setup(self) -> None:
        self.engine = make_engine(database_url(self.container.config), pool_size=self.pool_size,
                                  application_name=self.container.service_name)
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)

    def stop(self) -> None:
        self.engine.dispose()

    def kill(self) -> None:
        self.engine.dispose()

    def get_dependency(self, worker_ctx) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.after_commit)
