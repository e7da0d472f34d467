"""Fees end to end: catalog, intake, routing and fees as real processes; the online gateway is a
signed HTTP callback sent by the test (issue 6, done when)."""
import io

import eventlet
import pytest
import requests
from pypdf import PdfReader
from sqlalchemy import text

from services.fees.domain import sign
from tests.e2e.conftest import ServiceProcess, run_cli
from tests.e2e.test_intake_desk import APPLICANT, wait_for
from tests.fakes.officials import official_headers

WARD_5 = "000.05.20.H29"
# A ward's official: its desk, and the steps of the ward's own procedures.
DESK = official_headers("Trần Văn Bình", WARD_5, ["desk_officer", "specialist"])
HEAD = official_headers("Nguyễn Thị Lan", WARD_5, "unit_head")     # imports the bank's settlements
CERTIFIED_COPY = "2.000815"       # 2,000 VND a page, 1,000 from page 3, at most 200,000 a copy; same day
MERCHANT, SECRET = "motcua-go-vap", "a-test-secret"


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        for schema, tables in (("intake", "dossiers, dossier_history, tracking_book_counters, dossier_code_counters"),
                               ("routing", "workflows, steps, handovers, actions"),
                               ("fees", "accounts, charges, payments, refunds, receipts, receipt_counters, "
                                        "gateway_callbacks, cash_closings, settlement_imports")):
            connection.execute(text(f"TRUNCATE {', '.join(f'{schema}.{t.strip()}' for t in tables.split(','))}, "
                                    f"{schema}.outbox, {schema}.processed_events CASCADE"))
    logs = tmp_path_factory.mktemp("fees-stack")
    env = {**process_env, "CLOCK_FILE": str(clock.path), "ROUTING_SCAN_SECONDS": "0.5",
           "GATEWAY_MERCHANTS": f"{MERCHANT}={SECRET}"}
    clock("2026-03-02T09:00:00+07:00")
    services = [ServiceProcess(name, env, logs).start() for name in ("intake", "routing", "fees")]
    yield dict(zip(("intake", "routing", "fees"), services))
    for service in services:
        service.stop()


def documents(catalog_url):
    procedure = requests.get(f"{catalog_url}/api/v1/procedures/{CERTIFIED_COPY}", timeout=5).json()
    return [{"name": d["name"], "form": d["form"], "count": d["count"]} for d in procedure["documents"]]


def receive(stack, catalog_url, pages=3, copies=1):
    answer = requests.post(stack["intake"].url + "/api/v1/dossiers", headers=DESK, timeout=10, json={
        "procedure_code": CERTIFIED_COPY, "applicant": APPLICANT, "documents": documents(catalog_url),
        "quantities": {"pages": pages, "copies": copies}})
    assert answer.status_code == 201, answer.text
    return answer.json()["code"]


def account(stack, code):
    return wait_for(lambda: (r := requests.get(f"{stack['fees'].url}/api/v1/dossiers/{code}", headers=DESK,
                                               timeout=5)).status_code == 200 and r.json())


def callback(code, amount, transaction_id, timestamp="2026-03-02T09:10:00+07:00", secret=SECRET, **changes):
    params = {"merchant": MERCHANT, "transaction_id": transaction_id, "order": code, "amount": str(amount),
              "currency": "VND", "timestamp": timestamp}
    params["signature"] = sign(params, secret)
    params.update(changes)
    return params


