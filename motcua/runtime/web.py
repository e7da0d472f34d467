"""The HTTP plumbing every service's API shares: the entry point, who is acting, the JSON body,
and the answer (a refusal becomes a JSON error naming the field, with its status; the database or
the broker out of reach, a 503 with ``Retry-After``; a body over ``HTTP_MAX_BODY_BYTES``, a 413;
an official past the write rate, a 429 with ``Retry-After``)."""
from __future__ import annotations

import json
import math
import os
from functools import partial
from typing import Any, Callable

from amqp.exceptions import ConnectionError as AmqpConnectionError
from kombu.exceptions import OperationalError as KombuOperationalError
from nameko.exceptions import RemoteError, RpcTimeout
from nameko.extensions import SharedExtension
from nameko.web.handlers import HttpRequestHandler
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response

from motcua.contracts.actors import Actor
from motcua.contracts.refusals import Forbidden, Invalid, Refusal, Unauthenticated
from motcua.runtime import auth, idempotency
from motcua.runtime.inbox import transient
from motcua.runtime.observability import error_response, json_response
from motcua.runtime.ratelimit import RateLimiter

RETRY_AFTER_SECONDS = 2
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# A desk official writes a few times a minute; a runaway script or a stuck retry loop far more.
DEFAULT_WRITE_RATE_PER_MINUTE = 600
DEFAULT_WRITE_BURST = 200
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Beyond inbox.transient: an RPC to another service that did not answer in time, the broker
# unreachable while this request published or called over it.
UNREACHABLE = (RpcTimeout, KombuOperationalError, AmqpConnectionError)


def setting(config: dict, key: str, default: int) -> int:
    """A whole number ≥ 1 from the service's config, else the environment, else ``default``; read
    when the service starts, so that a wrong value stops it there rather than failing each request."""
    raw = config.get(key, os.environ.get(key))
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{key} must be at least 1, not {value}")
    return value


def unavailable(exc: BaseException) -> bool:
    return transient(exc) or isinstance(exc, UNREACHABLE) or (
        isinstance(exc, RemoteError) and exc.exc_type == "RpcTimeout")


