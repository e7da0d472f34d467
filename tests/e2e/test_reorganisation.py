"""Two wards merge into a new one on a date, end to end: catalog, intake, routing and fees as real
processes on RabbitMQ and PostgreSQL, the clock moved through its file, the reorganisation checked and
applied with ``motcua reorganise`` (issue 18).

The wards are made up (a copy of the catalogue with two test wards), so that nothing here changes the
wards other tests use. From the effective date (Wednesday 1 July 2026, Asia/Ho_Chi_Minh) the old
desks refuse receipts naming the successor; the dossiers in flight finish at the successor with their
codes, deadlines and history; report II.06a balances across the date, every dossier counted once,
under the unit that holds it, the roll-ups agreeing with the scan of the workflows."""

import pytest
import requests
import time

import yaml
from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from motcua.contracts.periods import parse_period
from services.routing import models as routing_models
from services.routing import reports
from tests.conftest import ROOT
from tests.e2e.conftest import ServiceProcess, run_cli
from tests.e2e.test_intake_desk import APPLICANT, wait_for
from tests.fakes.officials import official_headers

WARD_A, WARD_B, MERGED = "000.98.20.H29", "000.99.20.H29", "000.88.20.H29"
OURS = (WARD_A, WARD_B, MERGED)
GUARDIANSHIP = "1.004837"        # Đăng ký giám hộ: a ward's, 3 working days, no fee
READ_MODELS = ("intake", "routing", "fees", "notify")


def official(name: str, unit: str) -> dict:
    """A ward's official: its desk, and the steps of the ward's own procedures."""
    return official_headers(name, unit, ["desk_officer", "specialist"])


AUDITOR = official_headers("Đỗ Văn Khải", "000.00.20.H29", "auditor")     # reads report II.06a


DESK_A, DESK_B, DESK_M = (official("Trần Văn Bình", WARD_A), official("Lê Thị Hoa", WARD_B),
                          official("Ngô Văn Tư", MERGED))


def ward(code: str, number: str) -> dict:
    return {"code": code, "name": f"Ủy ban nhân dân Phường Thử Nghiệm {number}",
            "short_name": f"Phường Thử Nghiệm {number}", "kind": "ward", "parent": "000.00.20.H29",
            "admin_code": None, "desk": True}


def _forget_ours(engine) -> None:
    with engine.begin() as connection:
        for table in (routing_models.report_rollups, routing_models.report_rollup_changes):
            connection.execute(delete(table).where(table.c.unit.in_(OURS)))
        for schema in READ_MODELS:
            connection.execute(text(f"DELETE FROM {schema}.catalogue_units WHERE code = ANY(:codes)"),
                               {"codes": list(OURS)})


