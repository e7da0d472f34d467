"""Inter-agency routing end to end: catalog, intake and two routing replicas as real processes,
time moved through the shared clock file (issue 4, done when)."""
import io
import json
from urllib.parse import quote

import pytest
import requests
from pypdf import PdfReader
from sqlalchemy import text

from motcua.contracts.events import new_event
from tests.conftest import EventTap, dead_letters
from tests.e2e.conftest import amqp, ran_again, ServiceProcess, run_cli
from tests.e2e.test_intake_desk import APPLICANT, publish, wait_for

DISTRICT = "000.00.20.H29"
LAND_REGISTRY, TAX = "000.41.20.H29", "000.42.20.H29"
LAND_TRANSFER = "1.013831"      # land registry 3 days, tax 3 days, land registry 4 days: 10 working days


def official(name: str, unit: str) -> dict:
    return {"X-Official": quote(name), "X-Unit": unit}


DESK = official("Trần Văn Bình", DISTRICT)
REGISTRY = official("Lê Văn Đức", LAND_REGISTRY)
TAX_OFFICER = official("Phạm Thị Mai", TAX)


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE intake.dossiers, intake.dossier_history, intake.tracking_book_counters, "
                                "intake.dossier_code_counters, intake.outbox, intake.processed_events CASCADE"))
        connection.execute(text("TRUNCATE routing.workflows, routing.steps, routing.handovers, routing.actions, "
                                "routing.outbox, routing.processed_events CASCADE"))
    logs = tmp_path_factory.mktemp("stack")
    env = {**process_env, "CLOCK_FILE": str(clock.path), "ROUTING_SCAN_SECONDS": "0.3"}
    clock("2026-03-02T09:00:00+07:00")
    intake = ServiceProcess("intake", env, logs).start()
    replicas = [ServiceProcess("routing", env, logs / f"r{i}") for i in range(2)]
    for i, replica in enumerate(replicas):
        (logs / f"r{i}").mkdir()
        replica.start()
    yield intake, replicas
    for service in (intake, *replicas):
        service.stop()


def documents(catalog_url: str) -> list:
    answer = requests.get(f"{catalog_url}/api/v1/procedures/{LAND_TRANSFER}", timeout=5)
    assert answer.status_code == 200, answer.text
    procedure = answer.json()
    return [{"name": d["name"], "form": d["form"], "count": d["count"]} for d in procedure["documents"]]


def receive_land_transfer(intake, catalog_url) -> str:
    answer = requests.post(intake.url + "/api/v1/dossiers", headers=DESK, timeout=10, json={
        "procedure_code": LAND_TRANSFER, "applicant": APPLICANT, "documents": documents(catalog_url)})
    assert answer.status_code == 201, answer.text
    return answer.json()["code"]


def routed(routing, code, headers=DESK) -> dict:
    return wait_for(lambda: (r := requests.get(f"{routing.url}/api/v1/dossiers/{code}", headers=headers,
                                               timeout=5)).status_code == 200 and r.json())


def act(routing, code, path, headers, **body):
    answer = requests.post(f"{routing.url}/api/v1/dossiers/{code}/{path}", headers=headers, json=body, timeout=10)
    return answer


def step_of(view, agency, stage):
    return next(s for s in view["steps"] if s["agency"] == agency and s["stage"] == stage)["id"]


def intake_status(intake, code):
    return requests.get(f"{intake.url}/api/v1/dossiers/{code}", headers=DESK, timeout=5).json()


def work_step(routing, code, agency_headers, agency, stage, then="transfer"):
    view = routed(routing, code)
    step = step_of(view, agency, stage)
    assert act(routing, code, f"steps/{step}/acceptance", agency_headers).status_code == 200
    done = act(routing, code, f"steps/{step}/completion", agency_headers, result="done", note="Đã xử lý")
    assert done.status_code == 200, done.text
    if then:
        moved = act(routing, code, then, agency_headers)
        assert moved.status_code == 200, moved.text
        return moved.json()


