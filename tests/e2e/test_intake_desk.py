"""The reception desk end to end: catalog and intake as real processes, driven over HTTP;
routing's and fees' events published by the test in the shared contract (issue 3, done when)."""
import io
import json
import time
from urllib.parse import quote

import eventlet
import pytest
import requests
from kombu import Connection, Producer
from pypdf import PdfReader
from sqlalchemy import text

from motcua.runtime import broker
from motcua.contracts.events import new_event
from tests.conftest import EventTap
from tests.e2e.conftest import amqp, ServiceProcess

WARD_5 = "000.05.20.H29"
WARD_7 = "000.07.20.H29"
DESK_5 = {"X-Official": quote("Trần Văn Bình"), "X-Unit": WARD_5}   # names percent-encoded (UTF-8)
DESK_7 = {"X-Official": quote("Lê Thị Hoa"), "X-Unit": WARD_7}
MARITAL_STATUS = "1.004873"   # 3 working days, a flat fee, received at the wards
APPLICANT = {"name": "Nguyễn Thị Lan", "id_number": "079203001234", "address": "12 Lê Đức Thọ, Phường 5",
             "phone": "0903123456", "email": "lan@example.vn"}
DOCUMENTS = [{"name": "Tờ khai cấp Giấy xác nhận tình trạng hôn nhân (theo mẫu)", "form": "original", "count": 1},
             {"name": "Giấy tờ tùy thân của người yêu cầu (xuất trình)", "form": "original", "count": 1}]


@pytest.fixture(scope="module")
def intake(process_env, catalog_process, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE intake.dossiers, intake.dossier_history, intake.tracking_book_counters, "
                                "intake.dossier_code_counters, intake.outbox, intake.processed_events CASCADE"))
    service = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)},
                             tmp_path_factory.mktemp("intake"))
    service.start()
    yield service
    service.stop()


def publish(event):
    with broker.confirmed_connection(amqp()) as connection:
        channel = connection.default_channel
        broker.declare_topology(channel)
        Producer(channel, exchange=broker.events_exchange).publish(
            event.to_json(), routing_key=event.type, content_type="application/json", content_encoding="utf-8",
            delivery_mode=2)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def receive(intake, headers=DESK_5, **overrides):
    body = {"procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "channel": "in_person",
            "documents": DOCUMENTS, "sets": 1, **overrides}
    return requests.post(intake.url + "/api/v1/dossiers", json=body, headers=headers, timeout=10)


def dossier(intake, code, headers=DESK_5):
    return requests.get(f"{intake.url}/api/v1/dossiers/{code}", headers=headers, timeout=10).json()


