"""What the gateway's handlers stand on: its database, the services (nameko's standalone RPC
proxies, one per thread: a proxy is not thread-safe) and the call wrapper that authenticates,
maps refusals to gRPC statuses, audits and measures every call."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from nameko.exceptions import RemoteError, RpcTimeout
from nameko.standalone.rpc import ClusterRpcProxy
from prometheus_client import Counter, Gauge
from sqlalchemy.orm import Session

from motcua.db import make_engine
from motcua.errors import Conflict, Forbidden, Invalid, NotFound, Refusal, Unauthenticated
from motcua.inbox import transient
from motcua.observability import ENTRYPOINT_CALLS, ENTRYPOINT_SECONDS, ENTRYPOINTS_IN_FLIGHT
from services.gateway import audit, credentials

log = structlog.get_logger("motcua.gateway")

CALLS = Counter("motcua_gateway_calls_total", "gRPC calls answered by the gateway, by the caller's unit and "
                "the gRPC status code.", ["unit", "code"])
SUBSCRIBERS = Gauge("motcua_gateway_subscribers", "Unit systems subscribed to their feed now.")

STATUS_OF = {Invalid: grpc.StatusCode.INVALID_ARGUMENT, Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
             Forbidden: grpc.StatusCode.PERMISSION_DENIED, NotFound: grpc.StatusCode.NOT_FOUND,
             Conflict: grpc.StatusCode.FAILED_PRECONDITION}


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
        self._local = threading.local()
        self._proxies: list[ClusterRpcProxy] = []
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self):
        with Session(self.engine) as session, session.begin():
            yield session

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    # --- the services --------------------------------------------------------------------------

    def _proxy(self):
        if getattr(self._local, "proxy", None) is None:
            standalone = ClusterRpcProxy({"AMQP_URI": self.config["AMQP_URI"]}, timeout=self.rpc_timeout)
            self._local.standalone, self._local.proxy = standalone, standalone.start()
            with self._lock:
                self._proxies.append(standalone)
        return self._local.proxy

    def call(self, service: str, method: str, *args, deadline: float | None = None, **kwargs) -> Any:
        """``service.method(*args)`` over RPC, waiting no longer than the caller's deadline allows."""
        timeout = self.rpc_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError
        proxy = self._proxy()
        # The standalone proxy's wait is its consumer's socket timeout: set it per call.
        self._local.standalone._reply_listener.queue_consumer.timeout = timeout
        try:
            return getattr(getattr(proxy, service), method)(*args, **kwargs)
        except RpcTimeout:
            self._drop_proxy()      # its reply may still arrive: never reuse a proxy that gave up waiting
            raise Unavailable(f"{service} did not answer within {timeout:.1f} s") from None

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

    def audit(self, *, unit: str, credential: str, method: str, dossier: str, result: str, detail: str) -> None:
        with self.transaction() as session:
            audit.append(session, at=self.now(), unit=unit, credential=credential, method=method,
                         dossier=dossier, result=result, detail=detail)


class Caller:
    """Who is calling: their unit (from the token) and the call's deadline."""

    def __init__(self, unit: str, credential: str, deadline: float | None):
        self.unit, self.credential, self.deadline = unit, credential, deadline
        self.official = ""      # the acting official, from the request
        self.dossier = ""       # set by a handler whose request names no single dossier
        self.summary = ""       # what the call did, for the audit entry (e.g. a batch's outcomes)


def handler(platform_of: Callable[[Any], Platform], method: str, dossier_of: Callable[[Any], str] = lambda r: "",
            streaming: bool = False):
    """Wrap a servicer method ``fn(self, request, caller, context)``: authenticate, honour the
    deadline, answer refusals with their gRPC status, audit and measure. A streaming method's
    audit entry is written when its stream ends."""

    def decorate(fn):
        def wrapper(self, request, context):
            platform = platform_of(self)
            started = time.monotonic()
            remaining = context.time_remaining()
            deadline = started + remaining if remaining is not None else None
            unit = credential = dossier = ""
            code, detail = grpc.StatusCode.OK, ""
            ENTRYPOINTS_IN_FLIGHT.labels("gateway").inc()
            try:
                unit, credential = platform.authenticate(context)
                dossier = dossier_of(request) if not streaming else ""
                caller = Caller(unit, credential, deadline)
                try:
                    if streaming:
                        yield from fn(self, request, caller, context)
                    else:
                        return fn(self, request, caller, context)
                finally:
                    dossier, detail = dossier or caller.dossier, caller.summary
            except Refusal as refusal:
                code, detail = status_code(refusal), "; ".join(filter(None, (str(refusal), detail)))
                context.abort_with_status(rich_status(refusal))
            except (TimeoutError, Unavailable) as exc:
                code = (grpc.StatusCode.DEADLINE_EXCEEDED if isinstance(exc, TimeoutError)
                        else grpc.StatusCode.UNAVAILABLE)
                detail = str(exc) or "the call's deadline passed before the platform answered"
                context.abort(code, detail)
            except RemoteError as exc:
                if not transient(exc):
                    raise
                code, detail = grpc.StatusCode.UNAVAILABLE, f"{exc.exc_type} in a service"
                context.abort(code, "a service cannot reach its database or the broker now; try again")
            except grpc.RpcError:
                raise
            except Exception as exc:
                if not context.is_active():      # the client went away (cancelled, deadline passed)
                    code = grpc.StatusCode.CANCELLED
                    return
                code, detail = grpc.StatusCode.INTERNAL, type(exc).__name__
                log.exception("gateway call failed", method=method, unit=unit)
                context.abort(code, "internal error; the platform's operators have the details")
            finally:
                ENTRYPOINTS_IN_FLIGHT.labels("gateway").dec()
                elapsed = time.monotonic() - started
                ENTRYPOINT_SECONDS.labels("gateway", method, "grpc").observe(elapsed)
                ENTRYPOINT_CALLS.labels("gateway", method, "grpc",
                                        "ok" if code == grpc.StatusCode.OK else "error").inc()
                CALLS.labels(unit or "unknown", code.name).inc()
                log.info("grpc call", method=method, unit=unit or None, dossier=dossier or None, code=code.name,
                         duration_ms=round(elapsed * 1000, 1))
                try:
                    platform.audit(unit=unit, credential=credential, method=method, dossier=dossier,
                                   result=code.name, detail=detail)
                except Exception:
                    log.exception("audit entry not written", method=method, unit=unit)

        if streaming:
            return wrapper

        def unary(self, request, context):
            # ``wrapper`` is a generator function (for streams); run it to its return value.
            generator = wrapper(self, request, context)
            try:
                next(generator)
            except StopIteration as stop:
                return stop.value
            raise RuntimeError(f"{method} yielded: not a unary handler")
        return unary

    return decorate