def test_a_certified_copy_is_charged_paid_online_once_settled_and_returned(stack, catalog_process, clock):
    url, _ = catalog_process
    clock("2026-03-02T09:05:00+07:00")
    code = receive(stack, url, pages=3)
    charged = account(stack, code)
    assert charged["charged"] == 5000 and charged["totals"] == {"phi": 5000, "le_phi": 0}

    gateway = stack["fees"].url + "/api/v1/gateway/callback"
    first = requests.post(gateway, data=callback(code, 5000, "TX-1001"), timeout=10)
    assert first.status_code == 200, first.text
    again = requests.post(gateway, data=callback(code, 5000, "TX-1001"), timeout=10)
    assert again.status_code == 200
    paid = account(stack, code)
    assert [p["amount"] for p in paid["payments"]] == [5000] and paid["settled"]

    # Rejected, recorded, and nothing paid: unsigned, wrongly signed, replayed, mismatched.
    rejected = [
        requests.post(gateway, data={k: v for k, v in callback(code, 5000, "TX-1002").items() if k != "signature"},
                      timeout=10),
        requests.post(gateway, data=callback(code, 5000, "TX-1003", secret="guess"), timeout=10),
        requests.post(gateway, data=callback(code, 5000, "TX-1004", timestamp="2026-03-01T09:10:00+07:00"), timeout=10),
        requests.post(gateway, data=callback(code, 9000, "TX-1005"), timeout=10),
    ]
    assert [r.status_code for r in rejected] == [401, 401, 400, 409]
    assert [p["amount"] for p in account(stack, code)["payments"]] == [5000]
    metrics = requests.get(stack["fees"].url + "/metrics", timeout=5).text
    for reason in ("unsigned", "bad_signature", "stale", "mismatched"):
        assert f'motcua_gateway_callbacks_rejected_total{{reason="{reason}"}} 1.0' in metrics

    # The ward processes it; intake returns the result now that fees are settled.
    intake, routing = stack["intake"], stack["routing"]
    wait_for(lambda: requests.get(f"{intake.url}/api/v1/dossiers/{code}", headers=DESK, timeout=5)
             .json()["fees"]["settled"])
    view = wait_for(lambda: (r := requests.get(f"{routing.url}/api/v1/dossiers/{code}", headers=DESK,
                                               timeout=5)).status_code == 200 and r.json())
    step = view["steps"][0]["id"]
    for path, body in ((f"steps/{step}/acceptance", {}), (f"steps/{step}/completion", {"result": "done"}),
                       ("return-to-desk", {})):
        assert requests.post(f"{routing.url}/api/v1/dossiers/{code}/{path}", headers=DESK, json=body,
                             timeout=10).status_code == 200
    wait_for(lambda: requests.get(f"{intake.url}/api/v1/dossiers/{code}", headers=DESK, timeout=5)
             .json()["status"] == 9)
    returned = requests.post(f"{intake.url}/api/v1/dossiers/{code}/return", headers=DESK, timeout=10,
                             json={"collected_by": APPLICANT["name"]})
    assert returned.status_code == 200 and returned.json()["result_class"] == "on_time"

    # The receipt: numbered, amount in figures and in words.
    number = int(paid["payments"][0]["receipt"].split("/")[0])
    pdf = requests.get(f"{stack['fees'].url}/api/v1/receipts/2026/{number}.pdf", headers=DESK, timeout=20)
    receipt_text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "5.000" in receipt_text and "Năm nghìn đồng" in receipt_text and code in receipt_text


def test_a_refused_dossier_is_refunded(stack, catalog_process, clock):
    url, _ = catalog_process
    clock("2026-03-02T10:00:00+07:00")
    code = receive(stack, url, pages=1, copies=2)
    assert account(stack, code)["charged"] == 4000
    paid = requests.post(f"{stack['fees'].url}/api/v1/dossiers/{code}/payments", headers=DESK, timeout=10,
                         json={"method": "cash", "amount": 4000, "reference": "cash-r-1"})
    assert paid.status_code == 200, paid.text
    refused = requests.post(f"{stack['intake'].url}/api/v1/dossiers/{code}/refusal", headers=DESK, timeout=10,
                            json={"reason": "Bản chính không hợp lệ"})
    assert refused.status_code == 200
    refunded = wait_for(lambda: (a := account(stack, code))["refunds"] and a)
    assert refunded["refunded"] == 4000 and refunded["refunds"][0]["reason"] == "refused"
    assert refunded["refunds"][0]["for_receipt"] == paid.json()["payments"][0]["receipt"]


def test_bad_payments_are_named_and_record_nothing(stack, catalog_process, clock):
    url, _ = catalog_process
    code = receive(stack, url, pages=2)
    pay = f"{stack['fees'].url}/api/v1/dossiers/{code}/payments"
    account(stack, code)
    for body, status, field in (({"method": "cash", "amount": -5}, 400, "amount"),
                                ({"method": "cash", "amount": 10.5}, 400, "amount"),
                                ({"method": "cash", "amount": 4001}, 409, "amount"),
                                ({"method": "cash", "amount": 100, "currency": "USD"}, 400, "currency"),
                                ({"method": "cheque", "amount": 100}, 400, "method"),
                                ({"method": "transfer", "amount": 100}, 400, "reference")):
        answer = requests.post(pay, headers=DESK, json=body, timeout=10)
        assert (answer.status_code, answer.json()["field"]) == (status, field), body
    unknown = requests.post(f"{stack['fees'].url}/api/v1/dossiers/{WARD_5}-260101-9999/payments", headers=DESK,
                            json={"method": "cash", "amount": 100}, timeout=10)
    assert unknown.status_code == 404
    assert account(stack, code)["payments"] == []


