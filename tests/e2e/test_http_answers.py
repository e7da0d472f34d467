"""The answers every service's HTTP entry point gives before a handler, from a real process over a
real socket (eventlet's server): a body over HTTP_MAX_BODY_BYTES is a 413, whether it says its
length or comes chunked; a body not UTF-8, not a JSON object or holding a NUL is a 400 naming it;
an official past the write rate gets a 429 with Retry-After, another official does not."""
from __future__ import annotations

import pytest
import requests

from tests.e2e.conftest import ServiceProcess
from tests.fakes.officials import official_headers

LIMIT = 2000


@pytest.fixture(scope="module")
def notify(process_env, tmp_path_factory):
    service = ServiceProcess("notify", process_env, tmp_path_factory.mktemp("http-answers")).start(
        HTTP_MAX_BODY_BYTES=str(LIMIT), HTTP_WRITE_RATE_PER_MINUTE="1", HTTP_WRITE_BURST="3")
    yield service.url
    service.stop()


def chunks(data: bytes, size: int = 500):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_a_body_over_the_limit_is_413_by_its_length_or_while_read(notify):
    big = b'{"id": "' + b"x" * LIMIT + b'", "status": "delivered"}'
    answer = requests.post(notify + "/api/v1/delivery-reports", data=big, timeout=10,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    chunked = requests.post(notify + "/api/v1/delivery-reports", data=chunks(big), timeout=10,
                            headers={"Content-Type": "application/json"})
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
    assert chunked.status_code == 413 and chunked.json()["field"] == "body"
    # Under the limit, a chunked body is read (it used to be taken for an empty one).
    small = requests.post(notify + "/api/v1/delivery-reports", timeout=10,
                          data=chunks(b'{"id": "gw-unknown", "status": "delivered"}', 10))
    assert small.status_code == 404 and small.json()["field"] == "id"


@pytest.mark.parametrize("data, field", [
    (b'{"id": "gw-\xff", "status": "delivered"}', "body"),
    (b'["gw-1", "delivered"]', "body"),
    (b'{"id": "gw\\u0000", "status": "delivered"}', "id"),
    (b"[" * 900 + b"]" * 900, "body"),
])
def test_a_body_that_is_not_a_utf8_json_object_is_400_naming_it(notify, data, field):
    answer = requests.post(notify + "/api/v1/delivery-reports", data=data, timeout=10)
    assert answer.status_code == 400 and answer.json()["field"] == field


def test_a_nul_in_the_query_is_400_not_500(notify):
    answer = requests.get(notify + "/api/v1/dossiers/X/messages", params={"q": "a\x00b"},
                          headers=official_headers("Nguyễn Văn An", "000.05.20.H29"), timeout=10)
    assert answer.status_code == 400 and answer.json()["field"] == "q"


def test_an_official_past_the_write_rate_gets_429_with_retry_after(notify):
    operator = official_headers("Nguyễn Văn An", "000.05.20.H29", role="district_operator")
    save = {"subject": None, "body": "Hồ sơ {{ code }} đã được tiếp nhận."}
    url = notify + "/api/v1/templates/received/sms"
    answers = [requests.put(url, json=save, headers=operator, timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    # One bucket per official, whatever the address: the fourth write, to another template, is
    # refused before it is read (the rate comes before the handler judges the key or the body).
    refused = requests.put(notify + "/api/v1/templates/returned/email", json={}, headers=operator, timeout=10)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1 and refused.json()["field"] == "rate"
    other = requests.put(url, json=save, timeout=10,
                         headers=official_headers("Trần Thị Bình", "000.05.20.H29", role="district_operator"))
    assert other.status_code == 200, other.text
    reads = requests.get(notify + "/api/v1/templates", headers=operator, timeout=10)
    assert reads.status_code == 200, reads.text       # reads are not counted


@pytest.fixture(scope="module")
def fees(process_env, tmp_path_factory):
    service = ServiceProcess("fees", process_env, tmp_path_factory.mktemp("http-answers-fees")).start(
        GATEWAY_MERCHANTS="motcua-go-vap=a-test-secret")
    yield service.url
    service.stop()


@pytest.mark.parametrize("send", [
    {"json": {"merchant": "motcua-go-vap", " \u0000": "x"}},            # schemathesis found it: a 500
    {"data": {"merchant": "motcua-go-vap", "amount": "5000\u0000"}},
    {"data": b"[" * 1500 + b"]" * 1500, "headers": {"Content-Type": "application/json"}},
])
def test_a_gateway_callback_with_a_nul_or_nested_deep_is_refused_not_500(fees, send):
    answer = requests.post(fees + "/api/v1/gateway/callback", timeout=10, **send)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
