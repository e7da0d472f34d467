"""What every service's HTTP entry point answers before (and instead of) a handler: a body over the
limit is a 413, a body that is not UTF-8 or not a JSON object a 400, an official past the write
rate a 429 with ``Retry-After``; the broker or an RPC out of reach a 503. Never a 5xx for bad input."""
from __future__ import annotations

import io
import json

import pytest
from kombu.exceptions import OperationalError
from nameko.exceptions import RemoteError, RpcTimeout
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from motcua.contracts.refusals import Invalid, NotFound
from motcua.runtime.web import HttpEntrypoint, RequestLimits, json_body, nul_in_address
from tests.fakes.officials import official_headers, signed_in


class Container:
    def __init__(self, **config):
        self.config = config


def entrypoint(method: str = "POST", clock=None, **config) -> HttpEntrypoint:
    container = Container(**config)
    limits = RequestLimits()
    limits.container = container
    limits.setup()
    if clock is not None:
        limits.limiter.clock = clock
    point = HttpEntrypoint(method, "/api/v1/things")
    point.container = container
    point.limits = limits
    return point


def request(method: str = "POST", data: bytes = b"", headers: dict | None = None, **kwargs) -> Request:
    return signed_in(Request(EnvironBuilder(path="/api/v1/things", method=method, data=data, headers=headers or {},
                                            **kwargs).get_environ()))


def chunked(data: bytes, headers: dict | None = None) -> Request:
    """A body sent without Content-Length (Transfer-Encoding: chunked), as eventlet hands it on."""
    environ = EnvironBuilder(path="/api/v1/things", method="POST", headers=headers or {}).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input"] = io.BytesIO(data)
    return Request(environ)


def body(response) -> dict:
    return json.loads(response.get_data())


# --- 413 -------------------------------------------------------------------------------------------

def test_a_body_over_the_limit_by_its_content_length_is_413_before_anything_reads_it():
    point = entrypoint(HTTP_MAX_BODY_BYTES=100)
    response = point.body_too_large(request(data=b"x" * 101))
    assert response.status_code == 413
    assert body(response) == {"error": "body: larger than 100 bytes", "field": "body"}
    assert point.body_too_large(request(data=b"x" * 100)) is None


def test_a_chunked_body_is_stopped_at_the_limit_while_read_and_answered_413():
    point = entrypoint(HTTP_MAX_BODY_BYTES=100)
    big = chunked(b'{"a": "' + b"x" * 200 + b'"}')
    assert point.body_too_large(big) is None          # no length to judge by: enforced while read
    with pytest.raises(RequestEntityTooLarge) as raised:
        json_body(big)
    response = point.response_from_exception(raised.value)
    assert response.status_code == 413 and body(response)["field"] == "body"
    small = chunked(b'{"a": 1}')
    assert point.body_too_large(small) is None
    assert json_body(small) == {"a": 1}               # read, not taken for empty


def test_the_default_limit_is_one_mebibyte():
    point = entrypoint()
    assert point.body_too_large(request(data=b"x" * (1024 * 1024))) is None
    assert point.body_too_large(request(data=b"x" * (1024 * 1024 + 1))).status_code == 413


# --- 400 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, reason", [
    (b"[1, 2]", "must be a JSON object, not an array"),
    (b"3", "must be a JSON object, not a number"),
    (b'"text"', "must be a JSON object, not a string"),
    (b"null", "must be a JSON object, not null"),
    (b"{", "is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
    (b'{"name": "\xff\xfe"}', "is not UTF-8"),
    ('{"name": "Nguyễn"}'.encode("utf-16"), "is not UTF-8"),
])
def test_a_body_that_is_not_a_utf8_json_object_is_invalid_naming_the_body(data, reason):
    with pytest.raises(Invalid) as refused:
        json_body(request(data=data))
    assert refused.value.field == "body" and refused.value.reason.startswith(reason)


