"""Every write of fees' HTTP API refuses malformed input with a 4xx naming the field and changes
nothing (no row of fees' tables, its outbox included); and the cancellation of a receipt, which
moves money, end to end (issue 16). catalog, intake, routing and fees run as real processes
(``tests/e2e/test_fees.py``'s fixture)."""
import pytest
import requests
from sqlalchemy import text

from tests.conftest import EventTap
from tests.e2e.conftest import amqp
from tests.e2e.test_fees import CERTIFIED_COPY, WARD_5, account, callback, documents, stack  # noqa: F401
from tests.e2e.test_intake_desk import APPLICANT, WARD_7, wait_for
from tests.e2e.writes import refused, unchanged
from tests.fakes.officials import official_headers

DESK = official_headers("Trần Văn Bình", WARD_5)
DESK_7 = official_headers("Lê Thị Hoa", WARD_7)
HEAD = official_headers("Nguyễn Thị Lan", WARD_5, "unit_head")     # imports the bank's settlements


def receive(services, catalog_url, pages, headers=DESK):
    answer = requests.post(services["intake"].url + "/api/v1/dossiers", headers=headers, timeout=10, json={
        "procedure_code": CERTIFIED_COPY, "applicant": APPLICANT, "documents": documents(catalog_url),
        "quantities": {"pages": pages, "copies": 1}})
    assert answer.status_code == 201, answer.text
    return answer.json()["code"]


def post(services, path, body=None, headers=DESK, raw=None):
    kwargs = {"data": raw, "headers": {**headers, "Content-Type": "application/json"}} if raw is not None \
        else {"json": body, "headers": headers}
    return requests.post(services["fees"].url + path, timeout=10, **kwargs)


def pay(services, code, amount, reference):
    answer = post(services, f"/api/v1/dossiers/{code}/payments",
                  {"method": "cash", "amount": amount, "reference": reference})
    assert answer.status_code == 200, answer.text
    return next(p for p in answer.json()["payments"] if p["reference"] == reference)["receipt"]


def receipt_path(label: str) -> str:
    number, year = label.split("/")
    return f"/api/v1/receipts/{int(year)}/{int(number)}"


@pytest.fixture(scope="module")
def accounts(stack, catalog_process, clock):  # noqa: F811
    """A dossier of ward 5 charged 4,000 and unpaid, one paid (its receipt), and ward 7's own."""
    url, _ = catalog_process
    clock("2026-03-02T09:30:00+07:00")
    unpaid, paid = receive(stack, url, pages=2), receive(stack, url, pages=2)
    other = receive(stack, url, pages=2, headers=DESK_7)
    for code in (unpaid, paid):
        account(stack, code)
    wait_for(lambda: requests.get(f"{stack['fees'].url}/api/v1/dossiers/{other}", headers=DESK_7,
                                  timeout=5).status_code == 200)
    return {"unpaid": unpaid, "other": other, "receipt": pay(stack, paid, 1000, f"cash-{paid}-1")}


PAY = "/api/v1/dossiers/{code}/payments"
CANCEL = "{receipt}/cancellation"
CSV_HEADER = "transaction_id,order,amount,currency,paid_at\n"

