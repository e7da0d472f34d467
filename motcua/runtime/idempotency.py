"""Idempotency keys on HTTP writes, and the write's transaction that stores the answer with the effect.

A desk whose answer was lost (a timeout, a replica killed) sends the write again with the same
``Idempotency-Key``: it gets the first call's answer (same status, same body) and nothing is
done twice. The key, the request's fingerprint and the answer are stored in the SAME
transaction as the command's effect, so a crash leaves either both or neither:

* ``around`` (step 4 of ``HttpEntrypoint.handle_request``) puts a ``Write`` on the request;
  the service's ``db.transaction()`` (``UnitOfWork``) joins it instead of opening its own.
* The write's transaction opens at the service's first ``db.transaction()`` (not before: the
  code before it may call other services), and its first statement claims the key. A request
  with the same key still running holds that row: the claim waits for it, then answers what it
  answered (or runs, if it failed); after ``IDEMPOTENCY_WAIT_SECONDS`` (10) it answers 409
  with ``Retry-After`` instead.
* After the call, the answer and the audit entry are written, then one COMMIT; the outbox's
  after-commit hooks run after it, as a plain transaction's do.

A call whose transaction failed (a refusal raised inside it, any exception, a 5xx answer)
changed nothing and is not remembered: sent again with its key, it runs again. Keys expire
(``IDEMPOTENCY_KEY_HOURS``, 24 h by default) and are purged by the replicas now and then.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from types import SimpleNamespace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import structlog
from sqlalchemy import (Column, DateTime, Index, Integer, LargeBinary, MetaData, Table, Text, delete, select,
                        text, update)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Response

from motcua.contracts.pii import KeyRing
from motcua.contracts.refusals import Conflict, Invalid, Refusal
from motcua.runtime import audit
from motcua.runtime.db import Database, WRITE_ENVIRON_KEY, autocommit, run_after_commit
from motcua.runtime.observability import error_response
from motcua.runtime.pii import SETTINGS as PII_SETTINGS, keyring as pii_keyring

log = structlog.get_logger("motcua.idempotency")

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200
DEFAULT_HOURS = 24.0
DEFAULT_WAIT_SECONDS = 10.0
LOCK_NOT_AVAILABLE = "55P03"     # SQLSTATE of a lock wait past lock_timeout
PURGE_EVERY_SECONDS = 600.0
RETRY_AFTER_SECONDS = 1
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REPLAYED_HEADER = "Idempotent-Replayed"
# Headers of an answer worth giving again (the body's type, a created resource's address, a file's name).
KEPT_HEADERS = ("Content-Type", "Location", "Content-Disposition", "Retry-After")

# The services' key tables, by schema (= service name).
TABLES: dict[str, Table] = {}


def idempotency_table(metadata: MetaData) -> Table:
    table = Table(
        "idempotency_keys", metadata,
        Column("key", Text, primary_key=True),
        Column("fingerprint", Text, nullable=False),   # SHA-256 of method, path, official, unit, body hash
        Column("status", Integer),                     # the answer: NULL only inside the claiming transaction
        Column("headers", Text, nullable=False, server_default="{}"),
        Column("body", LargeBinary),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    Index(f"ix_{table.name}_expires_at", table.c.expires_at)
    TABLES[metadata.schema] = table
    return table


def wait_seconds(config: dict) -> float:
    """How long a claim waits for another request holding the same key before a 409."""
    return float(config.get("IDEMPOTENCY_WAIT_SECONDS") or os.environ.get("IDEMPOTENCY_WAIT_SECONDS")
                 or DEFAULT_WAIT_SECONDS)


def lifetime(config: dict) -> timedelta:
    """How long a key is remembered: ``IDEMPOTENCY_KEY_HOURS`` (config or environment), 24 h by default."""
    hours = config.get("IDEMPOTENCY_KEY_HOURS") or os.environ.get("IDEMPOTENCY_KEY_HOURS") or DEFAULT_HOURS
    return timedelta(hours=float(hours))


class KeyTaken(Exception):
    """Raised inside the service's code when another request with the same key committed first:
    the service's code unwinds and the stored answer is given instead. Not a refusal, so no
    service code answers it."""


def key_of(request) -> str | None:
    """The request's key, None without one; a malformed one is a refusal naming the header."""
    if HEADER not in request.headers:
        return None
    key = request.headers.get(HEADER, "").strip()
    if not key:
        raise _Malformed("is empty: send a unique key per write (e.g. a UUID), or no header")
    if len(key) > MAX_KEY_LENGTH:
        raise _Malformed(f"is {len(key)} characters long: at most {MAX_KEY_LENGTH}")
    if not key.isprintable() or not key.isascii():
        raise _Malformed("must be printable ASCII (e.g. a UUID)")
    return key


