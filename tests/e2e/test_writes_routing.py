"""Every write of routing's HTTP API refuses malformed input with a 4xx naming the field and changes
nothing: no row of routing's tables, its outbox included (issue 16). catalog, intake and one
routing process run for real; time moves through the shared clock file."""
import pytest
import requests
from sqlalchemy import text

from tests.e2e.conftest import ServiceProcess
from tests.e2e.test_intake_desk import APPLICANT, WARD_5, wait_for
from tests.e2e.test_routing import DISTRICT, LAND_REGISTRY, LAND_TRANSFER, TAX, documents, step_of
from tests.e2e.writes import refused, unchanged
from tests.fakes.officials import official_headers

DESK = official_headers("Trần Văn Bình", DISTRICT)
# agencies' officials: specialists, and heads (who sign the apology letters)
REGISTRY = official_headers("Lê Văn Đức", LAND_REGISTRY, ["specialist", "unit_head"])
TAX_OFFICER = official_headers("Phạm Thị Mai", TAX, ["specialist", "unit_head"])
WARD = official_headers("Lê Thị Hoa", WARD_5, "specialist")
UNKNOWN = f"{DISTRICT}-260101-9999"


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE intake.dossiers, intake.dossier_history, intake.tracking_book_counters, "
                                "intake.dossier_code_counters, intake.outbox, intake.processed_events CASCADE"))
        connection.execute(text("TRUNCATE routing.workflows, routing.steps, routing.handovers, routing.actions, "
                                "routing.outbox, routing.processed_events CASCADE"))
    logs = tmp_path_factory.mktemp("writes-routing")
    env = {**process_env, "CLOCK_FILE": str(clock.path), "ROUTING_SCAN_SECONDS": "0.3"}
    clock("2026-03-02T09:00:00+07:00")
    services = [ServiceProcess(name, env, logs).start() for name in ("intake", "routing")]
    yield dict(zip(("intake", "routing"), services))
    for service in services:
        service.stop()


def routed(routing, code) -> dict:
    return wait_for(lambda: (r := requests.get(f"{routing.url}/api/v1/dossiers/{code}", headers=DESK,
                                               timeout=5)).status_code == 200 and r.json())


def post(routing, path, body=None, headers=REGISTRY, raw=None):
    kwargs = {"data": raw, "headers": {**headers, "Content-Type": "application/json"}} if raw is not None \
        else {"json": body, "headers": headers}
    return requests.post(f"{routing.url}/api/v1/dossiers/{path}", timeout=10, **kwargs)


@pytest.fixture(scope="module")
def workflows(stack, catalog_process, clock):
    """Two land transfers received on 2 March; the land registry accepted the first's step; on
    17 March both are overdue at the land registry (every write's precondition is then known)."""
    url, _ = catalog_process
    codes = []
    for _ in range(2):
        answer = requests.post(stack["intake"].url + "/api/v1/dossiers", headers=DESK, timeout=10, json={
            "procedure_code": LAND_TRANSFER, "applicant": APPLICANT, "documents": documents(url)})
        assert answer.status_code == 201, answer.text
        codes.append(answer.json()["code"])
    held, waiting = codes
    step = step_of(routed(stack["routing"], held), LAND_REGISTRY, 0)
    assert post(stack["routing"], f"{held}/steps/{step}/acceptance").status_code == 200
    waiting_step = step_of(routed(stack["routing"], waiting), LAND_REGISTRY, 0)
    clock("2026-03-17T08:00:00+07:00")
    for code in codes:
        wait_for(lambda: routed(stack["routing"], code)["overdue_at"])
    return {"held": held, "waiting": waiting, "step": step, "waiting_step": waiting_step,
            "tax_step": step_of(routed(stack["routing"], held), TAX, 1)}


NEEDS = {"result": "needs_supplement", "reason": "Thiếu bản đồ", "documents": [{"name": "Trích lục", "form": "copy"}]}

