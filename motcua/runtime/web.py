"""The HTTP plumbing every service's API shares: the entry point, who is acting, the JSON body,
and the answer (a refusal becomes a JSON error naming the field, with its status; the database or
the broker out of reach, a 503 with ``Retry-After``)."""
from __future__ import annotations

import json
from functools import partial
from typing import Any, Callable

from nameko.web.handlers import HttpRequestHandler
from werkzeug.wrappers import Response

from motcua.contracts.actors import Actor
from motcua.contracts.refusals import Forbidden, Invalid, Refusal, Unauthenticated
from motcua.runtime import auth, idempotency
from motcua.runtime.inbox import transient
from motcua.runtime.observability import error_response, json_response

RETRY_AFTER_SECONDS = 2


class HttpEntrypoint(HttpRequestHandler):
    """nameko's ``http`` entry point, but a transient error (the database or the broker out of
    reach: a restart, a failover to the standby) is a 503 with ``Retry-After``, not a 500: try
    again in a moment. Its transaction did not commit, unless the connection broke during the
    COMMIT itself (then the outcome is unknown; sent again, such a command meets the state it
    left, e.g. a 409 for a step already accepted). Before the body is read, the caller is signed
    in and the route checked against the access table (motcua/runtime/auth.py)."""

    def setup(self):
        super().setup()
        self.authenticator = auth.for_container(self.container)   # a bad setting: the service does not start

    def handle_request(self, request):
        refused = auth.admit(self.authenticator, self.container.service_name, self.method, self.url, request)  # 2.
        if refused is not None:
            return refused
        # 4. The idempotency key and the audit entry of a write, around the call (one transaction).
        return idempotency.around(self, request, partial(HttpRequestHandler.handle_request, self, request),
                                  official_name_and_unit)

    def response_from_exception(self, exc):
        if transient(exc):
            response = error_response(503, f"service unavailable, try again: {type(exc).__name__}")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return super().response_from_exception(exc)


http = HttpEntrypoint.decorator


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


def json_body(request) -> Any:
    if not request.data:
        return {}
    try:
        return json.loads(request.get_data(as_text=True))
    except ValueError as exc:
        raise Invalid("body", f"is not valid JSON: {exc}") from None


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
