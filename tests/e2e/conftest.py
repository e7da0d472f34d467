"""End-to-end: the real ``motcua`` processes, driven from outside over HTTP."""
import os
import subprocess
import sys
import time
import uuid

import pytest
import requests
from nameko.testing.utils import find_free_port

from tests.conftest import PII_SETTINGS, ROOT
from tests.fakes import oidc_provider


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout} s")


def timer_runs(service, entrypoint: str) -> float:
    """How many times the process's timer ``entrypoint`` has finished (its calls on /metrics)."""
    lines = requests.get(service.url + "/metrics", timeout=5).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("motcua_entrypoint_calls_total{")
               and f'entrypoint="{entrypoint}"' in line)


def ran_again(services, entrypoint: str, times: int = 2, timeout: float = 20) -> None:
    """Wait until each process's timer ``entrypoint`` has finished ``times`` more runs, the last of
    them begun after this call: the positive marker after which a check of "nothing happened" holds."""
    start = {service.url: timer_runs(service, entrypoint) for service in services}
    deadline = time.monotonic() + timeout
    while not all(timer_runs(s, entrypoint) >= start[s.url] + times for s in services):
        if time.monotonic() > deadline:
            raise AssertionError(f"{entrypoint} did not run {times} more times in {timeout} s")
        time.sleep(0.1)


def run_cli(args, env, check=True):
    result = subprocess.run([sys.executable, "-m", "apps.cli", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"motcua {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


_broker = {"uri": "amqp://guest:guest@127.0.0.1:5672//"}


def amqp() -> str:
    """The broker URI of the running module: its own vhost."""
    return _broker["uri"]


@pytest.fixture(scope="module")
def vhost(rabbit_manager):
    """A RabbitMQ vhost per test module: its processes' durable queues start empty and nothing
    left by another module (or an earlier run) is delivered to them."""
    name = f"motcua-e2e-{uuid.uuid4().hex[:8]}"
    rabbit_manager.create_vhost(name)
    rabbit_manager.set_vhost_permissions(name, "guest", ".*", ".*", ".*")
    _broker["uri"] = f"amqp://guest:guest@127.0.0.1:5672/{name}"
    yield name
    rabbit_manager.delete_vhost(name)


@pytest.fixture(scope="module")
def process_env(database_url, vhost):
    return {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT),
            "AMQP_URI": amqp(), "EVENT_WAIT_SECONDS": "2", **PII_SETTINGS, **oidc_provider.provider().settings()}


class ServiceProcess:
    """``motcua run NAME`` as a real process on a free port, its log in a file."""

    def __init__(self, name: str, env: dict, log_dir, port: int | None = None):
        self.name, self.port = name, port or find_free_port()
        self.env = {**env, f"{name.upper()}_HTTP_ADDRESS": f"127.0.0.1:{self.port}"}
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self.process = None

    def start(self, **extra_env) -> "ServiceProcess":
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "apps.cli", "run", self.name],
                                            env={**self.env, **extra_env}, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            wait_healthy(self.url, self.process)
        except BaseException:
            self.crash()        # never leave a half-started service behind to disturb later tests
            raise
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def crash(self) -> None:
        """SIGKILL: no shutdown, no flush, as a power cut would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def catalog_process(process_env, engine, tmp_path_factory):
    """``motcua catalog load`` then ``motcua run catalog`` on a free port; yields its URL and log."""
    from sqlalchemy import text
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE catalog.units, catalog.procedure_versions, catalog.outbox"))
    run_cli(["catalog", "load"], process_env)
    service = ServiceProcess("catalog", process_env, tmp_path_factory.mktemp("catalog")).start()
    try:
        yield service.url, service.log_path
    finally:
        service.stop()


@pytest.fixture(scope="module")
def clock(tmp_path_factory):
    """The services' clock (``CLOCK_FILE``): ``clock("2026-02-23T09:00:00+07:00")`` moves time."""
    path = tmp_path_factory.mktemp("clock") / "now"

    def set_now(instant: str):
        path.write_text(instant)

    set_now("2026-02-13T10:00:00+07:00")   # the Friday before Tết 2026
    set_now.path = path
    return set_now


@pytest.fixture
def report(request):
    """A line in the run's own output, captured or not (pytest -q included): the fault tests'
    figures (lives, lost, doubled) are what CI should show, not only what it checks."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None or capture is None:
            print(line)
            return
        with capture.global_and_fixture_disabled():     # else the line goes into the captured output
            reporter.write_line(line)
    return write
