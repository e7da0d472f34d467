"""What operators see is true: the real services (intake as two replicas) and the gateway, a real
Prometheus scraping them and RabbitMQ's plugin, traffic through every one of the 17 desks (and a
ward system through the gateway), then every dashboard panel's query and every recording rule run
against that Prometheus (issue 8)."""
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from kombu import Producer
from nameko.testing.utils import find_free_port
from sqlalchemy import text

from motcua.runtime import broker
from services.fees.domain import sign
from tests.conftest import ROOT
from tests.e2e.conftest import ServiceProcess, amqp, run_cli
from tests.e2e.test_intake_desk import APPLICANT, wait_for
from tests.e2e.test_notify import Fake
from tests.fakes.unit_keys import UnitKeys
from tests.fakes.officials import official_headers

DISTRICT = "000.00.20.H29"
WARDS = ["000.01.20.H29", *[f"000.{n:02d}.20.H29" for n in range(3, 18)]]
DESKS = [DISTRICT, *WARDS]
LAND_TRANSFER, CERTIFIED_COPY, HOUSEHOLD_BUSINESS = "1.013831", "2.000815", "2.000720"
MERCHANT, SECRET = "motcua-go-vap", "a-test-secret"


def headers(unit: str, name: str = "Cán bộ một cửa", role: str = "desk_officer") -> dict:
    return official_headers(name, unit, role)