def test_a_dossier_lives_from_receipt_to_return(intake, clock):
    tap = EventTap(amqp(), "dossier.*")
    try:
        answer = receive(intake)
        assert answer.status_code == 201, answer.text
        received = answer.json()
        code = received["code"]
        assert code == f"{WARD_5}-260213-0001"
        assert received["appointment_date"] == "2026-02-25"          # 3 working days across Tết
        assert received["status"] == 2 and received["tracking_book"] == {"year": 2026, "volume": 1, "line": 1}
        events = [e for e in tap.drain(expect=1) if e["type"] == "dossier.received"]
        assert len(events) == 1 and events[0]["payload"]["code"] == code
        assert events[0]["payload"]["appointment_date"] == "2026-02-25"
        assert events[0]["payload"]["handling_agency"] == WARD_5
    finally:
        tap.close()

    # Received in person: recorded once, as received (2), never as waiting online (1).
    first = dossier(intake, code)["history"]
    assert [(h["action"], h["status_from"], h["status_to"]) for h in first] == [("receive", None, 2)]
    public = requests.get(f"{intake.url}/api/v1/status/{code}", params={"secret": received["secret"]},
                          timeout=10).json()
    assert [(e["status"], e["status_text"]) for e in public["history"]] == [(2, "Đã tiếp nhận")]

    # The receipt (Mẫu 01) as PDF carries the code and the appointment date.
    pdf = requests.get(f"{intake.url}/api/v1/dossiers/{code}/receipt.pdf", headers=DESK_5, timeout=20)
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    receipt_text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert code in receipt_text and "25/02/2026" in receipt_text and "Nguyễn Thị Lan" in receipt_text

    # Routing starts the step; the agency asks for a supplement: the one request is made, the clock stops.
    publish(new_event("dossier.step_started", {"code": code, "agency": WARD_5, "step": 1,
                                               "started_at": "2026-02-13T10:30:00+07:00"}, WARD_5))
    wait_for(lambda: dossier(intake, code)["status"] == 4)
    clock("2026-02-23T09:00:00+07:00")
    publish(new_event("dossier.supplement_needed", {
        "code": code, "agency": WARD_5, "reason": "Tờ khai thiếu chữ ký", "official": "Phạm Văn Cường",
        "asked_at": "2026-02-23T09:00:00+07:00",
        "documents": [{"name": "Tờ khai có chữ ký", "form": "original", "count": 1}]}, WARD_5))
    stopped = wait_for(lambda: (d := dossier(intake, code))["status"] == 5 and d)
    assert stopped["clock_stopped"] and stopped["supplement"]["requested_by"] == WARD_5

    # A second request, from the desk this time, is refused and changes nothing.
    second = requests.post(f"{intake.url}/api/v1/dossiers/{code}/supplement-request", headers=DESK_5, timeout=10,
                           json={"reason": "Thiếu ảnh", "documents": [{"name": "Ảnh 4x6", "form": "original"}]})
    assert second.status_code == 409 and second.json()["field"] == "status"
    assert dossier(intake, code)["history"] == stopped["history"]

    # The citizen brings it two working days later: the clock runs again, and routing (played here)
    # announces the deadline two working days later, which becomes the appointment date.
    clock("2026-02-25T14:00:00+07:00")
    back = requests.post(f"{intake.url}/api/v1/dossiers/{code}/supplement", headers=DESK_5, timeout=10,
                         json={"documents": [{"name": "Tờ khai có chữ ký", "form": "original", "count": 1}]})
    assert back.status_code == 200, back.text
    assert back.json()["status"] == 4 and not back.json()["clock_stopped"]
    publish(new_event("dossier.deadline_changed", {
        "code": code, "due_date": "2026-02-27", "previous_due_date": None, "reason": "supplement",
        "changed_at": "2026-02-25T14:00:00+07:00"}, WARD_5))
    moved = wait_for(lambda: (d := dossier(intake, code))["appointment_date"] == "2026-02-27" and d)
    assert moved["appointment_history"][0]["date"] == "2026-02-25"
    # After the supplement, another request is rejected: once in the whole processing.
    again = requests.post(f"{intake.url}/api/v1/dossiers/{code}/supplement-request", headers=DESK_5, timeout=10,
                          json={"reason": "Thiếu ảnh", "documents": [{"name": "Ảnh 4x6", "form": "original"}]})
    assert again.status_code == 409 and again.json()["field"] == "supplement"

    # Return is refused until routing reports it processed and fees report it settled.
    clock("2026-02-26T10:00:00+07:00")
    early = requests.post(f"{intake.url}/api/v1/dossiers/{code}/return", headers=DESK_5, timeout=10,
                          json={"collected_by": "Nguyễn Thị Lan"})
    assert early.status_code == 409 and early.json()["field"] == "status"
    publish(new_event("fees.charged", {"code": code, "amount": 10000, "charged_at": "2026-02-13T10:01:00+07:00"},
                      WARD_5))
    publish(new_event("dossier.processed", {"code": code, "agency": WARD_5, "result": "done",
                                            "processed_at": "2026-02-26T09:30:00+07:00"}, WARD_5))
    wait_for(lambda: dossier(intake, code)["status"] == 9)
    wait_for(lambda: dossier(intake, code)["fees"]["outstanding"] == 10000)
    unpaid = requests.post(f"{intake.url}/api/v1/dossiers/{code}/return", headers=DESK_5, timeout=10,
                           json={"collected_by": "Nguyễn Thị Lan"})
    assert unpaid.status_code == 409 and unpaid.json()["field"] == "fees"
    publish(new_event("fees.paid", {"code": code, "amount": 10000, "method": "cash",
                                    "paid_at": "2026-02-26T09:40:00+07:00"}, WARD_5))
    publish(new_event("fees.settled", {"code": code, "settled_at": "2026-02-26T09:40:00+07:00"}, WARD_5))
    wait_for(lambda: dossier(intake, code)["fees"]["settled"])
    returned = requests.post(f"{intake.url}/api/v1/dossiers/{code}/return", headers=DESK_5, timeout=10,
                             json={"collected_by": "Nguyễn Thị Lan"})
    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == 10 and returned.json()["result_class"] == "early"

    # The citizen's view: code and secret, initials only.
    secret = returned.json()["secret"]
    public = requests.get(f"{intake.url}/api/v1/status/{code}", params={"secret": secret}, timeout=10).json()
    assert public["applicant"] == "N. T. L." and public["status_text"] == "Đã trả kết quả"
    assert "079203001234" not in json.dumps(public) and "0903123456" not in json.dumps(public)
    wrong = requests.get(f"{intake.url}/api/v1/status/{code}", params={"secret": "AAAA-BBBB"}, timeout=10)
    assert wrong.status_code == 404