# (path, dossier, body or raw text, status, field)
CASES = [
    (PAY, "unpaid", "[]", 400, "body"),
    (PAY, "unpaid", "{not json", 400, "body"),
    (PAY, "unpaid", {"amount": 100}, 400, "method"),
    (PAY, "unpaid", {"method": "cash"}, 400, "amount"),
    (PAY, "unpaid", {"method": "cash", "amount": "100"}, 400, "amount"),
    (PAY, "unpaid", {"method": "cash", "amount": 0}, 400, "amount"),
    (PAY, "unpaid", {"method": "cash", "amount": True}, 400, "amount"),
    (PAY, "unpaid", {"method": "online", "amount": 100, "reference": "TX-1"}, 400, "method"),
    (PAY, "unpaid", {"method": "cash", "amount": 100, "reference": "x" * 101}, 400, "reference"),
    (PAY, "unpaid", {"method": "cash", "amount": 100, "reference": 7}, 400, "reference"),
    (PAY, "other", {"method": "cash", "amount": 100}, 403, "code"),
    (PAY, "unknown", {"method": "cash", "amount": 100}, 404, "code"),
    (CANCEL, "receipt", {}, 400, "reason"),
    (CANCEL, "receipt", {"reason": 5}, 400, "reason"),
    (CANCEL, "receipt", {"reason": "  "}, 400, "reason"),
    (CANCEL, "receipt", "[]", 400, "body"),
    (CANCEL, "no receipt", {"reason": "Ghi sai số tiền"}, 404, "number"),
    ("/api/v1/cash-closings", None, "[]", 400, "body"),
    ("/api/v1/cash-closings", None, {"declared": 0}, 400, "day"),
    ("/api/v1/cash-closings", None, {"day": "02/03/2026", "declared": 0}, 400, "day"),
    ("/api/v1/cash-closings", None, {"day": "2026-03-02", "declared": "0"}, 400, "declared"),
    ("/api/v1/cash-closings", None, {"day": "2026-03-02", "declared": -1}, 400, "declared"),
    ("/api/v1/cash-closings", None, {"day": "2026-03-02", "declared": 1.5}, 400, "declared"),
]


@pytest.mark.parametrize("path, which, body, status, field", CASES,
                         ids=[f"{c[0].rsplit('/', 1)[-1]}-{c[4]}-{i}" for i, c in enumerate(CASES)])
def test_a_malformed_write_is_refused_naming_the_field_and_changes_nothing(stack, engine, accounts,  # noqa: F811
                                                                            path, which, body, status, field):
    target = path.format(code={"unknown": f"{WARD_5}-260101-9999"}.get(which) or accounts.get(which),
                         receipt=receipt_path("99999/2026") if which == "no receipt"
                         else receipt_path(accounts["receipt"]))
    with unchanged(engine, "fees"):
        answer = post(stack, target, raw=body) if isinstance(body, str) else post(stack, target, body)
        refused(answer, status, field)


@pytest.mark.parametrize("content, field", [
    (b"", "file"),
    (b"\xff\xfe not text", "body"),
    (b"order,amount\nx,1\n", "line 1"),
    ((CSV_HEADER + "TX-1,{code},abc,VND,2026-03-02T09:10:00+07:00\n").encode(), "line 2"),
    ((CSV_HEADER + "TX-1,{code},1000,USD,2026-03-02T09:10:00+07:00\n").encode(), "line 2"),
    ((CSV_HEADER + "TX-1,{code},1000,VND,yesterday\n").encode(), "line 2"),
])
def test_a_malformed_settlement_file_is_refused_naming_the_line_and_changes_nothing(stack, engine, accounts,  # noqa: F811
                                                                                     content, field):
    with unchanged(engine, "fees"):
        answer = requests.post(stack["fees"].url + "/api/v1/gateway/settlements", headers=HEAD, timeout=10,
                               data=content.replace(b"{code}", accounts["unpaid"].encode()))
        refused(answer, 400, field)


@pytest.mark.parametrize("change, status, field", [
    ({"amount": "abc"}, 400, "amount"),
    ({"currency": "USD"}, 400, "currency"),
    ({"timestamp": "hôm qua"}, 400, "timestamp"),
    ({"order": f"{WARD_5}-260101-9999"}, 404, "code"),
])
def test_a_malformed_gateway_callback_pays_nothing_and_is_recorded_as_rejected(stack, engine, accounts,  # noqa: F811
                                                                               change, status, field):
    """Signed, but malformed: refused, nothing paid; only its rejection is kept (the gateway's
    callbacks are all recorded, accepted or not)."""
    params = callback(accounts["unpaid"], 4000, "TX-BAD", timestamp="2026-03-02T09:30:00+07:00")
    params.update(change)
    from services.fees.domain import sign
    params["signature"] = sign({k: v for k, v in params.items() if k != "signature"}, "a-test-secret")
    with engine.connect() as connection:
        before = connection.execute(text("SELECT count(*) FROM fees.gateway_callbacks WHERE NOT accepted")).scalar()
    with unchanged(engine, "fees", skip=("gateway_callbacks",)):
        answer = requests.post(stack["fees"].url + "/api/v1/gateway/callback", data=params, timeout=10)
        refused(answer, status, field)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM fees.gateway_callbacks WHERE NOT accepted")
                                  ).scalar() == before + 1


