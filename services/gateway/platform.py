"""What the gateway's handlers stand on: its database, the services (nameko's standalone RPC
proxies, one per thread: a proxy is not thread-safe) and the call wrapper that authenticates,
maps refusals to gRPC statuses, audits and measures every call."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from functools import cached_property
from datetime import datetime, timezone
from typing import Any, Callable

import grpc
from amqp.exceptions import AMQPError
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from kombu.exceptions import OperationalError as KombuOperationalError
from nameko.exceptions import RemoteError, RpcTimeout
from nameko.standalone.rpc import ClusterRpcProxy
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.orm import Session

from motcua.contracts.calendar import local_date
from motcua.runtime.db import make_engine
from motcua.contracts.refusals import Conflict, Forbidden, Invalid, NotFound, Refusal, Unauthenticated
from motcua.runtime.idempotency import MAX_KEY_LENGTH, RPC_CONTEXT_KEY
from motcua.runtime.inbox import transient
from motcua.runtime.keys import key_files
from motcua.runtime.pii import keyring
from motcua.runtime.observability import ENTRYPOINT_CALLS, ENTRYPOINT_SECONDS, ENTRYPOINTS_IN_FLIGHT
from services.gateway import audit, credentials

log = structlog.get_logger("motcua.gateway")

CALLS = Counter("motcua_gateway_calls_total", "gRPC calls answered by the gateway, by the caller's unit and "
                "the gRPC status code.", ["unit", "code"])
SUBSCRIBERS = Gauge("motcua_gateway_subscribers", "Unit systems subscribed to their feed now.")

STATUS_OF = {Invalid: grpc.StatusCode.INVALID_ARGUMENT, Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
             Forbidden: grpc.StatusCode.PERMISSION_DENIED, NotFound: grpc.StatusCode.NOT_FOUND,
             Conflict: grpc.StatusCode.FAILED_PRECONDITION}


UNIT_SECONDS = 60.0      # how long the gateway remembers whether a caller's unit was dissolved

# What a standalone proxy raises once its broker node is gone: RuntimeError (nameko's "disconnected,
# can no longer be used"), a socket error, or the broker's 404 when the proxy reconnects to another
# node and declares its reply queue again (nameko's reply queues are durable, kombu's default: one
# whose node is down cannot be declared elsewhere). A service's own errors come back as RemoteError
# or a refusal, never these.
BROKER_LOST = (RuntimeError, OSError, AMQPError, KombuOperationalError)


class Unavailable(Exception):
    """A service did not answer in time."""


def status_code(refusal: Refusal) -> grpc.StatusCode:
    return next((code for cls, code in STATUS_OF.items() if isinstance(refusal, cls)),
                grpc.StatusCode.INVALID_ARGUMENT)


def rich_status(refusal: Refusal) -> grpc.Status:
    """The refusal as a gRPC status whose details name the field (google.rpc.BadRequest), plus
    one violation per missing document when the desk found a dossier incomplete."""
    code = status_code(refusal)
    violations = [error_details_pb2.BadRequest.FieldViolation(field=refusal.field, description=refusal.reason)]
    for line in refusal.details.get("guidance") or []:
        violations.append(error_details_pb2.BadRequest.FieldViolation(field=refusal.field, description=line))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=violations))
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=type(refusal).__name__.upper(), domain="motcua.v1",
                                          metadata={"field": refusal.field}))
    return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, code.name), message=str(refusal),
                                                  details=[detail, info]))


class Platform:
    def __init__(self, config: dict):
        self.config = config
        self.engine = make_engine(config["DATABASE_URL"], pool_size=int(config.get("DB_POOL_SIZE", 10)),
                                  application_name="gateway")
        self.rpc_timeout = float(config.get("RPC_TIMEOUT_SECONDS", 30))
        self.keys = key_files(config)           # the units' public keys, read again after a rotation
        self.require_signatures = config.get("REQUIRE_SIGNATURES", True) is not False
        self._local = threading.local()
        self._proxies: list[ClusterRpcProxy] = []
        self._lock = threading.Lock()
        self._units: dict[str, tuple[float, dict | None]] = {}     # unit -> (when asked, catalogue entry)

    @cached_property
    def pii(self):
        """The personal-data keys: the desk's feed keeps the applicant's phone sealed (read when first
        needed: the token and audit commands work without them; ``serve`` asks at start)."""
        return keyring(self.config)

    @contextmanager
    def transaction(self):
        with Session(self.engine) as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.transaction() as session:
            session.execute(text("SELECT 1"))

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    # --- the services --------------------------------------------------------------------------

    def _proxy(self):
        if getattr(self._local, "proxy", None) is None:
            # Its context data (a dict nameko keeps, not a copy) goes out as every call's headers.
            self._local.context_data = {}
            standalone = ClusterRpcProxy({"AMQP_URI": self.config["AMQP_URI"]}, timeout=self.rpc_timeout,
                                         context_data=self._local.context_data)
            self._local.standalone, self._local.proxy = standalone, standalone.start()
            with self._lock:
                self._proxies.append(standalone)
        return self._local.proxy

    def call(self, service: str, method: str, *args, deadline: float | None = None,
             idempotency_key: str | None = None, **kwargs) -> Any:
        """``service.method(*args)`` over RPC, waiting no longer than the caller's deadline allows.
        ``idempotency_key``: the service stores the result with the effect under that key, and
        gives it again, without doing anything, to a call sent again with it."""
        timeout = self.rpc_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError
        proxy = self._proxy()
        # The standalone proxy's wait is its consumer's socket timeout: set it per call.
        self._local.standalone._reply_listener.queue_consumer.timeout = timeout
        context_data = self._local.context_data     # one proxy per thread: this call's headers
        if idempotency_key:
            context_data[RPC_CONTEXT_KEY] = idempotency_key
        try:
            return getattr(getattr(proxy, service), method)(*args, **kwargs)
        except RpcTimeout:
            self._drop_proxy()      # its reply may still arrive: never reuse a proxy that gave up waiting
            raise Unavailable(f"{service} did not answer within {timeout:.1f} s") from None
        except BROKER_LOST as lost:
            # nameko's standalone proxy never reconnects ("This consumer has been disconnected"): a
            # new one connects to a node of AMQP_URI that is up. Not called again here: the request
            # may have gone out, and the caller decides whether to try again.
            self._drop_proxy()
            if isinstance(lost, TimeoutError):
                raise                # the caller's deadline, answered as such
            raise Unavailable(f"{service}: the connection to the broker was lost ({type(lost).__name__})") from None
        finally:
            context_data.pop(RPC_CONTEXT_KEY, None)

    def _drop_proxy(self) -> None:
        standalone = getattr(self._local, "standalone", None)
        self._local.proxy = self._local.standalone = None
        if standalone is not None:
            with self._lock:
                self._proxies.remove(standalone)
            try:
                standalone.stop()
            except Exception:  # a broken connection is already closed
                pass

    def close(self) -> None:
        with self._lock:
            proxies, self._proxies = self._proxies, []
        for standalone in proxies:
            try:
                standalone.stop()
            except Exception:  # stopping: nothing more to do for a broken proxy
                pass
        self.engine.dispose()

    # --- one call ------------------------------------------------------------------------------

    def authenticate(self, context) -> tuple[str, str]:
        metadata = {key: value for key, value in context.invocation_metadata()}
        with self.transaction() as session:
            return credentials.authenticate(session, credentials.bearer(metadata), self.now())

    def unit_entry(self, unit: str) -> dict | None:
        """The catalogue's entry of a caller's unit, asked once a minute per unit (outside any
        transaction): whether a reorganisation dissolved it."""
        at, entry = self._units.get(unit, (None, None))
        if at is None or time.monotonic() - at >= UNIT_SECONDS:
            entry = self.call("catalog", "get_unit", unit)
            self._units[unit] = (time.monotonic(), entry)
        return entry

    def audit(self, *, unit: str, credential: str, method: str, dossier: str, result: str, detail: str) -> None:
        with self.transaction() as session:
            audit.append(session, at=self.now(), unit=unit, credential=credential, method=method,
                         dossier=dossier, result=result, detail=detail)


IDEMPOTENCY_METADATA = "idempotency-key"


def idempotency_key(context, unit: str) -> str | None:
    """The call's key (metadata ``idempotency-key``), scoped to the caller's unit: two units'
    systems may well pick the same key. None without one; a malformed one is refused."""
    keys = [value for name, value in context.invocation_metadata() if name == IDEMPOTENCY_METADATA]
    if not keys:
        return None
    key = keys[0].strip() if isinstance(keys[0], str) else ""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise Invalid(IDEMPOTENCY_METADATA, f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters "
                      "(e.g. a UUID), one per write")
    return f"grpc:{unit}:{key}"


class Caller:
    """Who is calling: their unit (from the token) and the call's deadline."""

    def __init__(self, unit: str, credential: str, deadline: float | None, idempotency_key: str | None = None):
        self.unit, self.credential, self.deadline = unit, credential, deadline
        self.idempotency_key = idempotency_key      # this unit's key of a write, None without one
        self.official = ""      # the acting official, from the request
        self.dossier = ""       # set by a handler whose request names no single dossier
        self.summary = ""       # what the call did, for the audit entry (e.g. a batch's outcomes)