class _Malformed(Exception):
    pass


def fingerprint(method: str, path: str, query: bytes, official: str, unit: str, body: bytes) -> str:
    """What makes two requests "the same" for a key: method, path and query, acting official and
    unit, and the body (its hash)."""
    parts = [method, path, query.decode("latin-1"), official, unit, hashlib.sha256(body).hexdigest()]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


class Write:
    """One write's transaction (an HTTP write, or an RPC call with a key): opened by the service's
    first ``db.transaction()`` (``join``), committed once the answer is known (``finish``)."""

    def __init__(self, sessions: sessionmaker, after_commit: list[Callable[[dict], None]], *,
                 table: Table | None, key: str | None, fingerprint: str, now: datetime, ttl: timedelta,
                 log: Table | None = None):
        self._sessions, self._after_commit, self.log = sessions, after_commit, log
        self.table, self.key, self.fingerprint, self.now, self.ttl = table, key, fingerprint, now, ttl
        self.session: Session | None = None
        self.taken = False          # another request with the key committed first
        self.busy = False           # another request held the key longer than ``wait`` seconds
        self.wait = DEFAULT_WAIT_SECONDS
        self.pii: KeyRing | None = None     # a service keeping ID or phone numbers: its answers stored sealed

    @contextmanager
    def join(self) -> Iterator[Session]:
        if self.session is None:
            self._open()
        try:
            yield self.session
        except BaseException:
            # A failed block changed nothing: roll its transaction back now (the key's claim too).
            self.rollback()
            raise

    def _open(self) -> None:
        session = self._sessions()
        session.begin()
        try:
            if self.key is not None and not self._claim(session):
                self.taken = True
                raise KeyTaken(self.key)
        except DBAPIError as error:
            session.rollback()
            session.close()
            if getattr(error.orig, "pgcode", None) == LOCK_NOT_AVAILABLE:
                self.busy = True
                raise KeyTaken(self.key) from None
            raise
        except BaseException:
            session.rollback()
            session.close()
            raise
        self.session = session

    def _claim(self, session: Session) -> bool:
        """Insert the key's row (waiting for a request that holds it uncommitted); an expired row is
        taken over. False when the key is another request's, committed."""
        t = self.table
        values = {"key": self.key, "fingerprint": self.fingerprint, "status": None, "headers": "{}", "body": None,
                  "created_at": self.now, "expires_at": self.now + self.ttl}
        statement = pg_insert(t).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.key], set_={name: statement.excluded[name] for name in values if name != "key"},
            where=t.c.expires_at <= self.now).returning(t.c.key)
        # Only this statement waits at most ``wait`` seconds; the command's own locks wait as before.
        session.execute(text("SELECT set_config('lock_timeout', :timeout, true)"),
                        {"timeout": f"{int(self.wait * 1000)}ms"})
        claimed = session.execute(statement).first() is not None
        session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
        return claimed

    def finish(self, response: Response, entry: dict | None) -> None:
        """Store the answer with the key and the audit entry, then COMMIT (and the after-commit hooks)."""
        session = self.session
        if self.key is not None:
            headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
            session.execute(update(self.table).where(self.table.c.key == self.key).values(
                status=response.status_code, headers=json.dumps(headers), body=seal_answer(response.get_data(),
                                                                                           self.pii)))
        if entry is not None:
            audit.append(session, self.log, **entry)
        try:
            session.commit()
            run_after_commit(session, self._after_commit)     # as UnitOfWork.transaction: after COMMIT
        finally:
            self.session = None
            session.close()

    def finish_result(self, result) -> None:
        """An RPC call's result stored with its key, then COMMIT (and the after-commit hooks)."""
        self.finish(Response(json.dumps(result, ensure_ascii=False), status=200, mimetype="application/json"),
                    None)

    def rollback(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            try:
                session.rollback()
            finally:
                session.close()


def stored(sessions: sessionmaker, table: Table, key: str, now: datetime):
    """The key's committed, unexpired row, or None."""
    with autocommit(sessions.kw["bind"]) as connection:
        return connection.execute(select(table).where(table.c.key == key, table.c.expires_at > now)).first()


def replay(row, fingerprint_now: str) -> Response:
    if row.fingerprint != fingerprint_now:
        return error_response(422, f"{HEADER}: this key was used for another request (method, path, official "
                                   "or body differ): use a new key for a new request", HEADER)
    if row.status is None:      # never visible committed; kept for safety
        return _in_progress()
    response = Response(row.body, status=row.status, headers=json.loads(row.headers))
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _in_progress() -> Response:
    response = error_response(409, f"{HEADER}: a request with this key is still in progress: try again", HEADER)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


_last_purge: dict[str, float] = {}


def purge(sessions: sessionmaker, table: Table, now: datetime) -> int:
    """Delete the expired keys (one statement, no transaction of its own)."""
    with autocommit(sessions.kw["bind"]) as connection:
        return connection.execute(delete(table).where(table.c.expires_at <= now)).rowcount


def _purge_now_and_then(entrypoint, sessions: sessionmaker, table: Table, now: datetime) -> None:
    last = _last_purge.get(table.fullname)
    if last is not None and time.monotonic() - last < PURGE_EVERY_SECONDS:
        return
    _last_purge[table.fullname] = time.monotonic()

    def run():
        try:
            purge(sessions, table, now)
        except Exception:   # the next one will do it; a write is not answered worse for it
            log.warning("idempotency keys not purged", table=table.fullname, exc_info=True)
    entrypoint.container.spawn_managed_thread(run, identifier="idempotency-purge")


def _database(container) -> Database | None:
    return next((d for d in container.dependencies if isinstance(d, Database)), None)


def _acting(request, official_of) -> tuple[str, str]:
    try:
        return official_of(request)
    except Refusal:
        return "", ""


def _dossier(request, response: Response) -> str:
    code = (getattr(request, "path_values", None) or {}).get("code")
    if code:
        return str(code)
    if response.status_code < 300 and response.mimetype == "application/json":
        try:
            body = json.loads(response.get_data())
        except ValueError:
            return ""
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            return body["code"]
    return ""


# An answer stored with its key (intake's holds the applicant's ID and phone numbers) is kept sealed
# in a service that has the personal-data keys, whole, so that it is given again byte for byte.
ANSWER = "answer"


def seal_answer(body: bytes | None, pii: KeyRing | None) -> bytes | None:
    if not body or pii is None:
        return body
    return pii.seal(body.decode("utf-8", "surrogateescape"), ANSWER).encode("ascii")


def open_answer(body: bytes | None, pii: KeyRing | None) -> bytes | None:
    if not body or not body.startswith(b"pii1:") or pii is None:
        return body
    return pii.open(body.decode("ascii"), ANSWER).encode("utf-8", "surrogateescape")


def seal_stored_answers(connection, table: str, pii: KeyRing) -> int:
    """The answers a table (``schema.idempotency_keys``) holds in clear, sealed (a migration)."""
    rows = connection.execute(text(f"SELECT key, body FROM {table} WHERE body IS NOT NULL")).all()
    clear = [(key, bytes(body)) for key, body in rows if not bytes(body).startswith(b"pii1:")]
    for key, body in clear:
        connection.execute(text(f"UPDATE {table} SET body = :body WHERE key = :key"),
                           {"key": key, "body": seal_answer(body, pii)})
    return len(clear)


class Store:
    """Where a service keeps its keys and its audit chain: its database (the fakes of the unit
    tests stand in for this)."""

    def __init__(self, database: Database, keys: Table | None, log: Table | None, pii: KeyRing | None = None):
        self.database, self.keys, self.log, self.pii = database, keys, log, pii

    def stored(self, key: str, now: datetime):
        row = stored(self.database.sessions, self.keys, key, now)
        if row is None or self.pii is None:
            return row
        return SimpleNamespace(**{**row._asdict(), "body": open_answer(row.body, self.pii)})

    def write(self, key: str | None, fingerprint_: str, now: datetime, ttl: timedelta) -> Write:
        write = Write(self.database.sessions, self.database.after_commit, table=self.keys, key=key,
                      fingerprint=fingerprint_, now=now, ttl=ttl, log=self.log)
        write.pii = self.pii
        return write

    def append_alone(self, entry: dict) -> None:
        """The audit entry of a write that committed nothing (refused, replayed, failed), in its own transaction."""
        session = self.database.sessions()
        try:
            with session.begin():
                audit.append(session, self.log, **entry)
        finally:
            session.close()

    def purge_now_and_then(self, entrypoint, now: datetime) -> None:
        _purge_now_and_then(entrypoint, self.database.sessions, self.keys, now)


def store_of(container) -> Store | None:
    service = container.service_name
    keys, log_table = TABLES.get(service), audit.TABLES.get(service)
    database = _database(container)
    if database is None or (keys is None and log_table is None):
        return None
    config = container.config
    return Store(database, keys, log_table,
                 pii_keyring(config) if all(config.get(name) for name in PII_SETTINGS) else None)


def around(entrypoint, request, call: Callable[[], Response], official_of, store: Store | None = None) -> Response:
    """Step 4 of the HTTP pipeline: the idempotency key and the audit entry of a write, around ``call``.

    Reads and services without the tables (``idempotency_table``, ``audit.audit_table``) run as before."""
    if request.method not in WRITE_METHODS:
        return call()
    store = store or store_of(entrypoint.container)
    if store is None:
        return call()
    try:
        key = key_of(request) if store.keys is not None else None
    except _Malformed as malformed:
        return error_response(400, f"{HEADER}: {malformed}", HEADER)
    request.shallow = False         # as nameko's handle_request does: the body may be read
    now = datetime.now(timezone.utc)
    ttl = lifetime(entrypoint.container.config)
    body = request.get_data()       # cached: the service reads it again
    name, unit = _acting(request, official_of)
    print_ = fingerprint(request.method, request.path, request.query_string, name, unit, body)
    entry = None
    if store.log is not None:
        entry = {"at": now, "official": name, "unit": unit, "method": request.method,
                 "route": request.url_rule.rule if getattr(request, "url_rule", None) else request.path,
                 "dossier": "", "status": 0, "idempotency_key": key or "", "body_sha256": audit.body_hash(body)}
    write = store.write(key, print_, now, ttl)
    write.wait = wait_seconds(entrypoint.container.config)
    try:
        if key is not None:
            store.purge_now_and_then(entrypoint, now)
            row = store.stored(key, now)
            if row is not None:
                return _audited(store, entry, request, replay(row, print_))
        request.environ[WRITE_ENVIRON_KEY] = write
        try:
            response = call()
        except KeyTaken:     # nameko's handle_request answers it (500); a bare call may raise it
            response = None
        if write.busy:
            return _audited(store, entry, request, _in_progress())
        if write.taken:
            row = store.stored(key, now)
            return _audited(store, entry, request, replay(row, print_) if row is not None else _in_progress())
        if write.session is not None and response.status_code < 500:
            if entry is not None:
                entry.update(status=response.status_code, dossier=_dossier(request, response))
            write.finish(response, entry)
            return response
        write.rollback()
        return _audited(store, entry, request, response)
    except Exception as exc:
        write.rollback()
        log.warning("write not completed", method=request.method, path=request.path, exc_info=True)
        return entrypoint.response_from_exception(exc)
    finally:
        request.environ.pop(WRITE_ENVIRON_KEY, None)


def _audited(store: Store, entry: dict | None, request, response: Response) -> Response:
    if entry is not None:
        entry.update(status=response.status_code, dossier=_dossier(request, response))
        store.append_alone(entry)
    return response


# --- RPC: the gateway's writes ---------------------------------------------------------------------

RPC_CONTEXT_KEY = "idempotency_key"     # the context data (nameko headers) an RPC write's key comes in


class RpcStep:
    """What an RPC call with a key becomes: an answer given at once (``result`` or ``refusal``:
    the stored result of the same call, or a refusal of a key used for another call), or a
    ``write`` for the worker's commands to join."""

    def __init__(self, *, result=None, refusal: Refusal | None = None, write: Write | None = None,
                 store: Store | None = None):
        self.result, self.refusal, self.write, self.store = result, refusal, write, store


def rpc_fingerprint(method: str, args, kwargs) -> str:
    call = json.dumps([method, args, kwargs], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(call.encode("utf-8")).hexdigest()


def rpc_step(container, method: str, body: dict, context_data: dict, store: Store | None = None) -> RpcStep | None:
    """None for a call without a key, or in a service without the table: it runs as before."""
    key = context_data.get(RPC_CONTEXT_KEY)
    if not key or not isinstance(body, dict):
        return None
    store = store or store_of(container)
    if store is None or store.keys is None:
        return None
    # The gateway checked the unit system's key (at most MAX_KEY_LENGTH) and prefixed its unit.
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH + 100 or not key.isprintable():
        return RpcStep(refusal=Invalid("idempotency-key", f"must be printable, at most {MAX_KEY_LENGTH} characters"))
    now = datetime.now(timezone.utc)
    print_ = rpc_fingerprint(method, body.get("args"), body.get("kwargs"))
    row = store.stored(key, now)
    if row is not None:
        return _rpc_replay(row, print_)
    write = store.write(key, print_, now, lifetime(container.config))
    write.wait = wait_seconds(container.config)
    return RpcStep(write=write, store=store)


def _rpc_replay(row, fingerprint_now: str) -> RpcStep:
    if row.fingerprint != fingerprint_now:
        return RpcStep(refusal=Invalid("idempotency-key", "this key was used for another call (method, dossier, "
                                       "official or content differ): use a new key for a new request"))
    return RpcStep(result=json.loads(row.body))


def rpc_result(step: RpcStep, result, exc_info):
    """After the worker: its result stored and committed with its effect (then sent), or its
    failure rolled back; a key another call committed first answers that call's result."""
    write = step.write
    try:
        if write.busy:
            return None, _exc_info(Conflict("idempotency-key", "a call with this key is still in progress: "
                                            "try again in a moment"))
        if write.taken:
            row = step.store.stored(write.key, write.now)
            answer = _rpc_replay(row, write.fingerprint) if row is not None else RpcStep(
                refusal=Conflict("idempotency-key", "a call with this key is still in progress: try again"))
            return (answer.result, None) if answer.refusal is None else (None, _exc_info(answer.refusal))
        if exc_info is None and write.session is not None:
            write.finish_result(result)
        else:
            write.rollback()
        return result, exc_info
    except Exception as exc:
        write.rollback()
        return None, _exc_info(exc)


def _exc_info(exc: BaseException):
    return type(exc), exc, exc.__traceback__