def test_an_inter_agency_land_procedure_finishes_on_time(stack, catalog_process, clock):
    intake, (routing, _) = stack
    url, _ = catalog_process
    clock("2026-03-02T09:00:00+07:00")
    code = receive_land_transfer(intake, url)
    view = routed(routing, code)
    assert view["due_date"] == "2026-03-16" == view["original_due_date"]
    # Monday 9:00: 2 h 30 this morning, 4 h this afternoon, then ten working days.
    assert view["remaining"] == "còn 10 ngày 6 giờ làm việc"
    assert view["steps"][0]["remaining"].startswith("còn ") and view["steps"][1]["remaining"] is None
    assert [(s["agency"], s["state"]) for s in view["steps"]] == [
        (LAND_REGISTRY, "handed_over"), (TAX, "pending"), (LAND_REGISTRY, "pending")]

    clock("2026-03-03T10:00:00+07:00")
    work_step(routing, code, REGISTRY, LAND_REGISTRY, 0)
    wait_for(lambda: intake_status(intake, code)["status"] == 4)
    clock("2026-03-05T10:00:00+07:00")
    work_step(routing, code, TAX_OFFICER, TAX, 1)
    clock("2026-03-11T15:00:00+07:00")
    final = work_step(routing, code, REGISTRY, LAND_REGISTRY, 2, then="return-to-desk")
    assert final["state"] == "processed" and final["result_class"] == "early"
    rows = final["control_slip"]
    assert [(r["from"], r["to"]) for r in rows] == [
        ("Bộ phận tiếp nhận và trả kết quả", LAND_REGISTRY), (LAND_REGISTRY, TAX), (TAX, LAND_REGISTRY),
        (LAND_REGISTRY, "Bộ phận tiếp nhận và trả kết quả")]
    assert [r["receiver"] for r in rows[:3]] == ["Lê Văn Đức", "Phạm Thị Mai", "Lê Văn Đức"]
    assert all(r["result"] in ("early", "on_time") for r in rows)

    # intake sees it processed (9); once fees are settled, the desk returns the result.
    wait_for(lambda: intake_status(intake, code)["status"] == 9)
    publish(new_event("fees.charged", {"code": code, "amount": 28000, "charged_at": "2026-03-02T09:01:00+07:00"},
                      DISTRICT))
    publish(new_event("fees.paid", {"code": code, "amount": 28000, "method": "transfer",
                                    "paid_at": "2026-03-02T09:10:00+07:00"}, DISTRICT))
    publish(new_event("fees.settled", {"code": code, "settled_at": "2026-03-02T09:10:00+07:00"}, DISTRICT))
    wait_for(lambda: intake_status(intake, code)["fees"]["settled"])
    clock("2026-03-12T09:00:00+07:00")
    returned = requests.post(f"{intake.url}/api/v1/dossiers/{code}/return", headers=DESK, timeout=10,
                             json={"collected_by": APPLICANT["name"]})
    assert returned.status_code == 200 and returned.json()["result_class"] == "early"

    slip = requests.get(f"{routing.url}/api/v1/dossiers/{code}/control-slip.pdf", headers=DESK, timeout=20)
    assert slip.status_code == 200
    slip_text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(slip.content)).pages)
    assert code in slip_text and "Chi cục Thuế" in slip_text


def outbox_types(engine, code) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT type FROM routing.outbox WHERE envelope->'payload'->>'code' = :c "
                                            "ORDER BY seq"), {"c": code}).scalars())


