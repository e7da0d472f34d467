"""``motcua calendar show YEAR``: every day off and make-up working day with its source, run as the real
command; bad input exits 2 with a message on stderr."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def motcua(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "MOTCUA_CALENDAR_OVERRIDES"}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60)


def test_json_lists_2026_in_date_order_with_each_day_s_origin():
    result = motcua("calendar", "show", "2026", "--format", "json")
    assert result.returncode == 0, result.stderr
    days = json.loads(result.stdout)
    dates = [d["date"] for d in days]
    assert dates == sorted(dates) and len(dates) == len(set(dates))
    by_date = {d["date"]: d for d in days}
    assert by_date["2026-01-01"]["kind"] == "day_off"
    assert by_date["2026-01-01"]["origin"] == "holidays" and by_date["2026-01-01"]["name"] == "Tết Dương lịch"
    assert by_date["2026-01-01"]["source"].startswith("holidays ")
    off, work = by_date["2026-01-02"], by_date["2026-01-10"]
    assert (off["kind"], off["origin"], work["kind"], work["origin"]) == \
        ("day_off", "overrides", "working_day", "overrides")
    assert "12729/VPCP-KGVX" in off["source"] and "[verify" in off["source"]
    assert off["file"].endswith("calendar-overrides.yml")
    assert by_date["2026-08-22"]["kind"] == "working_day" and by_date["2026-08-22"]["origin"] == "holidays"
    culture_day = by_date["2026-11-24"]
    assert culture_day["origin"] == "holidays" and culture_day["kind"] == "day_off" and culture_day["note"]
    # Plain weekends are not listed; plain weekdays never are.
    assert "2026-01-03" not in by_date and "2026-01-05" not in by_date


def test_table_shows_each_day_its_kind_and_source():
    result = motcua("calendar", "show", "2026")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    swap = next(line for line in lines if line.startswith("02/01/2026"))
    assert "nghỉ" in swap and "calendar-overrides.yml: Công văn 12729/VPCP-KGVX" in swap
    worked = next(line for line in lines if line.startswith("10/01/2026"))
    assert "làm bù" in worked and "Bảy" in worked
    new_year = next(line for line in lines if line.startswith("01/01/2026"))
    assert "Tết Dương lịch" in new_year and "thư viện holidays" in new_year
    assert lines.index(swap) < lines.index(worked)
    culture = lines.index(next(line for line in lines if line.startswith("24/11/2026")))
    assert "ghi chú" in lines[culture + 1]


def test_another_overrides_file_is_shown_with_its_own_sources(tmp_path):
    path = tmp_path / "o.yml"
    path.write_text("years:\n  2027:\n    days_off:\n      - date: 2027-04-29\n        name: Nghỉ hoán đổi\n"
                    "        source: CV 1/BNV\n    working_days:\n      - date: 2027-04-24\n"
                    "        name: Làm bù\n", encoding="utf-8")
    for result in (motcua("calendar", "show", "2027", "--format", "json", "--overrides", str(path)),
                   motcua("calendar", "show", "2027", "--format", "json",
                          env={"MOTCUA_CALENDAR_OVERRIDES": str(path)})):
        assert result.returncode == 0, result.stderr
        by_date = {d["date"]: d for d in json.loads(result.stdout)}
        assert by_date["2027-04-29"]["source"] == "CV 1/BNV" and by_date["2027-04-29"]["file"] == str(path)
        assert by_date["2027-04-24"]["source"] == "" and by_date["2027-04-24"]["kind"] == "working_day"


@pytest.mark.parametrize("args, message", [
    (["twenty"], "YEAR: must be a year from 2015 to 2040, got 'twenty'"),
    (["2014"], "YEAR: must be a year from 2015 to 2040"),
    (["2041"], "YEAR: must be a year from 2015 to 2040"),
    (["99999999999999999999"], "YEAR: must be a year"),
    (["2026.5"], "YEAR: must be a year"),
    ([], "year"),
    (["2026", "--format", "xml"], "--format"),
    (["2026", "--overrides", "/nonexistent/o.yml"], "--overrides: /nonexistent/o.yml: cannot read"),
])
def test_bad_input_exits_2_with_a_message_on_stderr(args, message):
    result = motcua("calendar", "show", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_a_broken_overrides_file_names_the_file_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("years:\n  2026:\n    working_days:\n      - date: 2026-01-12\n        name: x\n", encoding="utf-8")
    result = motcua("calendar", "show", "2026", "--overrides", str(bad))
    assert result.returncode == 2
    assert f"{bad}: years.2026.working_days[0].date" in result.stderr
