"""Database access: SQLAlchemy 2 over psycopg2, one PostgreSQL schema per service.

psycopg2 is cooperative under eventlet's monkey patching, so a blocking query yields to
other workers. Each service declares its tables on a ``MetaData(schema=<service>)`` and
keeps its own Alembic migrations (see ``motcua.runtime.migrations``).
"""
from __future__ import annotations

import os
import time
import uuid
import weakref
from contextlib import contextmanager
from datetime import date, datetime
from functools import lru_cache
from typing import Callable, Iterator

from nameko.extensions import DependencyProvider
from sqlalchemy import Date, DateTime, MetaData, Table, create_engine, event, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID, aggregate_order_by
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import Label

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


def with_failover(url: str | URL) -> URL:
    """The URL as the engines use it. Several hosts (``?host=a:5432&host=b:5432``, libpq tries them
    in order): unless the URL says otherwise, only a server that accepts writes will do
    (``target_session_attrs=read-write``); without it libpq would settle for the first server that
    answers, a standby too, and every command would fail there as "read-only"."""
    url = make_url(url)
    hosts = url.query.get("host")
    several = (isinstance(hosts, tuple) and len(hosts) > 1) or "," in str(hosts or "")
    if several and "target_session_attrs" not in url.query:
        url = url.update_query_dict({"target_session_attrs": "read-write"})
    return url


def libpq_dsn(url: str | URL) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg2://…``) as the libpq connection string that
    ``psycopg2.connect`` takes, the several hosts of a failover URL included (``host=a,b
    port=5441,5442``): SQLAlchemy's own translation, so a URL means the same to both."""
    from psycopg2.extensions import make_dsn
    from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
    args, params = PGDialect_psycopg2().create_connect_args(with_failover(url))
    return make_dsn(*args, **params)


# A pooled connection idle longer than this is pinged before use (see ``ping_after_idle``).
PING_AFTER_IDLE_SECONDS = 10.0


def make_engine(url: str, *, pool_size: int = 10, application_name: str = "motcua",
                ping_after_idle: float = PING_AFTER_IDLE_SECONDS, max_overflow: int | None = None) -> Engine:
    engine = create_engine(
        with_failover(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        connect_args={"application_name": application_name},
    )
    ping_idle_connections(engine, ping_after_idle)
    read_only_is_disconnect(engine)
    return engine


# SQLSTATE 25006 read_only_sql_transaction: "cannot execute INSERT in a read-only transaction".
READ_ONLY_SQL_TRANSACTION = "25006"


def read_only_is_disconnect(engine: Engine) -> None:
    """A server that refuses writes is, for a service, as good as gone: the pooled connections
    lead to a standby (the old primary restarted as one, or a failover URL without
    ``target_session_attrs``). The error then counts as a disconnect, so SQLAlchemy drops every
    pooled connection and the next transactions connect again, to the new primary; the command
    fails as transient (``DBAPIError.connection_invalidated``: an event is put back, a desk gets
    503)."""

    @event.listens_for(engine, "handle_error")
    def _read_only(context):
        if getattr(context.original_exception, "pgcode", None) == READ_ONLY_SQL_TRANSACTION:
            context.is_disconnect = True


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle in the pool.

    SQLAlchemy's ``pool_pre_ping`` costs a ``SELECT 1`` round trip before *every* transaction
    (the throughput benchmark found it in every service's profile). A connection checked in less
    than ``idle_seconds`` ago was just working, so it is handed out as is; an older one is pinged
    and, if the server dropped it (a restart, an idle timeout), replaced before use. A connection
    that breaks while busy fails that one transaction, and SQLAlchemy then invalidates every pooled
    connection older than the failure, so the next transactions reconnect (event consumers put the
    message back on such an error: ``motcua.runtime.inbox.TRANSIENT_ERRORS``).
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection, record):
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, proxy):
        checked_in = record.info.get("checked_in_at")
        if checked_in is None or time.monotonic() - checked_in < idle_seconds:
            return                          # new, or in use a moment ago
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()     # psycopg2 opened a transaction for the SELECT
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                # The pool replaces the connection and tries again (up to three times).
                raise sa_exc.DisconnectionError(f"pooled connection is gone: {error}") from error
            raise


@contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    """A pooled connection without a transaction, for one statement that needs none (a poll, a
    gauge's count, a self-contained UPDATE … RETURNING): no BEGIN and no COMMIT or ROLLBACK around
    it. psycopg2's own switch: SQLAlchemy's ``isolation_level="AUTOCOMMIT"`` would also send a
    ``SET default_transaction_isolation`` each time the connection goes back to the pool."""
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        driver.autocommit = True
        try:
            yield connection
        finally:
            try:
                driver.autocommit = False   # nothing open: the pool's reset sends no ROLLBACK
            except engine.dialect.loaded_dbapi.Error:
                pass                        # the connection broke: the pool discards it