def test_a_cancelled_receipt_no_longer_counts_and_a_refusal_refunds_only_what_stands(stack, engine,  # noqa: F811
                                                                                     catalog_process, clock):
    """A receipt written in error is cancelled (never deleted): its money no longer counts, the
    dossier owes it again, intake hears of it; cancelled twice: 409 and nothing changes. Refused
    later, the dossier is refunded what the receipts still standing paid, not the cancelled one."""
    url, _ = catalog_process
    clock("2026-03-02T10:30:00+07:00")
    code = receive(stack, url, pages=3)                     # 5,000 VND
    account(stack, code)
    first = pay(stack, code, 5000, f"cash-{code}-wrong")
    assert account(stack, code)["settled"]
    tap = EventTap(amqp(), "fees.#")
    try:
        cancelled = post(stack, receipt_path(first) + "/cancellation", {"reason": "Thu nhầm người nộp"})
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert (body["label"], body["kind"], body["amount"]) == (first, "payment", 5000)
        assert body["cancelled_at"] and body["cancel_reason"] == "Thu nhầm người nộp"
        assert body["cancelled_by"] == "Trần Văn Bình"
        events = wait_for(lambda: [e for e in tap.drain(settle=0) if e["payload"].get("code") == code])
    finally:
        tap.close()
    assert [(e["type"], e["payload"]["amount"], e["payload"]["receipt_number"]) for e in events] == \
        [("fees.payment_cancelled", 5000, first)]
    after = account(stack, code)
    assert not after["settled"] and after["outstanding"] == 5000
    assert [(p["receipt"], p["cancelled"]) for p in after["payments"]] == [(first, True)]
    kept = requests.get(f"{stack['fees'].url}{receipt_path(first)}.json", headers=DESK, timeout=5).json()
    assert kept["cancelled_at"] == body["cancelled_at"]                   # kept, with its number
    wait_for(lambda: requests.get(f"{stack['intake'].url}/api/v1/dossiers/{code}", headers=DESK, timeout=5)
             .json()["fees"]["outstanding"] == 5000)

    with unchanged(engine, "fees"):
        refused(post(stack, receipt_path(first) + "/cancellation", {"reason": "lần hai"}), 409, "number")

    # Paid again, correctly; then refused at the desk: the refund is the standing receipt's 5,000.
    second = pay(stack, code, 5000, f"cash-{code}-right")
    assert account(stack, code)["settled"]
    refusal = requests.post(f"{stack['intake'].url}/api/v1/dossiers/{code}/refusal", headers=DESK, timeout=10,
                            json={"reason": "Bản chính không hợp lệ"})
    assert refusal.status_code == 200, refusal.text
    refunded = wait_for(lambda: (a := account(stack, code))["refunds"] and a)
    assert refunded["refunded"] == 5000 and refunded["paid"] == 5000
    assert [(r["amount"], r["for_receipt"]) for r in refunded["refunds"]] == [(5000, second)]
    # The refunded receipt can no longer be cancelled, nor can the refund's own.
    with unchanged(engine, "fees"):
        refused(post(stack, receipt_path(second) + "/cancellation", {"reason": "x"}), 409, "number")
        refused(post(stack, receipt_path(refunded["refunds"][0]["receipt"]) + "/cancellation", {"reason": "x"}),
                409, "number")
