"""Every write of intake's HTTP API refuses malformed input with a 4xx naming the field, and changes
nothing: no row of intake's tables, no outbox row (so no event), for that dossier or any other
(issue 16). catalog and intake run as real processes (``tests/e2e/test_intake_desk.py``'s fixture)."""
import pytest
import requests
from sqlalchemy import text

from tests.conftest import EventTap
from tests.e2e.conftest import amqp
from tests.e2e.test_intake_desk import (APPLICANT, DOCUMENTS, MARITAL_STATUS, WARD_5, WARD_7, intake,  # noqa: F401
                                        wait_for)
from tests.e2e.writes import refused, unchanged
from tests.fakes.officials import official_headers

DESK_5 = official_headers("Trần Văn Bình", WARD_5)
DESK_7 = official_headers("Lê Thị Hoa", WARD_7)
UNKNOWN = f"{WARD_5}-260101-9999"
SUBMISSION = {"procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "documents": DOCUMENTS}
ADDED = [{"name": "Tờ khai có chữ ký", "form": "original", "count": 1}]


def post(service, path, body=None, headers=DESK_5, raw=None):
    kwargs = {"data": raw, "headers": {**headers, "Content-Type": "application/json"}} if raw is not None \
        else {"json": body, "headers": headers}
    return requests.post(service.url + path, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def dossiers(intake):  # noqa: F811
    """One dossier in each state a write starts from: received at ward 5's desk, submitted online
    (waiting for the desk), and ward 7's own."""
    received = post(intake, "/api/v1/dossiers", {**SUBMISSION, "sets": 1})
    online = requests.post(intake.url + "/api/v1/online-submissions", timeout=10, json={**SUBMISSION, "unit": WARD_5})
    other = post(intake, "/api/v1/dossiers", {**SUBMISSION, "sets": 1}, headers=DESK_7)
    assert [a.status_code for a in (received, online, other)] == [201] * 3, (received.text, online.text, other.text)
    return {"received": received.json()["code"], "online": online.json()["code"], "other": other.json()["code"]}


TOO_LONG = "x" * 2001
NOT_AN_OBJECT = ["[1, 2]", '"a reason"', "42", "null"]

# (write, dossier, body or raw JSON text, status, field); ``{code}`` is the dossier's code.
CASES = [
    # POST /api/v1/dossiers/check (reads only, but a POST: it must refuse as receive does)
    ("/api/v1/dossiers/check", None, {**SUBMISSION, "sets": "one"}, 400, "sets"),
    ("/api/v1/dossiers/check", None, {**SUBMISSION, "procedure_code": 2000815}, 400, "procedure_code"),
    ("/api/v1/dossiers/check", None, {k: v for k, v in SUBMISSION.items() if k != "applicant"}, 400, "applicant"),
    ("/api/v1/dossiers/check", None, "[]", 400, "body"),
    # POST /api/v1/dossiers: what test_intake_desk does not already send
    ("/api/v1/dossiers", None, "[]", 400, "body"),
    ("/api/v1/dossiers", None, "{not json", 400, "body"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "sets": 101}, 400, "sets"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "sets": "1"}, 400, "sets"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "applicant": "Nguyễn Thị Lan"}, 400, "applicant"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "documents": {"name": "Tờ khai"}}, 400, "documents"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "documents": [{**DOCUMENTS[0], "form": "fax"}, DOCUMENTS[1]]},
     400, "documents[0].form"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "documents": [{**DOCUMENTS[0], "count": -1}, DOCUMENTS[1]]},
     400, "documents[0].count"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "fee_conditions": ["vip"]}, 400, "fee_conditions"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "quantities": {"kilos": 3}}, 400, "quantities.kilos"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "notifications": {"channels": ["pigeon"]}}, 400,
     "notifications.channels"),
    ("/api/v1/dossiers", None, {**SUBMISSION, "unit": "000.99.20.H29"}, 403, "unit"),
    # acceptance (no body): only a dossier of the desk, waiting online
    ("/api/v1/dossiers/{code}/acceptance", "received", None, 409, "status"),
    ("/api/v1/dossiers/{code}/acceptance", "unknown", None, 404, "code"),
    # refusal
    ("/api/v1/dossiers/{code}/refusal", "online", {}, 400, "reason"),
    ("/api/v1/dossiers/{code}/refusal", "online", {"reason": 12}, 400, "reason"),
    ("/api/v1/dossiers/{code}/refusal", "online", {"reason": TOO_LONG}, 400, "reason"),
    ("/api/v1/dossiers/{code}/refusal", "online", "[]", 400, "body"),
    ("/api/v1/dossiers/{code}/refusal", "other", {"reason": "Không cư trú"}, 403, "code"),
    ("/api/v1/dossiers/{code}/refusal", "unknown", {"reason": "Không cư trú"}, 404, "code"),
    # supplement request
    ("/api/v1/dossiers/{code}/supplement-request", "received", {"documents": ADDED}, 400, "reason"),
    ("/api/v1/dossiers/{code}/supplement-request", "received", {"reason": "Thiếu chữ ký"}, 400, "documents"),
    ("/api/v1/dossiers/{code}/supplement-request", "received", {"reason": "Thiếu chữ ký", "documents": []},
     400, "documents"),
    ("/api/v1/dossiers/{code}/supplement-request", "received",
     {"reason": "Thiếu chữ ký", "documents": [{"name": "Tờ khai", "form": "scan"}]}, 400, "documents[0].form"),
    ("/api/v1/dossiers/{code}/supplement-request", "received", "42", 400, "body"),
    ("/api/v1/dossiers/{code}/supplement-request", "other", {"reason": "Thiếu chữ ký", "documents": ADDED},
     403, "code"),
    # supplement received: only after a request
    ("/api/v1/dossiers/{code}/supplement", "received", {"documents": "Tờ khai"}, 400, "documents"),
    ("/api/v1/dossiers/{code}/supplement", "received", {"documents": [{"name": "", "form": "original"}]}, 400,
     "documents[0].name"),
    ("/api/v1/dossiers/{code}/supplement", "received", {"documents": ADDED}, 409, "status"),
    ("/api/v1/dossiers/{code}/supplement", "other", {"documents": ADDED}, 403, "code"),
    # withdrawal
    ("/api/v1/dossiers/{code}/withdrawal", "received", {"reason": ["rút"]}, 400, "reason"),
    ("/api/v1/dossiers/{code}/withdrawal", "received", {"reason": "   "}, 400, "reason"),
    ("/api/v1/dossiers/{code}/withdrawal", "received", "null", 400, "body"),
    ("/api/v1/dossiers/{code}/withdrawal", "unknown", {"reason": "Công dân rút"}, 404, "code"),
    # return: only a processed dossier, to a named collector
    ("/api/v1/dossiers/{code}/return", "received", {}, 400, "collected_by"),
    ("/api/v1/dossiers/{code}/return", "received", {"collected_by": {"name": "Lan"}}, 400, "collected_by"),
    ("/api/v1/dossiers/{code}/return", "received", {"collected_by": "Nguyễn Thị Lan"}, 409, "status"),
    ("/api/v1/dossiers/{code}/return", "other", {"collected_by": "Nguyễn Thị Lan"}, 403, "code"),
]


