"""The catalogue's public HTTP API and CLI, against the real process (foundation §4)."""
import json
from pathlib import Path

import pytest
import requests
import yaml

from tests.e2e.conftest import run_cli

CATALOGUE = Path(__file__).resolve().parents[2] / "services" / "catalog" / "data" / "catalogue.yml"


def test_units(catalog_process):
    url, _ = catalog_process
    units = requests.get(url + "/api/v1/units", timeout=5).json()["units"]
    assert sum(u["desk"] for u in units) == 17
    wards = requests.get(url + "/api/v1/units?kind=ward", timeout=5).json()["units"]
    assert len(wards) == 16 and {u["kind"] for u in wards} == {"ward"}


@pytest.mark.parametrize("query", ["khai sinh", "Đăng ký khai sinh", "dang ky khai sinh"])
def test_search_with_or_without_diacritics(catalog_process, query):
    url, _ = catalog_process
    answer = requests.get(url + "/api/v1/procedures", params={"q": query}, timeout=5).json()
    assert "Đăng ký khai sinh" in [p["name"] for p in answer["procedures"]]
    assert answer["count"] == len(answer["procedures"])


def test_filters(catalog_process):
    url, _ = catalog_process
    ward = requests.get(url + "/api/v1/procedures", params={"unit": "000.12.20.H29"}, timeout=5).json()
    assert ward["count"] > 0 and {p["level"] for p in ward["procedures"]} == {"ward"}
    field = requests.get(url + "/api/v1/procedures", params={"field": "Hộ tịch"}, timeout=5).json()
    assert field["count"] > 0 and {p["field"] for p in field["procedures"]} == {"Hộ tịch"}


def test_detail_and_errors(catalog_process):
    url, _ = catalog_process
    detail = requests.get(url + "/api/v1/procedures/2.000815", timeout=5)
    assert detail.status_code == 200
    body = detail.json()
    assert body["code"] == "2.000815" and body["time_limit"] == "same day" and body["version"] == 1
    assert body["fees"][0]["tiers"] == [{"from_page": 1, "amount": 2000}, {"from_page": 3, "amount": 1000}]

    missing = requests.get(url + "/api/v1/procedures/9.999998", timeout=5)
    assert missing.status_code == 404 and "9.999998" in missing.json()["error"]
    bad_at = requests.get(url + "/api/v1/procedures/2.000815?at=yesterday", timeout=5)
    assert bad_at.status_code == 400 and bad_at.json()["field"] == "at"
    unknown_unit = requests.get(url + "/api/v1/procedures?unit=000.99.20.H29", timeout=5)
    assert unknown_unit.status_code == 404 and unknown_unit.json()["field"] == "unit"
    too_early = requests.get(url + "/api/v1/procedures/2.000815?at=2001-01-01", timeout=5)
    assert too_early.status_code == 404
    versions = requests.get(url + "/api/v1/procedures/2.000815/versions", timeout=5).json()
    assert [v["version"] for v in versions["versions"]] == [1]


def test_metrics_and_health_of_the_real_process(catalog_process):
    url, log_path = catalog_process
    requests.get(url + "/api/v1/units", timeout=5)
    metrics = requests.get(url + "/metrics", timeout=5).text
    assert 'motcua_entrypoint_calls_total{entrypoint="http_units",kind="http",outcome="ok",service="catalog"}' in metrics
    assert requests.get(url + "/health", timeout=5).json()["status"] == "ok"
    # Logs are JSON lines, with the correlation id of the request bound in the worker's lines.
    lines = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.startswith("{")]
    assert lines and all("timestamp" in line and "level" in line for line in lines)


def test_catalog_check_names_file_entry_field_and_reason(tmp_path, process_env):
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    data["procedures"][0]["time_limit"] = "three days"
    data["procedures"][1]["documents"][0]["form"] = "photocopy"
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = run_cli(["catalog", "check", str(bad)], process_env, check=False)
    assert result.returncode == 2
    first, second = data["procedures"][0]["code"], data["procedures"][1]["code"]
    assert f"{bad}: procedures[0] {first}: time_limit:" in result.stderr
    assert f"{bad}: procedures[1] {second}: documents[0].form:" in result.stderr
    assert "nothing loaded" in result.stderr

    good = run_cli(["catalog", "check", str(CATALOGUE)], process_env)
    assert "valid" in good.stdout


def test_a_bad_file_loads_nothing(tmp_path, process_env, catalog_process):
    url, _ = catalog_process
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    data["procedures"][0]["name"] = "Changed name that must not be published"
    data["procedures"][1]["sets"] = 0
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert run_cli(["catalog", "load", str(bad)], process_env, check=False).returncode == 2
    code = data["procedures"][0]["code"]
    versions = requests.get(f"{url}/api/v1/procedures/{code}/versions", timeout=5).json()["versions"]
    assert [v["name"] for v in versions] != [] and "Changed name" not in versions[-1]["name"]

    missing = run_cli(["catalog", "check", str(tmp_path / "absent.yml")], process_env, check=False)
    assert missing.returncode == 2 and "absent.yml: cannot read" in missing.stderr
    (tmp_path / "broken.yml").write_text("units: [\n", encoding="utf-8")
    broken = run_cli(["catalog", "check", str(tmp_path / "broken.yml")], process_env, check=False)
    assert broken.returncode == 2 and "not valid YAML" in broken.stderr