@pytest.fixture(scope="module")
def stack(process_env, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE catalog.units, catalog.procedure_versions, catalog.outbox"))
        for schema, tables in (("intake", "dossiers, dossier_history, tracking_book_counters, dossier_code_counters"),
                               ("routing", "workflows, steps, handovers, actions"),
                               ("fees", "accounts, charges, payments, refunds, receipts, receipt_counters")):
            connection.execute(text(f"TRUNCATE {', '.join(f'{schema}.{t.strip()}' for t in tables.split(','))}, "
                                    f"{schema}.outbox, {schema}.processed_events CASCADE"))
    _forget_ours(engine)
    folder = tmp_path_factory.mktemp("reorganisation")
    catalogue = yaml.safe_load((ROOT / "services/catalog/data/catalogue.yml").read_text(encoding="utf-8"))
    catalogue["units"] += [ward(WARD_A, "A"), ward(WARD_B, "B")]
    (folder / "catalogue.yml").write_text(yaml.safe_dump(catalogue, allow_unicode=True), encoding="utf-8")
    (folder / "merger.yml").write_text(yaml.safe_dump({
        "name": "Thử nghiệm: A + B", "effective_from": "2026-07-01",
        "mergers": [{"successor": MERGED, "dissolved": [WARD_A, WARD_B], "procedures": "all",
                     "unit": {**ward(MERGED, "Hợp Nhất"), "name": "Ủy ban nhân dân Phường Hợp Nhất",
                              "short_name": "Phường Hợp Nhất"}}]}, allow_unicode=True), encoding="utf-8")
    env = {**process_env, "CLOCK_FILE": str(clock.path), "CATALOGUE_CACHE_SECONDS": "1"}
    clock("2026-06-29T09:00:00+07:00")
    run_cli(["catalog", "load", str(folder / "catalogue.yml")], env)
    # The catalogue last: its relay publishes the load's units at start, and the other services'
    # queues must be there to take them (a fresh broker has none until each service first runs).
    services = {name: ServiceProcess(name, env, folder).start() for name in ("intake", "routing", "fees", "catalog")}
    try:
        yield services, env, folder
    finally:
        for service in services.values():
            service.stop()
        _forget_ours(engine)


def documents(catalog) -> list:
    procedure = requests.get(f"{catalog.url}/api/v1/procedures/{GUARDIANSHIP}", timeout=5).json()
    return [{"name": d["name"], "form": d["form"], "count": d["count"]} for d in procedure["documents"]]


def receive(intake, catalog, desk) -> requests.Response:
    return requests.post(intake.url + "/api/v1/dossiers", headers=desk, timeout=10, json={
        "procedure_code": GUARDIANSHIP, "applicant": APPLICANT, "documents": documents(catalog)})


def received(intake, catalog, desk) -> str:
    """A receipt, tried until intake's copy of the catalogue has the test's wards (filled from the
    catalogue's events after the load)."""
    answers = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answers.append(receive(intake, catalog, desk))
        if answers[-1].status_code == 201:
            return answers[-1].json()["code"]
        time.sleep(0.2)
    raise AssertionError(f"no receipt in 20 s: {answers[-1].status_code} {answers[-1].text}")


def dossier(service, code, desk):
    answer = requests.get(f"{service.url}/api/v1/dossiers/{code}", headers=desk, timeout=5)
    return answer.json() if answer.status_code == 200 else None


def report(engine, routing, first, last):
    """II.06a of our units from routing's API (the roll-ups) and from the scan of the workflows."""
    answer = requests.get(f"{routing.url}/api/v1/reports/ii06a", params={"from": first, "to": last}, timeout=10,
                          headers=AUDITOR)
    assert answer.status_code == 200, answer.text
    with Session(engine) as session:
        scanned = reports.ii06a(session, None, parse_period(first, last), scan=True)
    ours = lambda r: {u["unit"]: u for u in r["units"] if u["unit"] in OURS}   # noqa: E731
    return ours(answer.json()), ours(scanned)


def test_two_wards_merge_on_a_date(stack, clock, engine):
    services, env, folder = stack
    catalog, intake, routing, fees = (services[n] for n in ("catalog", "intake", "routing", "fees"))
    merger = str(folder / "merger.yml")

    # Monday 29 June: both desks receive; one dossier is withdrawn (closed: it stays where it was).
    first = received(intake, catalog, DESK_A)
    second = received(intake, catalog, DESK_B)
    closed = received(intake, catalog, DESK_A)
    withdrawn = requests.post(f"{intake.url}/api/v1/dossiers/{closed}/withdrawal", headers=DESK_A, timeout=10,
                              json={"reason": "Công dân rút hồ sơ"})
    assert withdrawn.status_code == 200, withdrawn.text
    before = wait_for(lambda: dossier(routing, first, DESK_A))
    assert before["unit"] == WARD_A and before["due_date"] == "2026-07-02"
    wait_for(lambda: dossier(fees, first, DESK_A))

    # The file checks any day; applied before its date, it is refused and changes nothing.
    checked = run_cli(["reorganise", "check", merger, "--catalogue", str(folder / "catalogue.yml")], env)
    assert "valid" in checked.stdout
    clock("2026-06-30T16:59:00+07:00")
    early = run_cli(["reorganise", "apply", merger], env, check=False)
    assert early.returncode == 2 and "takes effect on 2026-07-01; today is 2026-06-30" in early.stderr
    last_day = received(intake, catalog, DESK_A)           # the day before: the old desk still receives
    page = requests.get(catalog.url + "/", timeout=5).text
    assert f'value="{WARD_A}"' in page and "đã sáp nhập" not in page

    # Wednesday 1 July, the effective date: applied once; again, nothing changes.
    clock("2026-07-01T07:45:00+07:00")
    applied = run_cli(["reorganise", "apply", merger], env)
    assert "applied, 3 unit(s) changed" in applied.stdout
    again = run_cli(["reorganise", "apply", merger], env)
    assert "already applied, nothing changed" in again.stdout

    # The dossiers in flight move: codes, deadlines and history kept, the hand-over recorded.
    for code, old in ((first, WARD_A), (second, WARD_B), (last_day, WARD_A)):
        moved = wait_for(lambda: (d := dossier(intake, code, DESK_M)) and d, timeout=20)
        assert moved["code"] == code and code.startswith(old) and moved["unit"] == MERGED
        assert [h["action"] for h in moved["history"]][-1] == "unit_reorganised"
        assert moved["history"][-1]["note"] == {"from": old, "to": MERGED, "reorganisation": "Thử nghiệm: A + B"}
        flow = wait_for(lambda: (w := dossier(routing, code, DESK_M)) and w["unit"] == MERGED and w, timeout=20)
        assert [s["agency"] for s in flow["steps"]] == [MERGED]
        assert "unit_reorganised" in [a["action"] for a in flow["actions"]]
        wait_for(lambda: dossier(fees, code, DESK_M), timeout=20)
        assert dossier(intake, code, DESK_A if old == WARD_A else DESK_B) is None      # the old desk: 403
    assert wait_for(lambda: dossier(routing, first, DESK_M))["due_date"] == before["due_date"]
    assert dossier(intake, closed, DESK_A)["unit"] == WARD_A                           # closed: stays
    # The old desk's tracking book keeps its lines; the successor's officials read it.
    book = requests.get(f"{intake.url}/api/v1/tracking-book", headers=DESK_M, timeout=5,
                        params={"unit": WARD_A, "from": "2026-06-01", "to": "2026-07-31"})
    assert book.status_code == 200, book.text
    assert [(line["code"], line["line"]) for line in book.json()["lines"]] == [(first, 1), (closed, 2), (last_day, 3)]

    # From the date the old desks refuse receipts, naming the successor; the successor receives.
    # (a refusal is a falsy Response: wait for a list holding it)
    [refusal] = wait_for(lambda: (r := receive(intake, catalog, DESK_B)).status_code == 409 and [r], timeout=20)
    assert refusal.json()["field"] == "unit"
    assert "no longer receives dossiers from 2026-07-01" in refusal.json()["error"]
    assert f"submit at Phường Hợp Nhất ({MERGED})" in refusal.json()["error"]
    fresh = received(intake, catalog, DESK_M)
    assert fresh.startswith(MERGED + "-260701-")

    # The catalogue page offers the successor, not the dissolved desks, and says where they went.
    page = requests.get(catalog.url + "/", timeout=5).text
    assert f'value="{WARD_A}"' not in page and f'value="{MERGED}"' in page
    assert "Phường Thử Nghiệm A đã sáp nhập vào Phường Hợp Nhất" in page

    # The first dossier finishes at the successor, on time, with its old code.
    clock("2026-07-01T10:00:00+07:00")
    step = dossier(routing, first, DESK_M)["steps"][0]["id"]
    for path, body in ((f"steps/{step}/acceptance", {}), (f"steps/{step}/completion", {"result": "done"}),
                       ("return-to-desk", {})):
        answer = requests.post(f"{routing.url}/api/v1/dossiers/{first}/{path}", headers=DESK_M, json=body, timeout=10)
        assert answer.status_code == 200, answer.text
    wait_for(lambda: dossier(intake, first, DESK_M)["status"] == 9, timeout=20)
    returned = requests.post(f"{intake.url}/api/v1/dossiers/{first}/return", headers=DESK_M, timeout=10,
                             json={"collected_by": APPLICANT["name"]})
    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == 10 and returned.json()["code"] == first

    # II.06a across the date: every dossier once, under the unit that holds it; roll-ups == scan.
    wait_for(lambda: dossier(routing, fresh, DESK_M))
    for first_day, last_day_ in (("2026-06-01", "2026-07-31"), ("2026-06-29", "2026-06-30"),
                                 ("2026-07-01", "2026-07-01"), ("2026-01-01", "2026-12-31")):
        rolled, scanned = report(engine, routing, first_day, last_day_)
        assert rolled == scanned, (first_day, last_day_)
        assert all(u["total"]["balanced"] for u in rolled.values())
    rolled, _ = report(engine, routing, "2026-06-01", "2026-07-31")
    got = {unit: u["total"]["online"] + u["total"]["in_person_or_post"] for unit, u in rolled.items()}
    assert got == {MERGED: 4, WARD_A: 1}        # first, second, last_day, fresh; the withdrawn one at A
    assert rolled[MERGED]["total"]["resolved"] == 1 and rolled[MERGED]["total"]["pending"] == 3
    june, _ = report(engine, routing, "2026-06-29", "2026-06-30")
    july, _ = report(engine, routing, "2026-07-01", "2026-07-01")
    assert june[MERGED]["total"]["pending"] == 3 == july[MERGED]["total"]["carried_over"]
