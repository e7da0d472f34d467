"""``motcua up`` runs every built service as its own process (``--one-process``: the nameko services
in one, the gateway in its own); Ctrl-C or SIGTERM stops them all."""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from nameko.testing.utils import find_free_port

from apps.registry import SERVICES
from tests.conftest import ROOT
from tests.e2e.conftest import run_cli, wait_healthy
from tests.fakes.officials import official_headers


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def stop_for_good(up: subprocess.Popen) -> None:
    """After a failed assertion: stop ``up`` as an operator would, then kill whatever is left (its
    children run in sessions of their own, so killing ``up`` alone would leave them running)."""
    if up.poll() is not None:
        return
    children = children_of(up.pid)
    up.send_signal(signal.SIGTERM)
    try:
        up.wait(timeout=45)
    except subprocess.TimeoutExpired:
        up.kill()
        up.wait()
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def command_line(pid: int) -> str:
    # From /proc, whole: ps cuts its output at the width of a terminal it does not have.
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def answers(url: str) -> bool:
    try:
        requests.get(url + "/health", timeout=2)
    except requests.ConnectionError:
        return False
    return True


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = find_free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def series(metrics_text: str, family: str) -> list[str]:
    return [line for line in metrics_text.splitlines() if line.startswith(family + "{") or line.startswith(family + " ")]


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
        stop_for_good(up)
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


DESK_5 = official_headers("Trần Văn Bình", "000.05.20.H29")
MARITAL_STATUS = {
    "procedure_code": "1.004873", "channel": "in_person", "sets": 1,
    "applicant": {"name": "Nguyễn Thị Lan", "id_number": "079203001234", "address": "12 Lê Đức Thọ, Phường 5",
                  "phone": "0903123456", "email": "lan@example.vn"},
    "documents": [{"name": "Tờ khai cấp Giấy xác nhận tình trạng hôn nhân (theo mẫu)", "form": "original", "count": 1},
                  {"name": "Giấy tờ tùy thân của người yêu cầu (xuất trình)", "form": "original", "count": 1}]}


def test_up_one_process_runs_the_services_together_and_sigterm_stops_them(process_env, tmp_path):
    run_cli(["migrate"], process_env)
    run_cli(["catalog", "load"], process_env)
    *ports, grpc_port = free_ports(len(SERVICES) + 1)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in zip(SERVICES, ports)}
    env = {**process_env, "GATEWAY_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
           **{f"{name.upper()}_HTTP_ADDRESS": f"127.0.0.1:{port}" for name, port in zip(SERVICES, ports)}}
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "apps.cli", "up", "--one-process"], env=env, cwd=ROOT,
                              stdout=out, stderr=subprocess.STDOUT)
    try:
        for url in urls.values():
            wait_healthy(url, up, timeout=60)
        # Every service answers /health as itself, on its own port.
        for name, url in urls.items():
            assert requests.get(url + "/health", timeout=5).json()["service"] == name
        # Two processes: the nameko services together, the gateway on its own.
        children = children_of(up.pid)
        commands = {command_line(child).partition(" -m apps.cli ")[2] for child in children}
        nameko = [name for name, spec in SERVICES.items() if spec.nameko]
        assert len(children) == 2
        assert commands == {"run gateway", "run " + " ".join(nameko)}

        # The public catalogue, and a dossier received at the desk: its receipt, and the events that
        # reach routing and fees in the same process through the real broker.
        found = requests.get(urls["catalog"] + "/api/v1/procedures", params={"q": "khai sinh"}, timeout=10).json()
        assert "Đăng ký khai sinh" in [p["name"] for p in found["procedures"]]
        page = requests.get(urls["catalog"] + "/", timeout=10)
        assert page.status_code == 200 and "Một Cửa Gò Vấp</title>" in page.text
        received = requests.post(urls["intake"] + "/api/v1/dossiers", json=MARITAL_STATUS, headers=DESK_5, timeout=10)
        assert received.status_code == 201, received.text
        code = received.json()["code"]
        receipt = requests.get(f"{urls['intake']}/api/v1/dossiers/{code}/receipt.html", headers=DESK_5, timeout=10)
        assert receipt.status_code == 200 and code in receipt.text
        workflow = wait_for(lambda: (lambda a: a.status_code == 200 and a.json())(requests.get(
            f"{urls['routing']}/api/v1/dossiers/{code}", headers=DESK_5, timeout=10)))
        assert workflow["code"] == code and workflow["state"] == "running"
        account = wait_for(lambda: (lambda a: a.status_code == 200 and a.json())(requests.get(
            f"{urls['fees']}/api/v1/dossiers/{code}", headers=DESK_5, timeout=10)))
        assert account["charged"] > 0

        # /metrics: each port shows its own service's series, as its own process would.
        metrics = {name: requests.get(urls[name] + "/metrics", timeout=10).text for name in nameko}
        received_series = series(metrics["intake"], "motcua_dossiers_received_total")
        assert received_series and all('unit="000.05.20.H29"' in line for line in received_series)
        for name in ("catalog", "routing", "fees", "notify"):
            assert not series(metrics[name], "motcua_dossiers_received_total"), name
        for name, text in metrics.items():
            labelled = [line for line in text.splitlines() if 'service="' in line and not line.startswith("#")]
            assert labelled and all(f'service="{name}"' in line for line in labelled), name
        assert series(metrics["fees"], "motcua_fees_charged_vnd_total")
        assert not series(metrics["intake"], "motcua_fees_charged_vnd_total")
        # The process's own series (CPU, memory) once, on the first service's port.
        assert series(metrics["catalog"], "process_cpu_seconds_total")
        assert not any(series(metrics[name], "process_cpu_seconds_total") for name in nameko if name != "catalog")

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    finally:
        stop_for_good(up)
    assert not [child for child in children if alive(child)], "a process survived SIGTERM"
    assert not [name for name, url in urls.items() if answers(url)], "a port still answers after the stop"
    text = log.read_text()
    assert "started catalog+intake+routing+fees+notify" in text and "in one process" in text