@pytest.mark.parametrize("path, which, body, status, field", CASES,
                         ids=[f"{c[0].rsplit('/', 1)[-1]}-{c[4]}-{i}" for i, c in enumerate(CASES)])
def test_a_malformed_write_is_refused_naming_the_field_and_changes_nothing(intake, engine, dossiers,  # noqa: F811
                                                                            path, which, body, status, field):
    code = UNKNOWN if which == "unknown" else dossiers.get(which)
    with unchanged(engine, "intake"):
        answer = post(intake, path.format(code=code), raw=body) if isinstance(body, str) else \
            post(intake, path.format(code=code), body)
        refused(answer, status, field)


# The citizens' portal is rate-limited per client (10 at once): a few cases, not the whole list.
@pytest.mark.parametrize("body, status, field", [
    ("[]", 400, "body"),
    ({**SUBMISSION, "unit": WARD_5, "applicant": {**APPLICANT, "email": "lan-at-example"}}, 400, "applicant.email"),
    ({**SUBMISSION, "unit": "000.99.20.H29"}, 404, "unit"),
    ({**SUBMISSION}, 400, "unit"),
])
def test_a_malformed_online_submission_is_refused_and_changes_nothing(intake, engine, dossiers,  # noqa: F811
                                                                       body, status, field):
    with unchanged(engine, "intake"):
        kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, str) \
            else {"json": body}
        answer = requests.post(intake.url + "/api/v1/online-submissions", timeout=10, **kwargs)
        refused(answer, status, field)


def outbox_ids(engine, code: str) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(text("SELECT envelope->>'id' FROM intake.outbox "
                                           "WHERE envelope->'payload'->>'code' = :c"), {"c": code}).scalars())


def test_refused_writes_publish_nothing_before_a_later_accepted_one(intake, engine, dossiers):  # noqa: F811
    """The events side seen from the broker: refused writes on a dossier, then an accepted one (the
    marker); once the marker's events have arrived, the events about that dossier since the start
    are exactly the marker's."""
    code = dossiers["received"]
    tap = EventTap(amqp(), "dossier.#")
    try:
        earlier = outbox_ids(engine, code)
        refused(post(intake, f"/api/v1/dossiers/{code}/withdrawal", {"reason": 1}), 400, "reason")
        refused(post(intake, f"/api/v1/dossiers/{code}/supplement-request", {"reason": "x"}), 400, "documents")
        refused(post(intake, f"/api/v1/dossiers/{code}/return", {"collected_by": "Lan"}), 409, "status")
        assert outbox_ids(engine, code) == earlier
        marker = post(intake, f"/api/v1/dossiers/{code}/supplement-request",
                      {"reason": "Tờ khai thiếu chữ ký", "documents": ADDED})
        assert marker.status_code == 200, marker.text
        caused = outbox_ids(engine, code) - earlier
        assert caused, "the marker wrote no event"
        seen = []
        wait_for(lambda: seen.extend(e for e in tap.drain(settle=0) if e["payload"].get("code") == code)
                 or caused <= {e["id"] for e in seen})
    finally:
        tap.close()
    assert {e["id"] for e in seen} - earlier == caused      # (an earlier write's event may arrive late)
    assert "dossier.supplement_requested" in [e["type"] for e in seen]