class Answer:
    """What one call did, for its metrics, log line and audit entry."""

    def __init__(self, platform: Platform, context):
        self.platform, self.context = platform, context
        self.started = time.monotonic()
        self.unit = self.credential = self.dossier = self.detail = ""
        self.code = grpc.StatusCode.OK
        self.caller: Caller | None = None

    def authenticate(self, method: str) -> Caller:
        self.unit, self.credential = self.platform.authenticate(self.context)
        credentials.require_allowed(method)
        credentials.require_active_unit(self.unit, self.platform.unit_entry(self.unit),
                                        local_date(self.platform.now()))
        remaining = self.context.time_remaining()
        self.caller = Caller(self.unit, self.credential,
                             self.started + remaining if remaining is not None else None,
                             idempotency_key(self.context, self.unit))
        return self.caller


@contextmanager
def answering(platform: Platform, method: str, context):
    """One call: refusals answered with their gRPC status (nothing changed), a service out of reach
    as UNAVAILABLE, a passed deadline as DEADLINE_EXCEEDED; then measured, logged and audited."""
    answer = Answer(platform, context)
    ENTRYPOINTS_IN_FLIGHT.labels("gateway").inc()
    try:
        yield answer
    except Refusal as refusal:
        answer.code, answer.detail = status_code(refusal), str(refusal)
        context.abort_with_status(rich_status(refusal))
    except (TimeoutError, Unavailable) as exc:
        answer.code = (grpc.StatusCode.DEADLINE_EXCEEDED if isinstance(exc, TimeoutError)
                       else grpc.StatusCode.UNAVAILABLE)
        answer.detail = str(exc) or "the call's deadline passed before the platform answered"
        context.abort(answer.code, answer.detail)
    except RemoteError as exc:
        if not transient(exc):
            raise
        answer.code, answer.detail = grpc.StatusCode.UNAVAILABLE, f"{exc.exc_type} in a service"
        context.abort(answer.code, "a service cannot reach its database or the broker now; try again")
    except grpc.RpcError:
        raise
    except Exception as exc:
        if not context.is_active():      # the client went away (cancelled, deadline passed)
            answer.code = grpc.StatusCode.CANCELLED
            return
        answer.code, answer.detail = grpc.StatusCode.INTERNAL, type(exc).__name__
        log.exception("gateway call failed", method=method, unit=answer.unit)
        context.abort(answer.code, "internal error; the platform's operators have the details")
    finally:
        _record(answer, method)


