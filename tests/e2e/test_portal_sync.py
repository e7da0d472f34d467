"""Status sync to the national portal end to end (issue 18): catalog, intake, routing, fees and the
portal service as real processes on RabbitMQ and PostgreSQL, and a fake national portal of the
test's own (tests/fakes/national_portal.py, a real HTTP server in its own process).

A land transfer passes three steps at two agencies (linked, liên thông) while the portal is out
of service (503) for ``PORTAL_E2E_OUTAGE_SECONDS`` (default 60: the issue's "a minute")
and then throttles (429 + Retry-After): the dossier's whole life still reaches the portal as
statuses 2 -> 4 -> 9 -> 10, in order, once each. The portal then forgets one of them and
``motcua portal reconcile`` finds and re-sends it.
"""
import os
import time

import pytest
import requests
from sqlalchemy import text

from tests.e2e.conftest import ServiceProcess, run_cli
from tests.e2e.test_notify import Fake
from tests.e2e.test_intake_desk import APPLICANT, wait_for
from tests.e2e.test_routing import (DESK, LAND_REGISTRY, REGISTRY, TAX, TAX_OFFICER, intake_status,
                                    receive_land_transfer, work_step)

OUTAGE_SECONDS = float(os.environ.get("PORTAL_E2E_OUTAGE_SECONDS", "60"))


class FakePortalProcess(Fake):
    """The fake national portal in its own process, and the test's hands on it."""

    def __init__(self, out):
        super().__init__("tests.fakes.national_portal", out)
        self.url = f"http://127.0.0.1:{self.port}"

    def control(self, **body):
        assert requests.post(self.url + "/_control", json=body, timeout=5).status_code == 200

    def held(self) -> list[dict]:
        return requests.get(self.url + "/_held", timeout=5).json()["data"]

    def attempts(self) -> list[dict]:
        return self.lines()


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        for schema, tables in (("intake", "dossiers, dossier_history, tracking_book_counters, dossier_code_counters"),
                               ("routing", "workflows, steps, handovers, actions"),
                               ("fees", "accounts, charges, payments, refunds, receipts, receipt_counters")):
            connection.execute(text(f"TRUNCATE {', '.join(f'{schema}.{t.strip()}' for t in tables.split(','))}, "
                                    f"{schema}.outbox, {schema}.processed_events CASCADE"))
        connection.execute(text("TRUNCATE portal.sync_rows, portal.processed_events"))
    logs = tmp_path_factory.mktemp("portal-stack")
    portal = FakePortalProcess(logs / "portal-attempts.jsonl")
    env = {**process_env, "CLOCK_FILE": str(clock.path), "ROUTING_SCAN_SECONDS": "0.5"}
    clock("2026-03-02T09:00:00+07:00")
    # The portal service on the wall clock (its retries are real time), backoff from 1 s to 4 s.
    portal_env = {**process_env, "PORTAL_URL": portal.url, "PORTAL_BACKOFF_SECONDS": "1",
                  "PORTAL_BACKOFF_MAX_SECONDS": "4", "PORTAL_RATE_PER_SECOND": "20", "PORTAL_POLL_SECONDS": "0.2"}
    services = [ServiceProcess("intake", env, logs), ServiceProcess("routing", env, logs),
                ServiceProcess("fees", env, logs), ServiceProcess("portal", portal_env, logs)]
    try:
        for service in services:
            service.start()
        yield {"fake": portal, "portal": services[3], "env": portal_env, "fees": services[2],
               "intake": services[0], "routing": services[1]}
    finally:
        for service in services:
            service.stop()
        portal.stop()


def statuses_held(fake, code) -> list[tuple[str, str]]:
    return [(r["MaDongBo"], r["TrangThaiHoSo"]) for r in fake.held() if r["MaHoSo"] == code]


