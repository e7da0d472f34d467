"""Every operation of every HTTP service, fuzzed by schemathesis against the real processes from
the service's own OpenAPI document (served at /openapi.json): no answer is a 5xx, and every answer
is one the document names, with its content type and body (issue 16). A bounded number of
examples per operation keeps the whole run to a few minutes; the figures go to the run's output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT
from tests.e2e.conftest import ServiceProcess
from tests.e2e.test_intake_desk import APPLICANT, wait_for
from tests.fakes.officials import official_headers

SERVICES = ["intake", "routing", "fees", "notify", "portal"]      # and the catalogue (catalog_process)
WARD_5 = "000.05.20.H29"
CERTIFIED_COPY = "2.000815"       # a procedure of every ward, same day
OFFICIAL = official_headers("Nguyễn Văn An", WARD_5)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))           # per operation
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")


@pytest.fixture(scope="module")
def services(process_env, catalog_process, clock, tmp_path_factory):
    logs = tmp_path_factory.mktemp("fuzz")
    # The fuzzer writes far faster than an official: the rate limit is tested on its own
    # (tests/unit/test_web_answers.py), here it would only turn writes into 429s.
    env = {**process_env, "CLOCK_FILE": str(clock.path), "HTTP_WRITE_RATE_PER_MINUTE": "1000000",
           "HTTP_WRITE_BURST": "100000", "GATEWAY_MERCHANTS": "VNPAY=fuzz-secret"}
    clock("2026-03-02T09:00:00+07:00")      # a Monday morning: the desk is open
    started = {"catalog": catalog_process[0]}
    running = []
    try:
        for name in SERVICES:
            running.append(ServiceProcess(name, env, logs).start())
            started[name] = running[-1].url
        yield started, logs, dossier_known_everywhere(started)
    finally:
        for service in running:
            service.stop()


def dossier_known_everywhere(urls: dict) -> str:
    """One dossier received at the desk and known to routing, fees and notify (through their events),
    so that half the fuzzed paths name a real dossier and reach the handlers, not only the 404."""
    procedure = requests.get(f"{urls['catalog']}/api/v1/procedures/{CERTIFIED_COPY}", timeout=5).json()
    received = requests.post(f"{urls['intake']}/api/v1/dossiers", headers=OFFICIAL, timeout=10, json={
        "procedure_code": CERTIFIED_COPY, "applicant": APPLICANT, "quantities": {"pages": 3, "copies": 1},
        "documents": [{"name": d["name"], "form": d["form"], "count": d["count"]} for d in procedure["documents"]]})
    assert received.status_code == 201, received.text
    code = received.json()["code"]
    for name, path in (("routing", f"/api/v1/dossiers/{code}"), ("fees", f"/api/v1/dossiers/{code}"),
                       ("notify", f"/api/v1/dossiers/{code}/messages")):
        wait_for(lambda: requests.get(urls[name] + path, headers=OFFICIAL, timeout=5).status_code == 200)
    return code


def config_file(path, code: str):
    """schemathesis.toml: a path's ``code`` is, half the time, the real dossier or procedure."""
    path.write_text(f"""
[dictionaries.codes]
values = ["{code}", "{CERTIFIED_COPY}"]

[parameters]
"path.code" = {{ dictionary = "codes", probability = 0.5 }}
""")
    return path


def schemathesis(url: str, report_path, headers: dict, config) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{url}/openapi.json", "--url", url,
               "--checks", CHECKS, "--mode", "all", "--max-examples", str(EXAMPLES),
               "--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "16",
               "--request-timeout", "30", "--suppress-health-check", "all", "--no-color",
               "--report", "json", "--report-json-path", str(report_path)]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    # In the test's folder: schemathesis keeps a cache (.schemathesis/) where it runs.
    return subprocess.run(command, cwd=report_path.parent, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("name", ["catalog", *SERVICES])
def test_no_operation_answers_a_5xx_or_an_undocumented_answer(services, name, report, tmp_path):
    urls, logs, code = services
    started = time.monotonic()
    run = schemathesis(urls[name], tmp_path / "report.json", OFFICIAL, config_file(tmp_path / "schemathesis.toml", code))
    took = time.monotonic() - started
    figures = run_figures(tmp_path / "report.json")
    report(f"schemathesis {name}: {figures} in {took:.0f} s")
    assert run.returncode == 0, f"{run.stdout[-15000:]}\n{run.stderr[-3000:]}"



def run_figures(report_path) -> str:
    """What schemathesis did, from its JSON report: operations, test cases, failures."""
    if not report_path.exists():
        return "no report"
    run = json.loads(report_path.read_text())
    operations, cases = run["operations"], run["test_cases"]
    return (f"{operations['tested']}/{operations['total']} operations, {cases['generated']} test cases, "
            f"{cases['unique_failures']} unique failures, {len(run['errors'])} errors")
