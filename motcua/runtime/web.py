"""The HTTP plumbing every service's API shares: the entry point, who is acting, the JSON body,
and the answer (a refusal becomes a JSON error naming the field, with its status; the database or
the broker out of reach, a 503 with ``Retry-After``)."""
from __future__ import annotations

import json
from functools import partial
from typing import Any, Callable
from urllib.parse import unquote

from nameko.web.handlers import HttpRequestHandler
from werkzeug.wrappers import Response

from motcua.contracts.refusals import Invalid, Refusal, Unauthenticated
from motcua.runtime import idempotency
from motcua.runtime.inbox import transient
from motcua.runtime.observability import error_response, json_response

RETRY_AFTER_SECONDS = 2


class HttpEntrypoint(HttpRequestHandler):
    """nameko's ``http`` entry point, but a transient error (the database or the broker out of
    reach: a restart, a failover to the standby) is a 503 with ``Retry-After``, not a 500: try
    again in a moment. Its transaction did not commit, unless the connection broke during the
    COMMIT itself (then the outcome is unknown; sent again, such a command meets the state it
    left, e.g. a 409 for a step already accepted)."""

    def handle_request(self, request):
        # 4. The idempotency key and the audit entry of a write, around the call (one transaction).
        return idempotency.around(self, request, partial(HttpRequestHandler.handle_request, self, request), official)

    def response_from_exception(self, exc):
        if transient(exc):
            response = error_response(503, f"service unavailable, try again: {type(exc).__name__}")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return super().response_from_exception(exc)


http = HttpEntrypoint.decorator


def official(request) -> tuple[str, str]:
    """The acting official (``X-Official``, percent-encoded UTF-8: headers are Latin-1) and unit (``X-Unit``)."""
    name = unquote(request.headers.get("X-Official") or "").strip()
    unit = (request.headers.get("X-Unit") or "").strip()
    if not name:
        raise Unauthenticated("X-Official", "header is required: the acting official")
    if not unit:
        raise Unauthenticated("X-Unit", "header is required: the official's unit")
    return name, unit


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