def test_overdue_at_the_tax_office_is_detected_once_with_two_replicas(stack, catalog_process, clock, engine):
    intake, (routing, other) = stack
    url, _ = catalog_process
    tap = EventTap(amqp(), "dossier.#")
    try:
        clock("2026-03-02T09:30:00+07:00")
        code = receive_land_transfer(intake, url)
        routed(routing, code)
        work_step(routing, code, REGISTRY, LAND_REGISTRY, 0)
        view = routed(routing, code)
        tax_step = step_of(view, TAX, 1)
        assert act(routing, code, f"steps/{tax_step}/acceptance", TAX_OFFICER).status_code == 200
        # The tax office sits on it: the step's deadline (5/3) passes, then the dossier's (16/3).
        clock("2026-03-17T08:00:00+07:00")
        wait_for(lambda: routed(routing, code)["overdue_at"])
        ran_again((routing, other), "scan")     # both replicas scanned twice more: none announced it again
        assert outbox_types(engine, code).count("dossier.overdue") == 1
        assert outbox_types(engine, code).count("dossier.step_overdue") == 1
        events = []
        wait_for(lambda: events.extend(e for e in tap.drain(settle=0) if e["payload"].get("code") == code)
                 or {"dossier.overdue", "dossier.step_overdue"} <= {e["type"] for e in events})
    finally:
        tap.close()
    overdue = [e for e in events if e["type"] == "dossier.overdue"]
    assert len(overdue) == 1 and overdue[0]["payload"]["agency"] == TAX
    assert overdue[0]["payload"]["due_date"] == "2026-03-16"
    assert len([e for e in events if e["type"] == "dossier.step_overdue"]) == 1

    # The apology: only the agency at fault; the system proposes a date from the remaining work.
    proposal = requests.get(f"{routing.url}/api/v1/dossiers/{code}/apology/proposal", headers=TAX_OFFICER,
                            timeout=5).json()
    assert proposal["agency_at_fault"] == TAX
    assert proposal["proposed_new_date"] == "2026-03-26"     # tax 3 + land registry 4 working days from 17/3
    wrong = act(other, code, "apology", REGISTRY, reason="...")
    assert wrong.status_code == 403
    tap = EventTap(amqp(), "dossier.apology_issued")
    try:
        given = act(other, code, "apology", TAX_OFFICER, reason="Chờ xác minh nghĩa vụ tài chính")
        assert given.status_code == 200, given.text
        assert given.json()["apology"]["new_date"] == "2026-03-26"
        again = act(routing, code, "apology", TAX_OFFICER, reason="lần hai")
        assert again.status_code == 409
        issued = [e for e in tap.drain(expect=1, settle=1.0) if e["payload"]["code"] == code]
    finally:
        tap.close()
    assert len(issued) == 1 and issued[0]["payload"]["new_date"] == "2026-03-26"
    letter = requests.get(f"{routing.url}/api/v1/dossiers/{code}/apology.pdf", headers=TAX_OFFICER, timeout=20)
    letter_text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(letter.content)).pages)
    assert "26/03/2026" in letter_text and APPLICANT["name"] in letter_text
    metrics = requests.get(routing.url + "/metrics", timeout=5).text + requests.get(other.url + "/metrics",
                                                                                     timeout=5).text
    assert f'motcua_apologies_total{{agency="{TAX}"}} 1.0' in metrics


def test_an_overdue_dossier_without_apology_is_flagged_after_a_working_day(stack, catalog_process, clock, engine):
    intake, (routing, _) = stack
    url, _ = catalog_process
    clock("2026-03-02T10:00:00+07:00")
    code = receive_land_transfer(intake, url)
    routed(routing, code)
    tap = EventTap(amqp(), "dossier.#")
    try:
        clock("2026-03-17T08:00:00+07:00")        # overdue detected on 17/3
        wait_for(lambda: routed(routing, code)["overdue_at"])
        ran_again(stack[1], "scan")                   # later scans of the same day: not yet missing
        assert "dossier.apology_missing" not in outbox_types(engine, code)
        clock("2026-03-18T08:00:00+07:00")        # a working day later, still no apology
        wait_for(lambda: "dossier.apology_missing" in outbox_types(engine, code))
        ran_again(stack[1], "scan")                   # and once only
        assert outbox_types(engine, code).count("dossier.apology_missing") == 1
        missing = wait_for(lambda: [e for e in tap.drain(settle=0)
                                    if e["type"] == "dossier.apology_missing" and e["payload"]["code"] == code])
    finally:
        tap.close()
    assert len(missing) == 1 and missing[0]["payload"]["agency"] == LAND_REGISTRY


