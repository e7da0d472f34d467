"""docker-compose.yml: valid for a real Compose implementation, and true to the code and deploy/.

Runs Debian's ``docker-compose`` 1.29 (package ``docker-compose``) on the file with the values
of ``.env.example``; a missing tool fails the test (CI installs it), it is not skipped. Compose
v2 (``docker compose``) is run too where it is installed. The rest reads the YAML itself: every
service of ``apps.registry.SERVICES`` with its port, health check and conditional ``depends_on``;
Prometheus, Alertmanager and Grafana with their configuration mounted from files that exist
where the configuration expects them; one image for everything built from the Dockerfile.
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from apps.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = ["overview.json", "unit.json", "agencies.json", "fees.json", "notify.json", "health.json"]

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# What .env.example must set (each documented by the comment lines above it).
REQUIRED_SETTINGS = {"COMPOSE_PROJECT_NAME", "POSTGRES_PASSWORD", "GATEWAY_MERCHANTS", "SMTP_HOST",
                     "PII_KEYS", "PII_ACTIVE_KEY", "PII_HASH_KEY",
                     "SMS_GATEWAY_URL", "SMS_GATEWAY_KEY", "GRAFANA_ADMIN_PASSWORD", "LOG_LEVEL",
                     *(f"{name.upper()}_PORT" for name in SERVICES)}
# The monitoring services: the container port, and the configuration mounted (host -> container).
MONITORING = {
    "prometheus": (9090, {"./deploy/prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml"}),
    "alertmanager": (9093, {"./deploy/alertmanager/alertmanager.yml": "/etc/alertmanager/alertmanager.yml"}),
    "grafana": (3000, {"./deploy/grafana/provisioning": "/etc/grafana/provisioning",
                       "./deploy/grafana/dashboards": "/var/lib/grafana/dashboards"}),
}
_VARIABLE = re.compile(r"\$\{(\w+)")


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)  # PyYAML resolves the `<<: *anchor` merge keys


COMPOSE_DATA = load_yaml(COMPOSE)
SERVICES_IN_COMPOSE: dict = COMPOSE_DATA["services"]
PROMETHEUS = load_yaml(PROMETHEUS_CONFIG)


def env_example() -> dict[str, str]:
    settings = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f".env.example: not KEY=value: {line!r}"
            settings[key] = value
    return settings


def compose_env() -> dict[str, str]:
    """This process' environment less what .env.example sets: the file's values are the ones read."""
    settings = env_example()
    return {key: value for key, value in os.environ.items()
            if key not in settings and not key.startswith("COMPOSE_")}


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")


def container_port(mapping: str) -> int:
    """`[ip:]host:container[/proto]` (short syntax, variables left as written) -> the container port."""
    return int(str(mapping).rsplit(":", 1)[-1].split("/")[0])


def host_ip(mapping: str) -> str | None:
    parts = re.sub(r"\$\{[^}]*\}", "VAR", str(mapping)).split(":")
    return parts[0] if len(parts) == 3 else None


def mounts(service: dict) -> dict[str, str]:
    """The service's short-syntax volumes: container path -> host path (bind) or volume name."""
    result = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        result[target] = source
    return result


def host_path_for(service: dict, container_path: str) -> Path | None:
    """The file in the repository that a bind mount shows at `container_path`, if any."""
    for target, source in sorted(mounts(service).items(), key=lambda item: -len(item[0])):
        if source.startswith("./") and (container_path == target or container_path.startswith(target + "/")):
            return ROOT / source[2:] / posixpath.relpath(container_path, target)
    return None


# --- a real Compose implementation ------------------------------------------------------------

