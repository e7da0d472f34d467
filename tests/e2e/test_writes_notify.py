"""notify's two writes (issue 16): the SMS gateway's delivery reports end to end, and template edits
refused when malformed, naming the field, with no row of notify's tables changed. catalog, intake,
notify and the fake providers run as real processes (``tests/e2e/test_notify.py``'s fixtures)."""
import json

import pytest
import requests
from sqlalchemy import text

from tests.e2e.test_intake_desk import APPLICANT, wait_for
from tests.e2e.test_notify import WARD_5, history, providers, receive, stack  # noqa: F401
from tests.e2e.writes import refused, unchanged
from tests.fakes.officials import official_headers

DESK = official_headers("Trần Văn Bình", WARD_5)


def sent_sms(engine, services, code) -> str:
    """The provider's id of the dossier's SMS, once sent."""
    wait_for(lambda: [m for m in history(services, code) if m["channel"] == "sms" and m["state"] == "sent"],
             timeout=30)
    with engine.connect() as connection:
        return connection.execute(text("SELECT provider_id FROM notify.messages WHERE code = :c AND channel = 'sms'"),
                                  {"c": code}).scalar_one()


def report(services, body):
    return requests.post(services["notify"].url + "/api/v1/delivery-reports", timeout=5,
                         data=body if isinstance(body, str) else json.dumps(body),
                         headers={"Content-Type": "application/json"})


def test_delivery_reports_mark_the_message_delivered_or_failed_and_nothing_else(stack, engine):  # noqa: F811
    delivered_code, failed_code = receive(stack)["code"], receive(stack)["code"]
    delivered_id, failed_id = sent_sms(engine, stack, delivered_code), sent_sms(engine, stack, failed_code)
    email_before = [m for m in history(stack, delivered_code) if m["channel"] == "email"]

    answer = report(stack, {"id": delivered_id, "status": "delivered"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": delivered_id, "state": "delivered"}
    sms = next(m for m in history(stack, delivered_code) if m["channel"] == "sms")
    assert sms["state"] == "delivered" and sms["delivered_at"]
    assert [m for m in history(stack, delivered_code) if m["channel"] == "email"] == email_before

    answer = report(stack, {"id": failed_id, "status": "failed"})
    assert answer.status_code == 200, answer.text
    sms = next(m for m in history(stack, failed_code) if m["channel"] == "sms")
    assert sms["state"] == "failed" and sms["delivered_at"] is None
    assert next(m for m in history(stack, delivered_code) if m["channel"] == "sms")["state"] == "delivered"
    assert APPLICANT["phone"] not in (stack["logs"] / "notify.log").read_text()


@pytest.mark.parametrize("body, status, field", [
    ({"id": "sms-unknown", "status": "delivered"}, 404, "id"),
    ({"status": "delivered"}, 400, "id"),
    ({"id": "x"}, 400, "status"),
    ({"id": "x", "status": "read"}, 400, "status"),
    ("[]", 400, "body"),
    ("", 400, "id"),
])
def test_a_malformed_delivery_report_changes_no_row(stack, engine, body, status, field):  # noqa: F811
    with unchanged(engine, "notify"):
        refused(report(stack, body), status, field)


@pytest.mark.parametrize("path, body, headers, status, field", [
    ("received/sms", {"subject": "x"}, DESK, 400, "body"),
    ("received/sms", {"body": 5}, DESK, 400, "body"),
    ("received/sms", "[]", DESK, 400, "body"),
    ("received/sms", "{not json", DESK, 400, "body"),
    ("received/sms", {"body": "Ho so {{ code }}"}, {}, 401, "X-Official"),
    ("received/email", {"subject": 5, "body": "Hồ sơ {{ code }}"}, DESK, 400, "subject"),
    ("received/sms", {"body": "Hồ sơ {{ code }} {% import 'os' as os %}"}, DESK, 400, "body"),
    ("no-such-template/sms", {"body": "Ho so {{ code }}"}, DESK, 400, "key"),
    ("received/fax", {"body": "Ho so {{ code }}"}, DESK, 400, "channel"),
])
def test_a_malformed_template_is_refused_naming_the_field_and_changes_nothing(stack, engine, path,  # noqa: F811
                                                                              body, headers, status, field):
    with unchanged(engine, "notify"):
        answer = requests.put(f"{stack['notify'].url}/api/v1/templates/{path}", timeout=5,
                              headers={**headers, "Content-Type": "application/json"},
                              data=body if isinstance(body, str) else json.dumps(body))
        refused(answer, status, field)