def test_a_supplement_stops_the_clock_and_moves_the_date(stack, catalog_process, clock):
    intake, (routing, _) = stack
    url, _ = catalog_process
    clock("2026-03-02T11:00:00+07:00")
    code = receive_land_transfer(intake, url)
    view = routed(routing, code)
    step = step_of(view, LAND_REGISTRY, 0)
    assert act(routing, code, f"steps/{step}/acceptance", REGISTRY).status_code == 200
    clock("2026-03-03T09:00:00+07:00")
    asked = act(routing, code, f"steps/{step}/completion", REGISTRY, result="needs_supplement",
                reason="Thiếu bản đồ địa chính", documents=[{"name": "Trích lục bản đồ", "form": "copy", "count": 1}])
    assert asked.status_code == 200, asked.text
    stopped = wait_for(lambda: (v := routed(routing, code))["clock_stopped"] and v)
    assert stopped["due_date"] is None and intake_status(intake, code)["status"] == 5
    assert stopped["remaining"] == "tạm dừng tính thời gian (chờ công dân)"
    clock("2026-03-06T09:00:00+07:00")          # the citizen comes back three working days later
    back = requests.post(f"{intake.url}/api/v1/dossiers/{code}/supplement", headers=DESK, timeout=10,
                         json={"documents": [{"name": "Trích lục bản đồ", "form": "copy", "count": 1}]})
    assert back.status_code == 200, back.text
    restarted = wait_for(lambda: (v := routed(routing, code))["due_date"] and v)
    assert restarted["due_date"] == "2026-03-19" and not restarted["clock_stopped"]
    # The one deadline is routing's: the desk's appointment date follows it.
    moved = wait_for(lambda: (d := intake_status(intake, code))["appointment_date"] == "2026-03-19" and d)
    assert moved["appointment_history"][-1]["reason"] == "Bổ sung hồ sơ"
    held = next(s for s in restarted["steps"] if s["id"] == step)
    assert held["due_date"] == "2026-03-10"       # 3 working days from 2/3: counted 3/3, stopped 4–6/3, 9/3, 10/3


def test_actions_out_of_order_are_rejected_and_change_nothing(stack, catalog_process, clock):
    intake, (routing, _) = stack
    url, _ = catalog_process
    clock("2026-03-02T14:00:00+07:00")
    code = receive_land_transfer(intake, url)
    view = routed(routing, code)
    tax_step, registry_step = step_of(view, TAX, 1), step_of(view, LAND_REGISTRY, 0)
    not_yet = act(routing, code, f"steps/{tax_step}/completion", TAX_OFFICER, result="done")
    assert not_yet.status_code == 409 and not_yet.json()["field"] == "step"
    not_theirs = act(routing, code, f"steps/{registry_step}/acceptance", TAX_OFFICER)
    assert not_theirs.status_code == 403
    too_early = act(routing, code, "transfer", REGISTRY)
    assert too_early.status_code == 409
    bad_result = act(routing, code, f"steps/{registry_step}/completion", REGISTRY, result="maybe")
    assert bad_result.status_code == 400 and bad_result.json()["field"] == "result"
    assert routed(routing, code)["actions"] == view["actions"]
    outsider = requests.get(f"{routing.url}/api/v1/dossiers/{code}", headers=official("X", "000.07.20.H29"),
                            timeout=5)
    assert outsider.status_code == 403