def test_a_day_at_one_desk_balances_and_a_tampered_settlement_line_is_reported(stack, catalog_process, clock):
    url, _ = catalog_process
    fees = stack["fees"].url
    clock("2026-03-02T16:00:00+07:00")
    before = requests.post(fees + "/api/v1/cash-closings", headers=DESK, timeout=10,
                           json={"day": "2026-03-02", "declared": 0}).json()["expected"]
    code = receive(stack, url, pages=3)
    account(stack, code)
    assert requests.post(f"{fees}/api/v1/dossiers/{code}/payments", headers=DESK, timeout=10,
                         json={"method": "cash", "amount": 5000, "reference": "cash-closing-1"}).status_code == 200
    clock("2026-03-02T16:30:00+07:00")
    closing = requests.post(fees + "/api/v1/cash-closings", headers=DESK, timeout=10,
                            json={"day": "2026-03-02", "declared": before + 5000}).json()
    assert closing["balanced"] and closing["expected"] == before + 5000 and closing["difference"] == 0
    short = requests.post(fees + "/api/v1/cash-closings", headers=DESK, timeout=10,
                          json={"day": "2026-03-02", "declared": before + 4000}).json()
    assert not short["balanced"] and short["difference"] == -1000
    other_day = requests.post(fees + "/api/v1/cash-closings", headers=DESK, timeout=10,
                              json={"day": "2026-03-03", "declared": 0}).json()
    assert other_day["expected"] == 0 and other_day["balanced"]

    codes = [c for c in requests.get(stack["intake"].url + "/api/v1/tracking-book", headers=DESK, timeout=10,
                                     params={"from": "2026-03-02", "to": "2026-03-02"}).json()["lines"]]
    first = codes[0]["code"]
    good = ("transaction_id,order,amount,currency,paid_at\n"
            f"TX-1001,{first},5000,VND,2026-03-02T09:10:00+07:00\n")
    matched = requests.post(fees + "/api/v1/gateway/settlements", headers=HEAD, data=good.encode(), timeout=10).json()
    assert matched["balanced"] and matched["matched"] == ["TX-1001"]
    tampered = good.replace(",5000,", ",500,") + f"TX-9999,{first},1000,VND,2026-03-02T11:00:00+07:00\n"
    report = requests.post(fees + "/api/v1/gateway/settlements", headers=HEAD, data=tampered.encode(),
                           timeout=10).json()
    assert not report["balanced"] and report["extra"] == ["TX-9999"]
    assert report["mismatched"][0]["transaction_id"] == "TX-1001" and report["mismatched"][0]["field"] == "amount"
    malformed = requests.post(fees + "/api/v1/gateway/settlements", headers=HEAD, timeout=10,
                              data=b"transaction_id,order,amount,currency,paid_at\nTX-1,x,abc,VND,2026-03-02\n")
    assert malformed.status_code == 400 and malformed.json()["field"] == "line 2"


def test_a_hundred_concurrent_payments_get_consecutive_receipt_numbers(stack, catalog_process, engine, clock):
    url, _ = catalog_process
    code = receive(stack, url, pages=3)           # 5,000 VND: a hundred payments of 50
    account(stack, code)
    with engine.connect() as connection:
        last = connection.execute(text("SELECT coalesce(max(last_number), 0) FROM fees.receipt_counters "
                                       "WHERE unit = :u"), {"u": WARD_5}).scalar_one()
    pay = f"{stack['fees'].url}/api/v1/dossiers/{code}/payments"
    pool = eventlet.GreenPool(100)
    answers = list(pool.imap(lambda i: requests.post(pay, headers=DESK, timeout=60, json={
        "method": "cash", "amount": 50, "reference": f"cash-{code}-{i}"}), range(100)))
    assert [a.status_code for a in answers] == [200] * 100
    receipts = sorted(int(p["receipt"].split("/")[0]) for p in account(stack, code)["payments"])
    assert receipts == list(range(last + 1, last + 101))
    assert account(stack, code)["settled"]


def test_quote_over_http_and_the_cli(stack, process_env):
    quote_ = requests.get(stack["fees"].url + "/api/v1/quote", params={"procedure": CERTIFIED_COPY, "pages": "300",
                                                                       "copies": "2"}, timeout=10).json()
    assert quote_["total"] == 400000 and quote_["phi"] == 400000
    cli = run_cli(["fees", "quote", "--procedure", CERTIFIED_COPY, "--pages", "3"], process_env)
    assert "5.000 đồng" in cli.stdout and "Năm nghìn đồng" in cli.stdout
    bad = run_cli(["fees", "quote", "--procedure", CERTIFIED_COPY, "--pages", "0"], process_env, check=False)
    assert bad.returncode == 2 and "--pages" in bad.stderr
    report = run_cli(["report", "fees", "--unit", WARD_5, "--from", "2026-03-01", "--to", "2026-03-31",
                      "--format", "csv"], process_env)
    assert WARD_5 in report.stdout