def test_docker_compose_accepts_the_file():
    """Debian's docker-compose 1.29 must accept the file; Compose v2 too, where it is installed."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is not installed: `apt-get install docker-compose` (Debian's 1.29; "
                    "CI installs it)", pytrace=False)
    commands = [[tool]]
    docker = shutil.which("docker")
    probe = docker and subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe and probe.returncode == 0:
        commands.append([docker, "compose"])
    for command in commands:
        assert_ok(subprocess.run([*command, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "-q"],
                                 cwd=ROOT, env=compose_env(), capture_output=True, text=True, timeout=60))


def test_no_top_level_name_the_project_name_comes_from_the_env_file():
    # docker-compose 1.29 rejects a top-level `name:`; both read COMPOSE_PROJECT_NAME from .env.
    assert "name" not in COMPOSE_DATA
    assert env_example().get("COMPOSE_PROJECT_NAME") == "motcua"


# --- .env.example -------------------------------------------------------------------------------

def test_env_example_sets_every_variable_the_compose_file_reads():
    settings = env_example()
    used = set(_VARIABLE.findall(COMPOSE.read_text(encoding="utf-8")))
    assert used - set(settings) == set(), "read by docker-compose.yml, missing from .env.example"
    assert REQUIRED_SETTINGS - set(settings) == set()


def test_env_example_documents_every_line():
    previous = ""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            assert previous.startswith("# "), f".env.example: {line!r} has no comment line above it"
        previous = line


# --- the services ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SERVICES))
def test_service_is_in_compose_with_its_port_health_check_and_dependencies(name):
    port = SERVICES[name].port
    service = SERVICES_IN_COMPOSE.get(name)
    assert service is not None, f"{name} is in apps.registry.SERVICES, not in docker-compose.yml"
    assert service["command"] == ["run", name]
    assert port in [container_port(mapping) for mapping in service["ports"]]
    assert service["environment"][f"{name.upper()}_HTTP_ADDRESS"] == f"0.0.0.0:{port}"
    assert f"http://127.0.0.1:{port}/health" in " ".join(service["healthcheck"]["test"])
    assert service["depends_on"] == {"rabbitmq": {"condition": "service_healthy"},
                                     "postgres": {"condition": "service_healthy"},
                                     "migrate": {"condition": "service_completed_successfully"}}
    targets = [target for job in PROMETHEUS["scrape_configs"] if job["job_name"] == name
               for static in job["static_configs"] for target in static["targets"]]
    assert targets == [f"{name}:{port}"], "deploy/prometheus/prometheus.yml scrapes another address"


def test_every_dependency_is_a_condition_that_can_be_met():
    for name, service in SERVICES_IN_COMPOSE.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on is a list, without conditions"
        for other, spec in depends_on.items():
            assert other in SERVICES_IN_COMPOSE, f"{name} depends on {other}, not a service"
            assert spec.get("condition") in CONDITIONS, f"{name} -> {other}: {spec}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES_IN_COMPOSE[other], f"{name} waits for {other}'s health: none"
            if spec["condition"] == "service_completed_successfully":
                assert SERVICES_IN_COMPOSE[other].get("restart") == "no", f"{other} is not a one-shot"


def test_every_long_running_service_has_a_health_check():
    for name, service in SERVICES_IN_COMPOSE.items():
        if service.get("restart") != "no":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_one_image_for_everything_built_from_the_dockerfile():
    built = {name: service for name, service in SERVICES_IN_COMPOSE.items()
             if "build" in service or str(service.get("image", "")).startswith("motcua")}
    assert set(SERVICES) | {"migrate"} <= set(built)
    images = {service.get("image") for service in built.values()}
    assert len(images) == 1 and None not in images, f"several images for the motcua code: {images}"
    assert {service["build"]["context"] for service in built.values()} == {"."}


# --- RabbitMQ and the monitoring ------------------------------------------------------------------

def test_rabbitmq_enables_its_prometheus_plugin_and_publishes_it_locally():
    rabbitmq = SERVICES_IN_COMPOSE["rabbitmq"]
    plugins = host_path_for(rabbitmq, "/etc/rabbitmq/enabled_plugins")
    assert plugins is not None and plugins.is_file()
    assert plugins.read_text().strip() == "[rabbitmq_management,rabbitmq_prometheus]."
    published = {container_port(mapping): host_ip(mapping) for mapping in rabbitmq["ports"]}
    assert published[15692] == "127.0.0.1"
    rabbit_job = next(job for job in PROMETHEUS["scrape_configs"] if job["job_name"] == "rabbitmq")
    assert rabbit_job["static_configs"][0]["targets"] == ["rabbitmq:15692"]


@pytest.mark.parametrize("name", list(MONITORING))
def test_monitoring_service_has_its_configuration_port_and_health_check(name):
    port, config_mounts = MONITORING[name]
    service = SERVICES_IN_COMPOSE.get(name)
    assert service is not None, f"no {name} in docker-compose.yml"
    assert port in [container_port(mapping) for mapping in service["ports"]]
    assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for source, target in config_mounts.items():
        assert mounts(service).get(target) == source, f"{name}: {source} is not mounted at {target}"
        assert (ROOT / source[2:]).exists(), f"{name} mounts {source}, missing from the repository"


def test_prometheus_finds_its_rule_files_and_alertmanager():
    prometheus = SERVICES_IN_COMPOSE["prometheus"]
    config_path = next(arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file="))
    assert mounts(prometheus)[config_path] == "./deploy/prometheus/prometheus.yml"
    assert PROMETHEUS["rule_files"]
    for rule_file in PROMETHEUS["rule_files"]:  # relative to the configuration file
        in_container = posixpath.join(posixpath.dirname(config_path), rule_file)
        on_host = host_path_for(prometheus, in_container)
        assert on_host is not None and on_host.is_file(), f"{in_container}: no file of the repository there"
    assert "--storage.tsdb.retention.time=35d" in prometheus["command"]
    targets = PROMETHEUS["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    assert prometheus["depends_on"] == {"alertmanager": {"condition": "service_healthy"}}


def test_grafana_provisions_the_datasource_and_the_six_dashboards():
    grafana = SERVICES_IN_COMPOSE["grafana"]
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "motcua.yml")["providers"][0]
    for dashboard in DASHBOARDS:
        on_host = host_path_for(grafana, posixpath.join(provider["options"]["path"], dashboard))
        assert on_host is not None and on_host.is_file(), f"{dashboard}: not where the provider reads"
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "${GRAFANA_ADMIN_PASSWORD" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