def _record(answer: Answer, method: str) -> None:
    caller = answer.caller
    dossier = answer.dossier or (caller.dossier if caller else "")
    detail = "; ".join(filter(None, (answer.detail, caller.summary if caller else "")))
    ENTRYPOINTS_IN_FLIGHT.labels("gateway").dec()
    elapsed = time.monotonic() - answer.started
    ENTRYPOINT_SECONDS.labels("gateway", method, "grpc").observe(elapsed)
    ENTRYPOINT_CALLS.labels("gateway", method, "grpc", "ok" if answer.code == grpc.StatusCode.OK else "error").inc()
    CALLS.labels(answer.unit or "unknown", answer.code.name).inc()
    log.info("grpc call", method=method, unit=answer.unit or None, dossier=dossier or None, code=answer.code.name,
             duration_ms=round(elapsed * 1000, 1))
    try:
        answer.platform.audit(unit=answer.unit, credential=answer.credential, method=method, dossier=dossier,
                              result=answer.code.name, detail=detail)
    except Exception:
        log.exception("audit entry not written", method=method, unit=answer.unit)


def handler(platform_of: Callable[[Any], Platform], method: str, dossier_of: Callable[[Any], str] = lambda r: "",
            streaming: bool = False):
    """Wrap a servicer method ``fn(self, request, caller, context)`` in ``answering``: the caller
    authenticated first. A streaming method's audit entry is written when its stream ends."""

    def decorate(fn):
        if streaming:
            def stream(self, request, context):
                with answering(platform_of(self), method, context) as answer:
                    yield from fn(self, request, answer.authenticate(method), context)
            return stream

        def unary(self, request, context):
            with answering(platform_of(self), method, context) as answer:
                caller = answer.authenticate(method)
                answer.dossier = dossier_of(request)
                return fn(self, request, caller, context)
        return unary

    return decorate