class RequestLimits(SharedExtension):
    """The limits of a service process's requests, shared by its routes: ``HTTP_MAX_BODY_BYTES``,
    and one token bucket per official and unit for writes (``HTTP_WRITE_RATE_PER_MINUTE``
    sustained, ``HTTP_WRITE_BURST`` at once)."""

    def setup(self):
        config = self.container.config
        self.max_body_bytes = setting(config, "HTTP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
        self.limiter = RateLimiter(per_minute=setting(config, "HTTP_WRITE_RATE_PER_MINUTE",
                                                      DEFAULT_WRITE_RATE_PER_MINUTE),
                                   burst=setting(config, "HTTP_WRITE_BURST", DEFAULT_WRITE_BURST))


class HttpEntrypoint(HttpRequestHandler):
    """nameko's ``http`` entry point with the steps every request goes through before its handler
    (in this order): the body's size and the address's characters; the sign-in and the route's
    roles (motcua/runtime/auth.py, before the body is read); the per-official rate of writes; the
    idempotency key and the audit entry of a write (motcua/runtime/idempotency.py, one transaction
    with the write's). A transient error (the database or the broker out of reach: a restart, a
    failover to the standby) is a 503 with ``Retry-After``, not a 500: try again in a moment. Its transaction
    did not commit, unless the connection broke during the COMMIT itself (then the outcome is
    unknown; sent again, such a command meets the state it left, e.g. a 409 for a step already
    accepted)."""

    limits = RequestLimits()

    def setup(self):
        super().setup()
        self.authenticator = auth.for_container(self.container)   # a bad setting: the service does not start

    def handle_request(self, request):
        # 1. the body's size (413), a NUL in the path or the query (400)
        refused = self.body_too_large(request) or nul_in_address(request)
        if refused is not None:
            return refused
        refused = auth.admit(self.authenticator, self.container.service_name, self.method, self.url, request)  # 2.
        if refused is not None:
            return refused
        refused = self.over_write_rate(request)         # 3. the official's write rate (429)
        if refused is not None:
            return refused
        # 4. The idempotency key and the audit entry of a write, around the call (one transaction).
        try:
            return idempotency.around(self, request, partial(HttpRequestHandler.handle_request, self, request),
                                      official_name_and_unit)
        except Exception as exc:    # e.g. a chunked body over the limit, read before the call: a 413
            return self.response_from_exception(exc)

    def body_too_large(self, request) -> Response | None:
        """A 413 at once when Content-Length says too much; otherwise the limit is enforced while
        the body is read (a chunked body has no length), before anything parses it."""
        limit = self.limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return too_large(limit)
        if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            # eventlet's input ends a chunked body itself; without this flag werkzeug reads such a
            # body as empty. (werkzeug's own maximum would cut the body short silently.)
            request.environ["wsgi.input"] = Capped(request.environ["wsgi.input"], limit)
            request.environ["wsgi.input_terminated"] = True
        return None

    def over_write_rate(self, request) -> Response | None:
        if request.method not in WRITE_METHODS:
            return None
        try:
            name, unit = official_name_and_unit(request)
        except Refusal:
            return None          # not an official (a gateway's report, a citizen): refused or limited elsewhere
        allowed, wait = self.limits.limiter.allow(f"{name}\x1f{unit}")
        if allowed:
            return None
        return retry_later(error_response(429, f"too many write requests: try again in {math.ceil(wait)} s", "rate"),
                           wait)

    def response_from_exception(self, exc):
        if unavailable(exc):
            return retry_later(error_response(503, f"service unavailable, try again: {type(exc).__name__}"),
                               RETRY_AFTER_SECONDS)
        if isinstance(exc, RequestEntityTooLarge):
            return too_large(self.limits.max_body_bytes)
        if isinstance(exc, Refusal):       # raised outside answer(): still the client's fault, with its field
            return error_response(exc.status, str(exc), exc.field)
        if isinstance(exc, HTTPException) and exc.code and exc.code < 500:
            return error_response(exc.code, exc.description or exc.name)
        return super().response_from_exception(exc)


http = HttpEntrypoint.decorator


class Capped:
    """A request body read through this raises RequestEntityTooLarge (a 413) past ``limit`` bytes."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit, self.seen = stream, limit, 0

    def _count(self, chunk: bytes) -> bytes:
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise RequestEntityTooLarge()
        return chunk

    def read(self, size: int = -1) -> bytes:
        if size is not None and size >= 0:
            return self._count(self.stream.read(min(size, self.limit + 1 - self.seen)))
        parts = []
        while chunk := self._count(self.stream.read(self.limit + 1 - self.seen)):
            parts.append(chunk)
        return b"".join(parts)

    def readline(self, size: int = -1) -> bytes:
        room = self.limit + 1 - self.seen
        return self._count(self.stream.readline(room if size is None or size < 0 else min(size, room)))


def nul_in_address(request) -> Response | None:
    """A NUL character in the path or the query: PostgreSQL's text cannot hold one (psycopg2 raises
    ValueError, a 500), so it is refused at the door, naming where it was."""
    if "\x00" in request.path:
        return error_response(400, "path: may not contain a NUL character", "path")
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            field = name.replace("\x00", "") or "query"
            return error_response(400, f"{field}: may not contain a NUL character", field)
    return None


def no_nul(value: Any, field: str = "body") -> None:
    """Every string of a JSON value free of NUL characters (see nul_in_address), or Invalid naming it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise Invalid(field, "may not contain a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{field}.{key}" if field != "body" else str(key)
            if "\x00" in key:
                raise Invalid(field, "a name may not contain a NUL character")
            no_nul(item, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            no_nul(item, f"{field}[{index}]")


def too_large(limit: int) -> Response:
    return error_response(413, f"body: larger than {limit} bytes", "body")


def retry_later(response: Response, seconds: float) -> Response:
    response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


def official(request) -> Actor:
    """The acting official of a request: name, unit, roles and the scope the route grants them,
    as the entry point established them (motcua/runtime/auth.py)."""
    actor = request.environ.get(auth.ACTOR_KEY)
    if actor is None:
        raise Unauthenticated("authorization", "this route is public: it has no acting official")
    return actor


def official_name_and_unit(request) -> tuple[str, str]:
    """(name, unit) of the acting official: what the idempotency key and the audit entry record."""
    actor = official(request)
    return actor.name, actor.unit


def report_unit(request) -> str | None:
    """The unit a report covers: ``?unit=`` (none: every unit) for a district-wide reader; for
    anyone else their own unit, and asking for another is refused."""
    actor, asked = official(request), request.args.get("unit") or None
    if actor.district_wide:
        return asked
    if asked not in (None, actor.unit):
        raise Forbidden("unit", f"an official of {actor.unit} reads the report of {actor.unit} only, not {asked}")
    return actor.unit


def body_text(request) -> str:
    """The body as text: UTF-8 or :class:`Invalid` (werkzeug would replace bad bytes silently).
    Over ``HTTP_MAX_BODY_BYTES`` while reading: werkzeug's RequestEntityTooLarge, a 413."""
    try:
        text = request.get_data().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("body", f"is not UTF-8 (byte {exc.start})") from None
    no_nul(text)
    return text


def json_body(request) -> dict:
    """The body as a JSON object (an empty body: ``{}``); anything else is :class:`Invalid`."""
    text = body_text(request)
    if not text:
        return {}
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Invalid("body", f"is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise Invalid("body", f"must be a JSON object, not {json_type(body)}")
    no_nul(body)
    return body


def json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def answer(call: Callable[[], Any], *, status: int = 200) -> Response:
    """Run ``call``: its dict as JSON (or its Response as is), or its refusal as a JSON error."""
    try:
        result = call()
    except Refusal as refusal:
        response = error_response(refusal.status, str(refusal), refusal.field)
        if refusal.details:
            body = json.loads(response.get_data())
            response = json_response({**body, **refusal.details}, status=refusal.status)
        return response
    if isinstance(result, Response):
        return result
    return json_response(result, status=status)
