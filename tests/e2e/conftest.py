"""End-to-end: the real ``motcua`` processes, driven from outside over HTTP."""
import os
import subprocess
import sys
import time

import pytest
import requests
from nameko.testing.utils import find_free_port

from tests.conftest import ROOT


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


def run_cli(args, env, check=True):
    result = subprocess.run([sys.executable, "-m", "motcua.cli", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"motcua {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


@pytest.fixture(scope="module")
def process_env(database_url):
    """The default vhost: module-scoped processes outlive nameko's per-test vhosts."""
    return {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT),
            "AMQP_URI": "amqp://guest:guest@127.0.0.1:5672//"}


@pytest.fixture(scope="module")
def catalog_process(process_env, engine, tmp_path_factory):
    """``motcua catalog load`` then ``motcua run catalog`` on a free port; yields its base URL."""
    from sqlalchemy import text
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE catalog.units, catalog.procedure_versions, catalog.outbox"))
    run_cli(["catalog", "load"], process_env)
    port = find_free_port()
    env = {**process_env, "CATALOG_HTTP_ADDRESS": f"127.0.0.1:{port}"}
    log_path = tmp_path_factory.mktemp("catalog") / "catalog.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "motcua.cli", "run", "catalog"], env=env, cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url, log_path
    finally:
        process.terminate()
        process.wait(timeout=20)