def load_dashboards():
    spec = importlib.util.spec_from_file_location("dashboards", ROOT / "deploy" / "grafana" / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        for schema in ("intake", "routing", "fees", "notify", "portal"):
            tables = connection.execute(text(
                "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
                "WHERE schemaname = :s AND tablename <> 'alembic_version'"), {"s": schema}).scalar_one()
            connection.execute(text(f"TRUNCATE {tables} CASCADE"))
    folder = tmp_path_factory.mktemp("observability")
    smtp = Fake("tests.fakes.smtp_server", folder / "mail.jsonl")
    sms = Fake("tests.fakes.http_gateway", folder / "sms.jsonl", "--fail-first", "2")
    broken = Fake("tests.fakes.http_gateway", folder / "hook.jsonl", "--fail-always")
    national_portal = Fake("tests.fakes.national_portal", folder / "portal.jsonl", "--fail-first", "3")
    officials = folder / "officials.yml"
    officials.write_text("units:\n" + "".join(
        f'  "{unit}":\n    email: ["lanh-dao-{unit}@example.gov.vn"]\n    webhook: "http://127.0.0.1:{broken.port}/hook"\n'
        for unit in [*DESKS, "000.41.20.H29", "000.42.20.H29", "000.24.20.H29"]))
    clock("2026-03-02T08:00:00+07:00")
    # The ward whose own system publishes through the gateway signs with a key of the test's.
    keys = UnitKeys(folder / "keys", (WARDS[2],))
    env = {**process_env, "CLOCK_FILE": str(clock.path), "ROUTING_SCAN_SECONDS": "0.5",
           "GATEWAY_MERCHANTS": f"{MERCHANT}={SECRET}", **keys.env}
    notify_env = {**process_env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
                  "SMS_GATEWAY_URL": f"http://127.0.0.1:{sms.port}/sms", "OFFICIALS_FILE": str(officials),
                  "NOTIFY_BACKOFF_SECONDS": "0.3", "NOTIFY_MAX_ATTEMPTS": "2", "QUIET_HOURS": "00:00-00:00"}
    (folder / "replica").mkdir()
    services = {"intake": ServiceProcess("intake", env, folder),
                "intake-2": ServiceProcess("intake", env, folder / "replica"),
                "routing": ServiceProcess("routing", env, folder), "fees": ServiceProcess("fees", env, folder),
                "notify": ServiceProcess("notify", notify_env, folder),
                "portal": ServiceProcess("portal", {**process_env, "PORTAL_URL": f"http://127.0.0.1:{national_portal.port}",
                                                    "PORTAL_BACKOFF_SECONDS": "0.3", "CLOCK_FILE": str(clock.path)},
                                         folder),
                "gateway": ServiceProcess("gateway", {**env, "GATEWAY_GRPC_ADDRESS": f"127.0.0.1:{find_free_port()}",
                                                      "GATEWAY_FEED_POLL_SECONDS": "0.2"}, folder)}
    prometheus = None
    try:
        for service in services.values():
            service.start()
        # A real Prometheus on the same jobs as deploy/prometheus/prometheus.yml, scraping every second.
        config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
        catalog_url, _ = catalog_process
        targets = {"catalog": [catalog_url], "intake": [services["intake"].url, services["intake-2"].url],
                   "routing": [services["routing"].url], "fees": [services["fees"].url],
                   "notify": [services["notify"].url], "gateway": [services["gateway"].url],
                   "portal": [services["portal"].url],
                   "rabbitmq": ["http://127.0.0.1:15692"]}
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [url.split("//")[1] for url in targets[job["job_name"]]]}]
            job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "rules" / f) for f in ("recording.yml", "alerts.yml")]
        config.pop("alerting", None)
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = find_free_port()
        prometheus_bin = shutil.which("prometheus")
        assert prometheus_bin, "Debian's prometheus is needed: apt-get install prometheus (.ci/run does it)"
        prometheus = subprocess.Popen([prometheus_bin, f"--config.file={folder / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={folder / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                      stdout=subprocess.DEVNULL, stderr=open(folder / "prometheus.log", "w"))
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if prometheus.poll() is not None:
                pytest.fail(f"prometheus exited: {(folder / 'prometheus.log').read_text()[-2000:]}")
            try:
                return requests.get(url + "/-/ready", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, timeout=30)
        yield {**services, "catalog": catalog_url, "prometheus": url, "sms": sms, "smtp": smtp, "keys": keys}
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=20)
        for service in services.values():
            service.stop()
        for fake in (smtp, sms, broken, national_portal):
            fake.stop()

# --- the traffic ----------------------------------------------------------------------------------

def documents(stack, code):
    procedure = requests.get(f"{stack['catalog']}/api/v1/procedures/{code}", timeout=5).json()
    return [{"name": d["name"], "form": d["form"], "count": d["count"]} for d in procedure["documents"]]


def receive(stack, unit, procedure, **extra):
    answer = requests.post(stack["intake"].url + "/api/v1/dossiers", headers=headers(unit), timeout=10, json={
        "procedure_code": procedure, "applicant": APPLICANT, "documents": documents(stack, procedure),
        "notifications": {"channels": ["sms", "email"], "optional": True}, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()["code"]


def routed(stack, code, unit):
    return wait_for(lambda: (r := requests.get(f"{stack['routing'].url}/api/v1/dossiers/{code}",
                                               headers=headers(unit), timeout=5)).status_code == 200 and r.json())


def process_all_steps(stack, code, unit):
    """Each agency in turn: accept, complete, hand on; the last returns it to the desk."""
    while True:
        view = routed(stack, code, unit)
        stage = [s for s in view["steps"] if s["stage"] == view["stage"]]
        for step in stage:
            who = headers(step["agency"], "Chuyên viên", "specialist")
            if step["state"] == "done":
                continue
            if step["state"] == "handed_over":
                assert requests.post(f"{stack['routing'].url}/api/v1/dossiers/{code}/steps/{step['id']}/acceptance",
                                     headers=who, json={}, timeout=10).status_code == 200
            assert requests.post(f"{stack['routing'].url}/api/v1/dossiers/{code}/steps/{step['id']}/completion",
                                 headers=who, json={"result": "done"}, timeout=10).status_code == 200
        last = not any(s["stage"] > view["stage"] for s in view["steps"])
        path = "return-to-desk" if last else "transfer"
        assert requests.post(f"{stack['routing'].url}/api/v1/dossiers/{code}/{path}",
                             headers=headers(stage[0]["agency"], "Chuyên viên", "specialist"), json={}, timeout=10).status_code == 200
        if last:
            return


def outstanding(stack, code, unit):
    return wait_for(lambda: (r := requests.get(f"{stack['fees'].url}/api/v1/dossiers/{code}", headers=headers(unit),
                                               timeout=5)).status_code == 200 and r.json(), timeout=20)["outstanding"]


def pay(stack, code, unit, method, index):
    amount = outstanding(stack, code, unit)
    if amount == 0:
        return
    if method == "online":
        params = {"merchant": MERCHANT, "transaction_id": f"TX-{code}", "order": code, "amount": str(amount),
                  "currency": "VND", "timestamp": _now_iso(stack)}
        params["signature"] = sign(params, SECRET)
        assert requests.post(stack["fees"].url + "/api/v1/gateway/callback", data=params, timeout=10).status_code == 200
        forged = {**params, "amount": str(amount + 1000)}
        assert requests.post(stack["fees"].url + "/api/v1/gateway/callback", data=forged, timeout=10).status_code == 401
    else:
        body = {"method": method, "amount": amount, "reference": f"{method}-{code}-{index}"}
        assert requests.post(f"{stack['fees'].url}/api/v1/dossiers/{code}/payments", headers=headers(unit), json=body,
                             timeout=10).status_code == 200


def _now_iso(stack) -> str:
    return Path(stack["clock_path"]).read_text().strip()


def one_round(stack, round_no: int):
    """Every desk receives, processes, charges, is paid and returns; plus the unhappy paths."""
    for index, unit in enumerate(DESKS):
        procedure = HOUSEHOLD_BUSINESS if unit == DISTRICT else CERTIFIED_COPY
        extra = {"quantities": {"pages": 3, "copies": 1}} if procedure == CERTIFIED_COPY else {}
        code = receive(stack, unit, procedure, **extra)
        incomplete = requests.post(stack["intake"].url + "/api/v1/dossiers", headers=headers(unit), timeout=10,
                                   json={"procedure_code": procedure, "applicant": APPLICANT, "documents": []})
        assert incomplete.status_code == 400
        pay(stack, code, unit, ("cash", "transfer", "online")[index % 3], round_no)
        if True:                # a supplement asked by the desk, then brought
            docs = [{"name": "Giấy tờ bổ sung", "form": "copy", "count": 1}]
            assert requests.post(f"{stack['intake'].url}/api/v1/dossiers/{code}/supplement-request",
                                 headers=headers(unit), json={"reason": "Thiếu giấy tờ", "documents": docs},
                                 timeout=10).status_code == 200
            assert requests.post(f"{stack['intake'].url}/api/v1/dossiers/{code}/supplement", headers=headers(unit),
                                 json={"documents": docs}, timeout=10).status_code == 200
        process_all_steps(stack, code, unit)
        wait_for(lambda: requests.get(f"{stack['intake'].url}/api/v1/dossiers/{code}", headers=headers(unit),
                                      timeout=5).json()["status"] == 9, timeout=20)
        wait_for(lambda: requests.get(f"{stack['intake'].url}/api/v1/dossiers/{code}", headers=headers(unit),
                                      timeout=5).json()["fees"]["settled"], timeout=20)
        assert requests.post(f"{stack['intake'].url}/api/v1/dossiers/{code}/return", headers=headers(unit),
                             json={"collected_by": APPLICANT["name"]}, timeout=10).status_code == 200
        # Every desk also refuses one dossier after payment (a refund) and sees one withdrawn.
        refused = receive(stack, unit, procedure, **extra)
        pay(stack, refused, unit, "cash", round_no + 10)
        assert requests.post(f"{stack['intake'].url}/api/v1/dossiers/{refused}/refusal", headers=headers(unit),
                             json={"reason": "Không thuộc thẩm quyền"}, timeout=10).status_code == 200
        withdrawn = receive(stack, unit, procedure, **extra)
        assert requests.post(f"{stack['intake'].url}/api/v1/dossiers/{withdrawn}/withdrawal", headers=headers(unit),
                             json={"reason": "Công dân rút hồ sơ"}, timeout=10).status_code == 200
        receive(stack, unit, procedure, **extra)     # and one stays open, as every desk always has some
    # A malformed event: dead-lettered by every consumer of dossier.received.
    with broker.confirmed_connection(amqp()) as connection:
        Producer(connection.default_channel, exchange=broker.events_exchange).publish(
            "{not json", routing_key="dossier.received", content_type="application/json", content_encoding="utf-8")


def late_land_dossier(stack, clock, received: str, late: str):
    """A land transfer the tax office sits on: at risk, overdue, flagged without apology, then apologised."""
    clock(received)
    code = receive(stack, DISTRICT, LAND_TRANSFER)
    view = routed(stack, code, DISTRICT)
    registry = headers("000.41.20.H29", "Chuyên viên", "specialist")
    first = view["steps"][0]["id"]
    for action, body in (("acceptance", {}), ("completion", {"result": "done"})):
        requests.post(f"{stack['routing'].url}/api/v1/dossiers/{code}/steps/{first}/{action}", headers=registry,
                      json=body, timeout=10)
    requests.post(f"{stack['routing'].url}/api/v1/dossiers/{code}/transfer", headers=registry, json={}, timeout=10)
    tax_step = routed(stack, code, DISTRICT)["steps"][1]["id"]
    requests.post(f"{stack['routing'].url}/api/v1/dossiers/{code}/steps/{tax_step}/acceptance",
                  headers=headers("000.42.20.H29", "Chuyên viên", "specialist"), json={}, timeout=10)
    clock(late)
    wait_for(lambda: routed(stack, code, DISTRICT)["overdue_at"], timeout=20)
    return code


def test_every_panel_and_recording_rule_returns_data(stack, clock):
    stack["clock_path"] = str(clock.path)
    late = []
    for round_no, (day, late_day, next_day) in enumerate((
            ("2026-03-02T08:00:00+07:00", "2026-03-17T08:00:00+07:00", "2026-03-18T09:00:00+07:00"),
            ("2026-03-18T10:00:00+07:00", "2026-04-02T08:00:00+07:00", "2026-04-03T09:00:00+07:00"))):
        clock(day)
        one_round(stack, round_no)
        code = late_land_dossier(stack, clock, day, late_day)
        late.append(code)
        clock(next_day)                  # a working day later: the missing apology is flagged
        wait_for(lambda: any(a["action"] == "overdue" for a in routed(stack, code, DISTRICT)["actions"]), timeout=10)
        time.sleep(1.5)
        assert requests.post(f"{stack['routing'].url}/api/v1/dossiers/{code}/apology", headers=headers("000.42.20.H29", "Trưởng phòng", "unit_head"),
                             json={"reason": "Chờ xác minh nghĩa vụ tài chính"}, timeout=10).status_code == 200
        process_all_steps(stack, code, DISTRICT)     # the tax office finishes late; the dossier ends late
        time.sleep(4)                    # several scrapes between the rounds: counters move, rates exist
    # A ward's own system through the gRPC gateway: calls, its published events, its feed.
    gateway = stack["gateway"]
    token = run_cli(["gateway", "token", "issue", WARDS[2]], gateway.env).stdout.strip()
    ward_system = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ward_system.py"), "--token", token, "--timeout", "60",
         "--target", gateway.env["GATEWAY_GRPC_ADDRESS"], "--unit", WARDS[2],
         "--key-id", stack["keys"].key_ids[WARDS[2]],
         "--key-file", str(stack["keys"].private_dir / f"{stack['keys'].key_ids[WARDS[2]]}.pem")],
        env={**gateway.env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert ward_system.returncode == 0, ward_system.stdout + ward_system.stderr
    # Today's new dossiers at every desk: being processed, within their deadline.
    fresh = [(unit, receive(stack, unit, HOUSEHOLD_BUSINESS if unit == DISTRICT else CERTIFIED_COPY))
             for unit in DESKS]
    for unit, code in fresh:
        routed(stack, code, unit)
    time.sleep(3)

    prometheus = stack["prometheus"]

    def query(expr: str) -> tuple[str, list]:
        answer = requests.get(prometheus + "/api/v1/query", params={"query": expr}, timeout=20).json()
        return answer.get("status"), answer.get("data", {}).get("result", []) if answer.get("status") == "success" \
            else answer.get("error")

    problems = []
    dashboards = load_dashboards()
    for board, title, expr in dashboards.all_queries():
        status, result = query(expr)
        if status != "success" or not result:
            problems.append(f"dashboard {board} / {title}: {status}: {result if status != 'success' else 'no data'}"
                            f"\n    {expr}")
    rules = []
    for name in ("recording.yml",):
        for group in yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / name).read_text())["groups"]:
            rules += [(rule["record"], rule["expr"]) for rule in group["rules"] if "record" in rule]
    for record, expr in rules:
        status, result = query(expr)
        if status != "success" or not result:
            problems.append(f"recording rule {record}: {status}: {result if status != 'success' else 'no data'}")
    assert not problems, f"{len(problems)} queries without data:\n" + "\n".join(problems)


def test_gauges_read_from_the_database_agree_across_replicas(stack, engine):
    status = requests.get(stack["prometheus"] + "/api/v1/query", timeout=10,
                          params={"query": 'motcua_dossiers_open{job="intake"}'}).json()
    by_instance: dict = {}
    for sample in status["data"]["result"]:
        labels = sample["metric"]
        by_instance.setdefault((labels["unit"], labels["status"]), {})[labels["instance"]] = float(sample["value"][1])
    assert by_instance and all(len(values) == 2 for values in by_instance.values())
    assert all(len(set(values.values())) == 1 for values in by_instance.values())
    with engine.connect() as connection:
        counts = dict(((unit, str(s)), n) for unit, s, n in connection.execute(text(
            "SELECT unit, status, count(*) FROM intake.dossiers WHERE status IN (1, 2, 4, 5, 6, 8, 9) "
            "GROUP BY unit, status")).all())
    assert {key: next(iter(values.values())) for key, values in by_instance.items()} == \
        {key: float(value) for key, value in counts.items()}