def test_another_unit_cannot_see_or_act(intake):
    code = receive(intake).json()["code"]
    assert requests.get(f"{intake.url}/api/v1/dossiers/{code}", headers=DESK_7, timeout=10).status_code == 403
    refused = requests.post(f"{intake.url}/api/v1/dossiers/{code}/withdrawal", headers=DESK_7, timeout=10,
                            json={"reason": "x"})
    assert refused.status_code == 403
    assert dossier(intake, code)["status"] == 2
    other_unit = receive(intake, headers=DESK_7, unit=WARD_5)
    assert other_unit.status_code == 403 and other_unit.json()["field"] == "unit"
    no_header = requests.get(f"{intake.url}/api/v1/dossiers/{code}", timeout=10)
    assert no_header.status_code == 401 and no_header.json()["field"] == "X-Official"


@pytest.mark.parametrize("change, status, field", [
    ({"applicant": {**APPLICANT, "id_number": "07920300123"}}, 400, "applicant.id_number"),
    ({"applicant": {**APPLICANT, "phone": "12345"}}, 400, "applicant.phone"),
    ({"applicant": {k: v for k, v in APPLICANT.items() if k != "name"}}, 400, "applicant.name"),
    ({"procedure_code": "9.999999"}, 404, "procedure_code"),
    ({"procedure_code": "2.000528"}, 400, "procedure_code"),        # a district procedure at a ward desk
    ({"channel": "fax"}, 400, "channel"),
    ({"documents": DOCUMENTS[:1]}, 400, "documents"),               # incomplete: guidance slip, not received
    ({"sets": 0}, 400, "sets"),
])
def test_bad_input_is_named_and_stores_nothing(intake, engine, change, status, field):
    with engine.connect() as connection:
        before = connection.execute(text("SELECT count(*) FROM intake.dossiers")).scalar_one()
    answer = receive(intake, **change)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM intake.dossiers")).scalar_one() == before