def test_an_empty_body_is_an_empty_object_and_unicode_is_read_as_sent():
    assert json_body(request(data=b"")) == {}
    assert json_body(request(data='{"name": "Nguyễn Văn A"}'.encode())) == {"name": "Nguyễn Văn A"}


def test_a_refusal_raised_outside_answer_keeps_its_status_and_field():
    response = entrypoint().response_from_exception(NotFound("code", "no dossier 123"))
    assert response.status_code == 404 and body(response) == {"error": "code: no dossier 123", "field": "code"}


# --- 429 -------------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_an_official_past_the_write_burst_gets_429_with_retry_after_until_a_token_comes_back():
    clock = Clock()
    point = entrypoint(clock=clock, HTTP_WRITE_RATE_PER_MINUTE=60, HTTP_WRITE_BURST=3)
    headers = official_headers("Nguyễn Văn A", "UBND-XA-1")
    assert [point.over_write_rate(request(headers=headers)) for _ in range(3)] == [None] * 3
    refused = point.over_write_rate(request(headers=headers))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert body(refused)["field"] == "rate"
    # Others are not held back by one official: another official, the same official in another unit.
    assert point.over_write_rate(request(headers=official_headers("Trần Thị B", "UBND-XA-1"))) is None
    assert point.over_write_rate(request(headers=official_headers("Nguyễn Văn A", "UBND-XA-2"))) is None
    clock.now += 1.0
    assert point.over_write_rate(request(headers=headers)) is None


def test_reads_and_callers_that_are_not_officials_are_not_counted():
    point = entrypoint(method="GET", HTTP_WRITE_RATE_PER_MINUTE=60, HTTP_WRITE_BURST=1)
    headers = official_headers("Nguyễn Văn A", "UBND-XA-1")
    assert all(point.over_write_rate(request("GET", headers=headers)) is None for _ in range(5))
    assert all(point.over_write_rate(request("POST")) is None for _ in range(5))   # the handler refuses it (401)


@pytest.mark.parametrize("config, message", [
    ({"HTTP_MAX_BODY_BYTES": "1MB"}, "HTTP_MAX_BODY_BYTES must be a whole number"),
    ({"HTTP_WRITE_BURST": 0}, "HTTP_WRITE_BURST must be at least 1"),
    ({"HTTP_WRITE_RATE_PER_MINUTE": "-5"}, "HTTP_WRITE_RATE_PER_MINUTE must be at least 1"),
])
def test_a_wrong_limit_stops_the_service_at_start_naming_the_setting(config, message):
    with pytest.raises(ValueError, match=message):
        entrypoint(**config)


# --- 503 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [
    RpcTimeout(5),
    OperationalError("[Errno 111] Connection refused"),
    RemoteError("RpcTimeout", "5"),
    RemoteError("OperationalError", "could not connect to server"),
])
def test_an_rpc_timing_out_or_the_broker_down_is_503_with_retry_after(error):
    response = entrypoint().response_from_exception(error)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1


# --- NUL: PostgreSQL's text cannot hold it --------------------------------------------------------

@pytest.mark.parametrize("query, field", [("q=a%00b", "q"), ("unit=x&at=%00", "at"), ("%00=1", "query")])
def test_a_nul_in_the_query_is_400_naming_the_parameter(query, field):
    assert nul_in_address(request("GET", query_string="q=Nguyễn")) is None
    response = nul_in_address(request("GET", query_string=query))
    assert response.status_code == 400 and body(response)["field"] == field


@pytest.mark.parametrize("data, field", [
    (b'{"reason": "a\\u0000b"}', "reason"),
    (b'{"applicant": {"name": "\\u0000"}}', "applicant.name"),
    (b'{"documents": [{"name": "ok"}, {"name": "x\\u0000"}]}', "documents[1].name"),
    (b'{"a": "\x00"}', "body"),
])
def test_a_nul_in_the_body_is_invalid_naming_the_field(data, field):
    with pytest.raises(Invalid) as refused:
        json_body(request(data=data))
    assert refused.value.field == field
