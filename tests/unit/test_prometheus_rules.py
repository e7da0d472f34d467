"""The Prometheus and Alertmanager files under deploy/: valid, tested, and true to the code.

Runs Debian's ``promtool`` (package ``prometheus``) and ``amtool`` (package
``prometheus-alertmanager``) on the files; a missing tool fails the test (CI installs both),
it is not skipped. Also checks that every metric the rules use is documented in
deploy/METRICS.md and defined in the services' code, so that renaming a metric breaks the build.

The expected values of deploy/prometheus/tests/*.yml are exact for Prometheus 2.x, whose range
selectors include the sample at the start of the window (3.x excludes it).
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULE_FILES = [PROMETHEUS / "rules" / "recording.yml", PROMETHEUS / "rules" / "alerts.yml"]
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
METRICS_MD = ROOT / "deploy" / "METRICS.md"
CODE_DIRS = [ROOT / "motcua", ROOT / "services"]

INSTALL = {"promtool": "apt-get install prometheus", "amtool": "apt-get install prometheus-alertmanager"}

# Metrics defined in the code that nothing writes yet, each with the reason, expected to fail
# (strictly: once the code writes them, the test passes unexpectedly and fails, so that the
# entry is removed). Empty: every metric is written.
NEVER_WRITTEN: dict[str, str] = {}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `{INSTALL[name]}` (Debian; CI installs it)", pytrace=False)
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- promtool -------------------------------------------------------------------------------

def test_prometheus_config_is_valid():
    # promtool resolves rule_files relative to the config and checks them too.
    assert_ok(run(tool("promtool"), "check", "config", rel(CONFIG)))


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_is_valid(rule_file):
    assert_ok(run(tool("promtool"), "check", "rules", rel(rule_file)))


def test_rule_unit_tests_pass():
    assert RULE_TESTS, "no promtool tests under deploy/prometheus/tests"
    assert_ok(run(tool("promtool"), "test", "rules", *map(rel, RULE_TESTS)))


# --- amtool ---------------------------------------------------------------------------------

def test_alertmanager_config_is_valid():
    assert_ok(run(tool("amtool"), "check-config", rel(ALERTMANAGER)))


WARDS = [1, *range(3, 18)]
ROUTES = [
    (["unit=000.05.20.H29"], "ubnd-phuong-05"),
    (["unit=000.00.20.H29"], "ubnd-quan-go-vap"),
    *[([f"unit=000.{ward:02d}.20.H29"], f"ubnd-phuong-{ward:02d}") for ward in WARDS],
    (["unit=000.21.20.H29"], "phong-ban-quan"),
    (["unit=000.25.20.H29"], "phong-ban-quan"),
    (["unit=000.31.20.H29"], "phong-ban-quan"),
    (["unit=000.41.20.H29"], "cn-vpdk-dat-dai"),
    (["alertname=MotcuaStepAtRisk", "severity=info", "agency=000.42.20.H29", "unit=000.42.20.H29"], "chi-cuc-thue"),
    (["unit=000.43.20.H29"], "cong-an-quan"),
    (["unit=000.44.20.H29"], "bhxh-quan"),
    (["alertname=MotcuaApologyMissing", "severity=warning", "unit=000.99.20.H29"], "ubnd-quan-go-vap"),
    (["alertname=MotcuaServiceDown", "severity=critical", "service=intake"], "platform"),
    (["alertname=MotcuaOutboxNotDraining", "severity=critical", "service=routing"], "platform"),
    (["alertname=MotcuaDeadLettersPresent", "severity=warning", "queue=motcua.dead-letter"], "platform"),
]


@pytest.mark.parametrize("labels, receiver", ROUTES, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_alertmanager_routes(labels, receiver):
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={rel(ALERTMANAGER)}", *labels)
    assert_ok(result)
    assert result.stdout.strip() == receiver, (
        f"{' '.join(labels)} routed to {result.stdout.strip()!r}, expected {receiver!r}\n{result.stderr}")


def test_a_service_down_inhibits_its_latency_alerts():
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    assert any('alertname="MotcuaServiceDown"' in rule.get("source_matchers", [])
               and 'alertname="MotcuaDeskLatencyHigh"' in rule.get("target_matchers", [])
               and rule.get("equal") == ["service"]
               for rule in config["inhibit_rules"])
    # Both alerts must then carry `service`: the down alert copies it from the job, the latency
    # alert inherits it from the recorded series.
    alerts = {rule["alert"]: rule for rule in rules_of(RULE_FILES[1])}
    assert alerts["MotcuaServiceDown"]["labels"]["service"] == "{{ $labels.job }}"
    assert "service_entrypoint_kind:" in alerts["MotcuaDeskLatencyHigh"]["expr"]


# --- the rules against the tests, the catalogue and the code -------------------------------

def rules_of(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def test_every_rule_is_unit_tested():
    recorded = {rule["record"] for rule in rules_of(RULE_FILES[0])}
    alerts = {rule["alert"] for rule in rules_of(RULE_FILES[1])}
    tested_exprs, firing, quiet = [], set(), set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            tested_exprs += [case["expr"] for case in test.get("promql_expr_test", []) if case.get("exp_samples")]
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert sorted(r for r in recorded if not any(r in expr for expr in tested_exprs)) == []
    assert sorted(alerts - firing) == [], "alerts never tested firing"
    assert sorted(alerts - quiet) == [], "alerts never tested not firing"


def test_every_alert_has_severity_summary_and_description():
    for rule in rules_of(RULE_FILES[1]):
        assert rule["labels"].get("severity") in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_alerts_use_only_recorded_series_that_exist():
    recorded = {rule["record"] for rule in rules_of(RULE_FILES[0])}
    used = {name for rule in rules_of(RULE_FILES[1])
            for name in re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["expr"])}
    assert sorted(used - recorded) == []


METRIC_DEFINITION = re.compile(
    r"(?:(\w+)\s*=\s*)?\b(Counter|Gauge|Histogram|Summary|DatabaseGauge)\(\s*[\"']([a-zA-Z_:][\w:]*)[\"']")


@functools.cache
def code_metrics() -> dict[str, dict]:
    """Every metric defined in motcua/ and services/: name -> {type, variable, file}."""
    found = {}
    for directory in CODE_DIRS:
        for path in sorted(directory.rglob("*.py")):
            for variable, kind, name in METRIC_DEFINITION.findall(path.read_text(encoding="utf-8")):
                if kind == "Counter" and not name.endswith("_total"):
                    name += "_total"  # prometheus_client appends it when missing
                found[name] = {"type": kind, "variable": variable, "file": path}
    return found


def exposed_names(metrics: dict[str, dict]) -> dict[str, str]:
    """Series name as scraped -> the metric family it belongs to."""
    names = {}
    for name, metric in metrics.items():
        names[name] = name
        if metric["type"] in ("Histogram", "Summary"):
            for suffix in ("_bucket", "_sum", "_count"):
                names[name + suffix] = name
    return names


def metric_names_in_rules() -> set[str]:
    names = set()
    for path in RULE_FILES:
        for rule in rules_of(path):
            # a metric, not the middle of a recorded name (level:metric:operations)
            names |= set(re.findall(r"(?<![\w:])((?:motcua|rabbitmq)_[a-z_]+)(?![\w:])", rule["expr"]))
    return names


def documented(name: str) -> bool:
    return f"`{name}`" in METRICS_MD.read_text(encoding="utf-8")


def test_code_metrics_are_found():
    metrics = code_metrics()
    # a canary for the regular expression: one of each kind
    assert {"motcua_dossiers_resolved_total", "motcua_processing_seconds", "motcua_outbox_pending",
            "motcua_dossiers_running"} <= set(metrics)
    assert len(metrics) >= 30


def test_every_metric_used_by_the_rules_is_documented_and_in_the_code():
    exposed = exposed_names(code_metrics())
    used = metric_names_in_rules()
    assert {"motcua_dossiers_resolved_total", "motcua_processing_seconds_bucket",
            "rabbitmq_queue_messages_ready"} <= used
    missing_in_code = sorted(n for n in used if n.startswith("motcua_") and n not in exposed)
    assert missing_in_code == [], "metrics used by the rules but defined nowhere in motcua/ or services/"
    undocumented = sorted(n for n in used if not documented(exposed.get(n, n)))
    assert undocumented == [], "metrics used by the rules but missing from deploy/METRICS.md"


def test_every_metric_of_the_code_is_documented():
    undocumented = sorted(name for name in code_metrics() if not documented(name))
    assert undocumented == [], "metrics defined in the code but missing from deploy/METRICS.md"


@functools.cache
def code_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for d in CODE_DIRS for path in sorted(d.rglob("*.py")))


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=NEVER_WRITTEN[name]))
    if name in NEVER_WRITTEN else name
    for name in sorted(code_metrics())
])
def test_metric_is_written_somewhere(name):
    metric = code_metrics()[name]
    if metric["type"] == "DatabaseGauge":
        return  # collected from the database at every scrape
    variable = metric["variable"]
    assert variable, f"{name}: not assigned to a variable"
    assert re.search(rf"\b{variable}\.(labels|inc|dec|set|observe)\(", code_text()), f"{name} ({variable}) is never written"