def test_incomplete_dossier_gets_a_guidance_slip(intake):
    check = requests.post(intake.url + "/api/v1/dossiers/check", headers=DESK_5, timeout=10, json={
        "procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "documents": DOCUMENTS[1:], "sets": 1})
    assert check.status_code == 200
    body = check.json()
    assert body["complete"] is False
    assert [m["name"] for m in body["missing"]] == [DOCUMENTS[0]["name"]]
    assert "còn thiếu 1 bản" in body["guidance"][0]


def test_fifty_parallel_receipts_get_consecutive_codes_and_book_lines(intake, engine):
    with engine.connect() as connection:
        before = connection.execute(text(
            "SELECT coalesce(max(book_line), 0) FROM intake.dossiers WHERE unit = :u"), {"u": WARD_7}).scalar_one()
        last_code = connection.execute(text(
            "SELECT coalesce(max(last_seq), 0) FROM intake.dossier_code_counters WHERE unit = :u"),
            {"u": WARD_7}).scalar_one()
    pool = eventlet.GreenPool(50)
    answers = list(pool.imap(lambda _: receive(intake, headers=DESK_7), range(50)))
    assert [a.status_code for a in answers] == [201] * 50
    codes = sorted(int(a.json()["code"][-4:]) for a in answers)
    lines = sorted(a.json()["tracking_book"]["line"] for a in answers)
    assert codes == list(range(last_code + 1, last_code + 51))
    assert lines == list(range(before + 1, before + 51))


def test_a_step_start_that_arrives_after_the_result_is_recorded_not_dead_lettered(intake):
    """Each event type has its own queue: under load (the throughput benchmark) routing's
    dossier.step_started reached intake after dossier.processed and was dead-lettered."""
    from tests.conftest import dead_letters
    with Connection(amqp()) as connection:
        broker.declare_topology(connection.default_channel)
        broker.dead_letter_queue(connection.default_channel).purge()
    answer = receive(intake)
    assert answer.status_code == 201, answer.text
    code = answer.json()["code"]
    publish(new_event("dossier.processed", {"code": code, "agency": WARD_5, "result": "done",
                                            "processed_at": "2026-02-13T11:00:00+07:00"}, WARD_5))
    wait_for(lambda: dossier(intake, code)["status"] == 9)
    publish(new_event("dossier.step_started", {"code": code, "agency": WARD_5, "step": 1,
                                               "started_at": "2026-02-13T10:30:00+07:00"}, WARD_5))
    late = wait_for(lambda: (d := dossier(intake, code))["history"][-1]["action"] == "step_started" and d)
    assert late["status"] == 9
    # Nothing was dead-lettered: a step start about no dossier, published now, is the first to be.
    marker = new_event("dossier.step_started", {"code": f"{WARD_5}-260101-9998", "agency": WARD_5, "step": 1,
                                                "started_at": "2026-02-13T10:30:00+07:00"}, WARD_5)
    publish(marker)
    assert [json.loads(d.body)["id"] for d in dead_letters(amqp())] == [marker.id]


def test_an_event_about_an_unknown_dossier_is_dead_lettered(intake):
    from tests.conftest import dead_letters
    with Connection(amqp()) as connection:
        broker.declare_topology(connection.default_channel)
        broker.dead_letter_queue(connection.default_channel).purge()
    publish(new_event("dossier.processed", {"code": f"{WARD_5}-260101-9999", "agency": WARD_5, "result": "done",
                                            "processed_at": "2026-02-26T09:30:00+07:00"}, WARD_5))
    (dead,) = dead_letters(amqp())
    assert "no dossier with code" in dead.headers["x-dead-letter-reason"]


def test_online_submission_waits_for_the_desk(intake):
    submitted = requests.post(intake.url + "/api/v1/online-submissions", timeout=10, json={
        "unit": WARD_5, "procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "documents": DOCUMENTS})
    assert submitted.status_code == 201, submitted.text
    code = submitted.json()["code"]
    assert submitted.json()["status"] == 1
    assert dossier(intake, code)["tracking_book"] is None
    accepted = requests.post(f"{intake.url}/api/v1/dossiers/{code}/acceptance", headers=DESK_5, timeout=10)
    assert accepted.status_code == 200 and accepted.json()["status"] == 2
    assert accepted.json()["appointment_date"]
    assert [(h["action"], h["status_from"], h["status_to"]) for h in accepted.json()["history"]] == \
        [("submit", None, 1), ("receive", 1, 2)]
    again = requests.post(f"{intake.url}/api/v1/dossiers/{code}/acceptance", headers=DESK_5, timeout=10)
    assert again.status_code == 409


def test_an_apology_sets_the_new_appointment_date(intake):
    received = receive(intake).json()
    code, first_date = received["code"], received["appointment_date"]
    apology = new_event("dossier.apology_issued", {
        "code": code, "agency": WARD_5, "reason": "Chậm xác minh", "original_due_date": first_date,
        "new_date": "2026-04-10", "issued_at": "2026-03-06T16:00:00+07:00", "official": "Phạm Văn Cường"}, WARD_5)
    publish(apology)
    moved = wait_for(lambda: (d := dossier(intake, code))["appointment_date"] == "2026-04-10" and d)
    assert [h["date"] for h in moved["appointment_history"]] == [first_date]
    assert moved["history"][-1]["action"] == "apology_issued" and moved["status"] == 2
    public = requests.get(f"{intake.url}/api/v1/status/{code}", params={"secret": received["secret"]},
                          timeout=10).json()
    assert public["appointment_date"] == "2026-04-10"
    publish(apology)                                  # redelivered: nothing changes
    publish(new_event("dossier.step_started", {"code": code, "agency": WARD_5, "step": 1,
                                               "started_at": "2026-03-06T16:30:00+07:00"}, WARD_5))
    after = wait_for(lambda: (d := dossier(intake, code))["status"] == 4 and d)
    assert after["appointment_history"] == moved["appointment_history"]
    assert [h["action"] for h in after["history"]] == ["receive", "apology_issued", "step_started"]


def test_refusal_of_an_online_submission_prints_mau_03(intake):
    code = requests.post(intake.url + "/api/v1/online-submissions", timeout=10, json={
        "unit": WARD_5, "procedure_code": MARITAL_STATUS, "applicant": APPLICANT,
        "documents": DOCUMENTS}).json()["code"]
    refused = requests.post(f"{intake.url}/api/v1/dossiers/{code}/refusal", headers=DESK_5, timeout=10,
                            json={"reason": "Người yêu cầu không cư trú tại Phường 5"})
    assert refused.status_code == 200 and refused.json()["status"] == 3
    pdf = requests.get(f"{intake.url}/api/v1/dossiers/{code}/refusal.pdf", headers=DESK_5, timeout=20)
    text_ = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "không cư trú tại Phường 5" in text_ and code in text_


def test_officials_lists_tracking_book_due_and_search(intake, clock):
    clock("2026-03-02T09:00:00+07:00")
    first = receive(intake).json()
    second = receive(intake, applicant={**APPLICANT, "name": "Võ Minh Tuấn", "id_number": "079203009999"}).json()
    book = requests.get(intake.url + "/api/v1/tracking-book", headers=DESK_5, timeout=10,
                        params={"from": "2026-03-02", "to": "2026-03-02"}).json()
    assert [line["code"] for line in book["lines"]] == [first["code"], second["code"]]
    assert book["lines"][1]["line"] == book["lines"][0]["line"] + 1
    pdf = requests.get(intake.url + "/api/v1/tracking-book", headers=DESK_5, timeout=20,
                       params={"from": "2026-03-02", "to": "2026-03-02", "format": "pdf"})
    book_text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert first["code"] in book_text and "Võ Minh Tuấn" in book_text
    bad = requests.get(intake.url + "/api/v1/tracking-book", headers=DESK_5, timeout=10,
                       params={"from": "2026-03-31", "to": "2026-03-01"})
    assert bad.status_code == 400 and bad.json()["field"] == "to"
    other = requests.get(intake.url + "/api/v1/tracking-book", headers=DESK_5, timeout=10,
                         params={"unit": WARD_7, "from": "2026-03-02", "to": "2026-03-02"})
    assert other.status_code == 403

    # 3 working days from Mon 2 March: due Thu 5 March; on 6 March they are overdue.
    clock("2026-03-05T08:00:00+07:00")
    due = requests.get(intake.url + "/api/v1/due", headers=DESK_5, timeout=10).json()
    assert {first["code"], second["code"]} <= {d["code"] for d in due["due_today"]}
    clock("2026-03-06T08:00:00+07:00")
    due = requests.get(intake.url + "/api/v1/due", headers=DESK_5, timeout=10).json()
    assert {first["code"], second["code"]} <= {d["code"] for d in due["overdue"]}

    for query in ("vo minh tuan", "Tuấn", second["code"], "079203009999"):
        found = requests.get(intake.url + "/api/v1/dossiers", params={"q": query}, headers=DESK_5, timeout=10)
        assert second["code"] in [d["code"] for d in found.json()["dossiers"]], query
    hidden = requests.get(intake.url + "/api/v1/dossiers", params={"q": "Tuấn"}, headers=DESK_7, timeout=10)
    assert second["code"] not in [d["code"] for d in hidden.json()["dossiers"]]


def test_receipt_html_and_the_status_page(intake):
    received = receive(intake).json()
    html = requests.get(f"{intake.url}/api/v1/dossiers/{received['code']}/receipt.html", headers=DESK_5,
                        timeout=10).text
    assert received["code"] in html and "<svg" in html
    page = requests.get(f"{intake.url}/tra-cuu", params={"code": received["code"], "secret": received["secret"]},
                        timeout=10)
    assert page.status_code == 200 and "Đã tiếp nhận" in page.text and "N. T. L." in page.text
    assert APPLICANT["id_number"] not in page.text and APPLICANT["phone"] not in page.text


def test_metrics_and_logs_without_personal_data(intake):
    metrics = requests.get(intake.url + "/metrics", timeout=10).text
    assert f'motcua_dossiers_received_total{{channel="in_person",unit="{WARD_5}"}}' in metrics
    assert f'motcua_dossiers_open{{status="2",unit="{WARD_5}"}}' in metrics
    assert 'motcua_dossiers_returned_total{result="early",unit="000.05.20.H29"} 1.0' in metrics
    assert 'motcua_entrypoint_duration_seconds_count{entrypoint="http_receive",kind="http",service="intake"}' in metrics
    log = intake.log_path.read_text()
    received = [json.loads(line) for line in log.splitlines() if '"desk action done"' in line]
    assert received and all(line["correlation_id"] and line["service"] == "intake" for line in received)
    assert "secret=***" in log
    for secret in (APPLICANT["id_number"], APPLICANT["phone"], APPLICANT["email"], "079203009999"):
        assert secret not in log
        assert secret not in metrics


def test_status_lookup_is_rate_limited(intake):
    received = receive(intake).json()
    answers = [requests.get(f"{intake.url}/api/v1/status/{received['code']}",
                            params={"secret": received["secret"]}, timeout=10).status_code for _ in range(15)]
    assert answers[0] == 200 and 429 in answers