def rows_as_json(table: Table, where, *order_by) -> Label:
    """The rows of ``table`` that ``where`` selects (correlated to the parent row's columns), as
    one JSON array beside the parent's row: an aggregate's child rows read in the parent's one
    round trip. ``rows_from_json`` gives them back with their Python types."""
    pairs = []
    for column in table.c:
        pairs += [literal_column(f"'{column.name}'"), column]
    item = func.json_build_object(*pairs)
    rows = func.json_agg(aggregate_order_by(item, *order_by) if order_by else item)
    return select(func.coalesce(rows, text("'[]'::json"))).where(where).scalar_subquery().label(table.name)


def rows_from_json(table: Table, items: list[dict]) -> list[dict]:
    """``rows_as_json``'s array as rows (dicts): instants, dates and UUIDs parsed back from JSON."""
    convert = _json_converters(table)
    return [{name: convert[name](value) if value is not None else None for name, value in item.items()}
            for item in items]


@lru_cache(maxsize=None)
def _json_converters(table: Table) -> dict:
    def converter(kind):
        if isinstance(kind, DateTime):
            return datetime.fromisoformat
        if isinstance(kind, Date):
            return date.fromisoformat
        if isinstance(kind, PG_UUID):
            return uuid.UUID if kind.as_uuid else str
        return lambda value: value
    return {column.name: converter(column.type) for column in table.c}


# Where an HTTP write's transaction (``motcua.runtime.idempotency.Write``) waits in the request's
# WSGI environ for the worker's unit of work to join it.
WRITE_ENVIRON_KEY = "motcua.write"


def run_after_commit(session: Session, callbacks: list[Callable[[dict], None]]) -> None:
    if session.info.pop("wake_outbox", False):
        for callback in callbacks:
            callback(session.info)


# RPC workers' write transactions (an RPC call sent with an idempotency key), by worker context.
_rpc_writes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def register_write(worker_ctx, write) -> None:
    """Before the worker runs (``spawn_worker`` only schedules it): its commands join ``write``."""
    _rpc_writes[worker_ctx] = write


def write_of(worker_ctx) -> object | None:
    """The write's transaction a worker's commands join, if its HTTP request or RPC call has one."""
    if worker_ctx in _rpc_writes:
        return _rpc_writes[worker_ctx]
    request = worker_ctx.args[0] if getattr(worker_ctx, "args", None) else None
    environ = getattr(request, "environ", None)
    return environ.get(WRITE_ENVIRON_KEY) if isinstance(environ, dict) else None


class UnitOfWork:
    """What a worker gets: transactions on the service's database.

    ``after_commit`` callbacks run once a transaction that asked for them has committed, with
    the session's ``info`` (the outbox hands its relay the rows just committed; notify's
    dispatcher wakes without waiting for its next poll).

    In an HTTP write (``write``), ``transaction()`` joins the write's one transaction, which
    commits once the answer is stored with the idempotency key (``motcua.runtime.idempotency``).
    """

    def __init__(self, sessions: sessionmaker, after_commit: list[Callable[[dict], None]], write=None):
        self._sessions = sessions
        self._after_commit = after_commit
        self._write = write

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        if self._write is not None:
            with self._write.join() as session:
                yield session
            return
        session = self._sessions()
        try:
            with session.begin():
                yield session
            run_after_commit(session, self._after_commit)
        finally:
            session.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for a question: no transaction (no BEGIN, no COMMIT), each statement seeing
        what was committed when it runs; for views read in one statement, never for a command."""
        with autocommit(self._sessions.kw["bind"]) as connection, Session(bind=connection) as session:
            yield session

    def ping(self) -> None:
        with self._sessions() as session:
            session.execute(text("SELECT 1"))


class Database(DependencyProvider):
    """nameko dependency: one engine per container, a UnitOfWork per worker."""

    def __init__(self, pool_size: int = 10):
        self.pool_size = pool_size
        self.after_commit: list[Callable[[dict], None]] = []

    def setup(self) -> None:
        config = self.container.config
        # DB_POOL_SIZE / DB_MAX_OVERFLOW (config or environment): the connections of every replica
        # of every service must fit in the server's max_connections.
        pool_size = int(config.get("DB_POOL_SIZE") or os.environ.get("DB_POOL_SIZE") or self.pool_size)
        max_overflow = config.get("DB_MAX_OVERFLOW", os.environ.get("DB_MAX_OVERFLOW"))
        self.engine = make_engine(database_url(config), pool_size=pool_size,
                                  max_overflow=int(max_overflow) if max_overflow not in (None, "") else None,
                                  application_name=self.container.service_name)
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)

    def stop(self) -> None:
        self.engine.dispose()

    def kill(self) -> None:
        self.engine.dispose()

    def get_dependency(self, worker_ctx) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.after_commit, write_of(worker_ctx))
