"""``motcua up`` runs every built service as its own process; Ctrl-C or SIGTERM stops them all."""
import os
import signal
import subprocess
import sys

import pytest
import requests
from nameko.testing.utils import find_free_port

from apps.registry import SERVICES
from tests.conftest import ROOT
from tests.e2e.conftest import run_cli, wait_healthy


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_starts_every_service_and_a_stop_stops_them_all(process_env, stop_signal):
    run_cli(["migrate"], process_env)
    port = find_free_port()
    env = {**process_env, "CATALOG_HTTP_ADDRESS": f"127.0.0.1:{port}"}
    up = subprocess.Popen([sys.executable, "-m", "apps.cli", "up"], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", up)
        children = children_of(up.pid)
        assert len(children) == len(SERVICES)
        up.send_signal(stop_signal)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
    for child in children:
        try:
            os.kill(child, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, f"service process {child} survived {stop_signal.name}"
    try:
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
        answered = True
    except requests.ConnectionError:
        answered = False
    assert not answered
    assert "started catalog" in up.stderr.read()


def test_migrate_is_idempotent(process_env):
    first = run_cli(["migrate"], process_env)
    second = run_cli(["migrate"], process_env)
    assert "catalog: migrated to head" in first.stderr and "catalog: migrated to head" in second.stderr
