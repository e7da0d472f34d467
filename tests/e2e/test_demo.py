"""``motcua demo`` end to end: the real command, twice with the same seed, each on its own
embedded broker and embedded PostgreSQL (no RabbitMQ, no shared database): II.06a balances for
every unit and the two reports are the same, byte for byte."""
import json
import os
import subprocess
import sys

from nameko.testing.utils import find_free_port

from tests.conftest import ROOT

SERVICES = ("catalog", "intake", "routing", "fees", "notify")
ARGS = ["--days", "2", "--scale", "0.6", "--units", "5", "--units", "Phường 10", "--seed", "3"]
REPORT_FILES = ("report.json", "ii06a.csv", "index.html", "processing-times.png", "on-time-rate.png",
                "overdue-by-agency.png", "fees-collected.png")


def demo_process(out, workdir):
    env = {key: value for key, value in os.environ.items() if key not in ("AMQP_URI", "DATABASE_URL")}
    env.update({f"{name.upper()}_HTTP_ADDRESS": f"127.0.0.1:{find_free_port()}" for name in SERVICES})
    env.update({"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"})
    return subprocess.Popen([sys.executable, "-m", "apps.cli", "demo", *ARGS, "--out", str(out),
                             "--workdir", str(workdir)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_same_seed_gives_the_same_balanced_report(tmp_path):
    # Side by side: each run has its own embedded PostgreSQL, in-memory broker and ports.
    runs = [demo_process(tmp_path / f"report-{i}", tmp_path / f"work-{i}") for i in (1, 2)]
    outputs = []
    for process in runs:
        try:
            stdout, stderr = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        assert process.returncode == 0, f"motcua demo failed ({process.returncode}):\n{stderr[-3000:]}"
        outputs.append((stdout, stderr))

    stdout, stderr = outputs[0]
    assert "Mẫu II.06a — 2026-11-23 … 2026-11-24" in stdout
    assert "II.06a balances for every unit" in stderr
    assert "/metrics" in stderr and "catalogue page" in stderr

    first = tmp_path / "report-1"
    report = json.loads((first / "report.json").read_text(encoding="utf-8"))
    assert report["units"] == ["000.05.20.H29", "000.10.20.H29"]
    assert report["days_off"] == [{"date": "2026-11-24", "name": report["days_off"][0]["name"]}]
    units = report["ii06a"]["units"]
    assert units and {u["unit"] for u in units} <= {"000.05.20.H29", "000.10.20.H29"}
    for unit in units:
        total = unit["total"]
        assert total["received"] == total["resolved"] + total["pending"] > 0
        assert total["received"] == total["online"] + total["in_person_or_post"] + total["carried_over"]
        assert total["resolved"] == total["early"] + total["on_time"] + total["late"]
    total = report["ii06a"]["total"]
    assert total["received"] == report["activity"]["received"]        # every dossier received is counted
    assert total["resolved"] > 0 and report["activity"]["returned"] > 0
    assert sum(report["activity"]["payments"].values()) > 0
    assert sum(f["cash"] + f["transfer"] + f["online"] for f in report["fees"].values()) > 0
    assert report["processing_hours"]

    second = tmp_path / "report-2"
    for name in REPORT_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs between the runs"
    assert outputs[0][0] == outputs[1][0]               # the II.06a printed on the terminal too
    page = (first / "index.html").read_text(encoding="utf-8")
    assert all(f"src='{name}'" in page for name in REPORT_FILES if name.endswith(".png"))
