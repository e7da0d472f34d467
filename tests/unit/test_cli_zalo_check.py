"""``motcua notify zalo-check [FILE]``: the ZNS template mapping an operator edited, checked as notify
checks it when it starts, run as the real command; a bad one exits 2 naming the file and the field."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

from services.notify import zalo

ROOT = Path(__file__).resolve().parents[2]


def motcua(*args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "ZALO_TEMPLATES_FILE"}
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60)


def test_the_shipped_mapping_is_valid():
    result = motcua("notify", "zalo-check")
    assert result.returncode == 0, result.stderr
    assert "valid: 8 message kinds" in result.stdout


def test_a_bad_mapping_exits_2_naming_the_file_and_the_field(tmp_path):
    data = yaml.safe_load(zalo.DATA_FILE.read_text(encoding="utf-8"))
    data["refused"]["params"]["due"] = {"from": "appointment_date", "type": "date"}
    bad = tmp_path / "zalo-templates.yml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = motcua("notify", "zalo-check", str(bad))
    assert result.returncode == 2
    assert f"{bad}: refused.params.due.from:" in result.stderr and "appointment_date" in result.stderr
    missing = motcua("notify", "zalo-check", str(tmp_path / "absent.yml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