def test_a_whole_life_reaches_the_portal_in_order_through_an_outage_and_a_reconciliation(stack, catalog_process,
                                                                                        clock, engine):
    fake, intake, routing = stack["fake"], stack["intake"], stack["routing"]
    url, _ = catalog_process
    code = receive_land_transfer(intake, url)
    wait_for(lambda: statuses_held(fake, code) == [(f"{code}:1", "2")], timeout=20)

    # The portal goes out of service; the dossier lives its life meanwhile.
    fake.control(fail_for=OUTAGE_SECONDS, status=503)
    outage_ends = time.time() + OUTAGE_SECONDS
    clock("2026-03-03T10:00:00+07:00")
    work_step(routing, code, REGISTRY, LAND_REGISTRY, 0)
    wait_for(lambda: intake_status(intake, code)["status"] == 4, timeout=20)
    clock("2026-03-05T10:00:00+07:00")
    work_step(routing, code, TAX_OFFICER, TAX, 1)                 # a second agency: no new status
    clock("2026-03-11T15:00:00+07:00")
    work_step(routing, code, REGISTRY, LAND_REGISTRY, 2, then="return-to-desk")
    wait_for(lambda: intake_status(intake, code)["status"] == 9, timeout=20)
    account = wait_for(lambda: (r := requests.get(f"{stack['fees'].url}/api/v1/dossiers/{code}", headers=DESK,
                                                  timeout=5)).status_code == 200 and r.json())
    if account["charged"]:
        paid = requests.post(f"{stack['fees'].url}/api/v1/dossiers/{code}/payments", headers=DESK, timeout=10,
                             json={"method": "cash", "amount": account["charged"], "reference": f"cash-{code}"})
        assert paid.status_code == 200, paid.text
        wait_for(lambda: intake_status(intake, code)["fees"]["settled"], timeout=20)
    clock("2026-03-12T09:00:00+07:00")
    returned = requests.post(f"{intake.url}/api/v1/dossiers/{code}/return", headers=DESK, timeout=10,
                             json={"collected_by": APPLICANT["name"]})
    assert returned.status_code == 200, returned.text
    assert time.time() < outage_ends, "the life ended after the outage: make PORTAL_E2E_OUTAGE_SECONDS longer"
    assert statuses_held(fake, code) == [(f"{code}:1", "2")]      # nothing got through the outage
    fake.control(throttle_next=2, retry_after=1)                   # and once back, it throttles a little

    # Everything arrives, in order, once each; only real status changes (one 4 for three steps).
    wanted = [(f"{code}:1", "2"), (f"{code}:2", "4"), (f"{code}:3", "9"), (f"{code}:4", "10")]
    wait_for(lambda: statuses_held(fake, code) == wanted, timeout=OUTAGE_SECONDS + 40)
    attempts = [a for a in fake.attempts() if a["record"] and a["record"]["MaHoSo"] == code]
    accepted = [a["record"]["TrangThaiHoSo"] for a in attempts if a["answer"] == 200]
    assert accepted == ["2", "4", "9", "10"]
    failed = [a for a in attempts if a["answer"] == 503]
    # During the outage only the dossier's next change (4) was tried, never 9 or 10 before it,
    # and less and less often (backoff 1, 2, 4, 4 ... s).
    assert failed and {a["record"]["TrangThaiHoSo"] for a in failed} == {"4"}
    gaps = [b["at"] - a["at"] for a, b in zip(failed, failed[1:])]
    assert len(failed) <= OUTAGE_SECONDS / 2 + 3 and gaps and max(gaps) >= 3.5, gaps
    assert [a["answer"] for a in fake.attempts()].count(429) == 2

    metrics = requests.get(stack["portal"].url + "/metrics", timeout=5).text
    assert 'motcua_portal_sync_failures_total{reason="unavailable",unit="000.00.20.H29"}' in metrics
    assert 'motcua_portal_sync_failures_total{reason="throttled",unit="000.00.20.H29"} 2.0' in metrics
    assert 'motcua_portal_sync_sent_total{kind="first",unit="000.00.20.H29"} 4.0' in metrics

    # The portal loses status 4; the reconciliation of the period finds it and sends it again.
    fake.control(forget=f"{code}:2")
    period = ["portal", "reconcile", "--from", "2026-03-02", "--to", "2026-03-12"]
    dry = run_cli([*period, "--dry-run"], stack["env"])
    assert "missing at the portal: 1" in dry.stdout and f"{code}:2" in dry.stdout
    # A dry run queues nothing: the command has returned, and its row is still as the sync left it
    # (sent, never re-sent), so nothing can go to the portal for it.
    with engine.connect() as connection:
        row = connection.execute(text("SELECT state, resends FROM portal.sync_rows WHERE code = :c AND seq = 2"),
                                 {"c": code}).one()
    assert tuple(row) == ("sent", 0)
    assert f"{code}:2" not in dict(statuses_held(fake, code))
    done = run_cli(period, stack["env"])
    assert "missing at the portal: 1; queued again: 1" in done.stdout, done.stdout
    wait_for(lambda: f"{code}:2" in dict(statuses_held(fake, code)), timeout=20)
    again = run_cli(period, stack["env"])
    assert "missing at the portal: 0" in again.stdout
    metrics = requests.get(stack["portal"].url + "/metrics", timeout=5).text
    assert 'motcua_portal_sync_sent_total{kind="resend",unit="000.00.20.H29"} 1.0' in metrics