# (path after /dossiers/, headers, body or raw JSON text, status, field); {held} {waiting} {step} {waiting_step} {tax_step}
CASES = [
    # acceptance: only the step's agency, a step that exists and waits for it
    ("{waiting}/steps/{waiting_step}/acceptance", TAX_OFFICER, {}, 403, "step"),
    ("{waiting}/steps/{waiting_step}/acceptance", WARD, {}, 403, "code"),     # not routed to the ward at all
    ("{waiting}/steps/{step}/acceptance", REGISTRY, {}, 404, "step"),          # another dossier's step
    ("{waiting}/steps/999/acceptance", REGISTRY, {}, 404, "step"),
    ("{held}/steps/{step}/acceptance", REGISTRY, {}, 409, "step"),
    ("{held}/steps/{tax_step}/acceptance", TAX_OFFICER, {}, 409, "step"),
    (UNKNOWN + "/steps/1/acceptance", REGISTRY, {}, 404, "code"),
    # completion
    ("{held}/steps/{step}/completion", REGISTRY, {}, 400, "result"),
    ("{held}/steps/{step}/completion", REGISTRY, {"result": "maybe"}, 400, "result"),
    ("{held}/steps/{step}/completion", REGISTRY, {"result": ["done"]}, 400, "result"),
    ("{held}/steps/{step}/completion", REGISTRY, {"result": "done", "note": 5}, 400, "note"),
    ("{held}/steps/{step}/completion", REGISTRY, "[]", 400, "body"),
    ("{held}/steps/{step}/completion", REGISTRY, "{not json", 400, "body"),
    ("{held}/steps/{step}/completion", REGISTRY, {**NEEDS, "documents": []}, 400, "documents"),
    ("{held}/steps/{step}/completion", REGISTRY, {**NEEDS, "documents": "Trích lục"}, 400, "documents"),
    ("{held}/steps/{step}/completion", REGISTRY, {**NEEDS, "reason": None}, 400, "reason"),
    ("{held}/steps/{step}/completion", TAX_OFFICER, {"result": "done"}, 403, "step"),
    ("{waiting}/steps/{waiting_step}/completion", REGISTRY, {"result": "done"}, 409, "step"),
    # transfer and return to the desk: only once the stage is done, by its agency
    ("{held}/transfer", REGISTRY, {}, 409, "step"),
    ("{held}/transfer", TAX_OFFICER, {}, 403, "code"),
    (UNKNOWN + "/transfer", REGISTRY, {}, 404, "code"),
    ("{held}/return-to-desk", REGISTRY, {}, 409, "step"),
    # a financial obligation
    ("{held}/obligation", REGISTRY, {"amount": 100000}, 400, "description"),
    ("{held}/obligation", REGISTRY, {"description": "Thuế TNCN", "amount": -1}, 400, "amount"),
    ("{held}/obligation", REGISTRY, {"description": "Thuế TNCN", "amount": "100000"}, 400, "amount"),
    ("{held}/obligation", REGISTRY, {"description": "Thuế TNCN", "amount": 1.5}, 400, "amount"),
    ("{held}/obligation", REGISTRY, {"description": "Thuế TNCN", "amount": True}, 400, "amount"),
    ("{held}/obligation", REGISTRY, "[]", 400, "body"),
    ("{held}/obligation", TAX_OFFICER, {"description": "Thuế TNCN", "amount": 100000}, 403, "code"),
    # the apology, of an overdue dossier, by the agency at fault
    ("{held}/apology", REGISTRY, {"new_date": "2026-03-26"}, 400, "reason"),
    ("{held}/apology", REGISTRY, {"reason": "Chờ xác minh", "new_date": "26/03/2026"}, 400, "new_date"),
    ("{held}/apology", REGISTRY, {"reason": "Chờ xác minh", "new_date": 20260326}, 400, "new_date"),
    ("{held}/apology", REGISTRY, {"reason": "Chờ xác minh", "new_date": "2026-03-16"}, 400, "new_date"),
    ("{held}/apology", REGISTRY, {"reason": "Chờ xác minh", "new_date": "2026-03-22"}, 400, "new_date"),  # a Sunday
    ("{held}/apology", TAX_OFFICER, {"reason": "Chờ xác minh"}, 403, "code"),
    ("{held}/apology", REGISTRY, "null", 400, "body"),
]


@pytest.mark.parametrize("path, headers, body, status, field", CASES,
                         ids=[f"{c[0].rsplit('/', 1)[-1]}-{c[4]}-{i}" for i, c in enumerate(CASES)])
def test_a_malformed_write_is_refused_naming_the_field_and_changes_nothing(stack, engine, workflows,
                                                                            path, headers, body, status, field):
    target = path.format(**workflows)
    with unchanged(engine, "routing"):
        answer = post(stack["routing"], target, raw=body, headers=headers) if isinstance(body, str) else \
            post(stack["routing"], target, body, headers=headers)
        refused(answer, status, field)


def test_documents_intake_cannot_read_are_refused_by_routing(stack, engine, workflows):
    """Last in the module: while routing accepts them, the held dossier is asked for a supplement."""
    with unchanged(engine, "routing"):
        refused(post(stack["routing"], f"{workflows['held']}/steps/{workflows['step']}/completion",
                     {**NEEDS, "documents": ["Trích lục bản đồ"]}), 400, "documents[0]")