@pytest.mark.parametrize("event, reason", [
    (new_event("dossier.supplement_received", {"code": "000.00.20.H29-260101-9999",
                                               "received_at": "2026-03-02T09:00:00+07:00",
                                               "previous_appointment_date": "2026-03-10",
                                               "appointment_date": "2026-03-12"}, DISTRICT), "no dossier with code"),
    (new_event("dossier.received", {"code": "000.00.20.H29-260302-0999", "procedure_code": LAND_TRANSFER,
                                    "procedure_version": 99, "channel": "in_person",
                                    "received_at": "2026-03-02T09:00:00+07:00", "appointment_date": "2026-03-16",
                                    "time_limit": "10 working days", "handling_agency": LAND_REGISTRY,
                                    "applicant": {"name": "A"}, "quantities": {}, "secret": "X"}, DISTRICT),
     "version 99"),
])
def test_bad_events_are_dead_lettered_and_change_nothing(stack, engine, event, reason):
    with engine.connect() as connection:
        before = connection.execute(text("SELECT count(*) FROM routing.workflows")).scalar_one()
    from kombu import Connection
    from motcua.runtime import broker
    with Connection(amqp()) as connection:
        broker.declare_topology(connection.default_channel)
        broker.dead_letter_queue(connection.default_channel).purge()
    publish(event)
    dead = dead_letters(amqp())
    assert dead and reason in dead[0].headers["x-dead-letter-reason"]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM routing.workflows")).scalar_one() == before


@pytest.mark.parametrize("received, dead_lettered", [(False, False), (True, True)])
def test_a_refusal_of_a_dossier_routing_never_had(stack, received, dead_lettered):
    """An online submission refused before receipt is nothing to routing; a refusal of a received
    dossier routing does not know is an error, dead-lettered once its wait runs out."""
    from kombu import Connection
    from motcua.runtime import broker
    with Connection(amqp()) as connection:
        broker.declare_topology(connection.default_channel)
        broker.dead_letter_queue(connection.default_channel).purge()
    code = f"000.05.20.H29-260302-{8000 + int(received)}"
    publish(new_event("dossier.refused", {"code": code, "reason": "Hồ sơ không hợp lệ", "official": "Trần Văn Bình",
                                          "refused_at": "2026-03-02T09:00:00+07:00", "received": received},
                      "000.05.20.H29"))
    dead = [d for d in dead_letters(amqp(), timeout=8) if d.headers["x-dead-letter-service"] == "routing"]
    assert bool(dead) == dead_lettered, [d.headers["x-dead-letter-reason"] for d in dead]


def test_report_ii06a_balances(stack, process_env):
    _, (routing, _) = stack
    report = requests.get(routing.url + "/api/v1/reports/ii06a", timeout=10,
                          params={"unit": DISTRICT, "from": "2026-03-01", "to": "2026-03-31"}).json()
    total = report["total"]
    assert total["balanced"] and total["received"] == total["resolved"] + total["pending"]
    assert total["received"] >= 4 and total["early"] >= 1 and total["overdue"] >= 1
    csv_text = requests.get(routing.url + "/api/v1/reports/ii06a", timeout=10, params={
        "unit": DISTRICT, "from": "2026-03-01", "to": "2026-03-31", "format": "csv"}).text
    assert "Đất đai" in csv_text and "Tổng cộng" in csv_text
    bad = requests.get(routing.url + "/api/v1/reports/ii06a", params={"from": "2026-03-31", "to": "x"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["field"] == "to"
    # The same report from the command line, as the Home Affairs office runs it.
    cli = run_cli(["report", "ii06a", "--unit", DISTRICT, "--from", "2026-03-01", "--to", "2026-03-31"], process_env)
    assert json.loads(cli.stdout)["total"] == total
    wrong = run_cli(["report", "ii06a", "--from", "2026-03-31", "--to", "2026-03-01"], process_env, check=False)
    assert wrong.returncode == 2 and "--to" in wrong.stderr
