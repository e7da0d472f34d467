"""Statements per complete life, from PostgreSQL's own statement log.

    .venv/bin/python -m bench.statements                     # about 20 lives at 2/s, one replica
    .venv/bin/python -m bench.statements --rate 2 --duration 10 --log-file /var/log/postgresql/postgresql-15-main.log

Turns ``log_statement = 'all'`` on for the benchmark's database only (``ALTER DATABASE … SET``, as the
``postgres`` superuser over the local socket), runs ``bench.throughput`` for one short phase (its stack,
lives and exactly-once accounting unchanged), turns the setting off again, and counts what the server
logged for that database while the stack ran: every statement, by kind (SELECT, INSERT, UPDATE,
DELETE, BEGIN, COMMIT, …) and by the service whose schema it names, divided by the complete lives.
Statements from the stack's start-up (migrations, catalogue load) are counted apart: only what the
server logged after the first life started counts for the lives. Figures on stdout; the counts as
JSON in ``--out`` (default bench/results/statements-latest.json).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "motcua_bench"
SERVICES = ("catalog", "intake", "routing", "fees", "notify")
# Debian's default log_line_prefix '%m [%p] %q%u@%d ': the time, the pid, user@database.
LINE = re.compile(r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (?P<tz>\S+) \[(?P<pid>\d+)\] (?P<who>\S+)@(?P<db>\S+) "
                  r"LOG:  statement: (?P<sql>.*)$")
SCHEMA = re.compile(r'\b"?(catalog|intake|routing|fees|notify)"?\.')


def default_log_file() -> str:
    """The main cluster's log file as Debian's pg_lsclusters names it."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 7 and parts[3] == "online":
            return parts[6]
    raise SystemExit("no online PostgreSQL cluster found (pg_lsclusters); give --log-file")


def psql(sql: str) -> str:
    return subprocess.run(["psql", "-U", "postgres", "-h", "/var/run/postgresql", "-qAtc", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def ensure_database() -> None:
    """The benchmark's database, made as bench.throughput makes it (owned by motcua) when missing."""
    if psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
        psql(f"CREATE DATABASE {DATABASE} OWNER motcua")


def count(lines: list[str], since: datetime | None) -> dict:
    """Statements of the benchmark's database, by kind and by service, logged at or after ``since``."""
    kinds, services, total = Counter(), Counter(), 0
    for line in lines:
        match = LINE.match(line)
        if not match or match["db"] != DATABASE:
            continue
        at = datetime.fromisoformat(match["at"])
        at = at.replace(tzinfo=timezone.utc) if match["tz"] == "UTC" else at.astimezone()
        if since is not None and at < since:
            continue
        sql = match["sql"].strip()
        total += 1
        kinds[(sql.split(None, 1)[0] if sql else "?").upper().rstrip(";")] += 1
        named = set(SCHEMA.findall(sql))
        services[named.pop() if len(named) == 1 else ("several" if named else "none")] += 1
    return {"total": total, "by_kind": dict(kinds.most_common()), "by_service": dict(services.most_common())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2, help="lives started per second (%(default)s)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load (%(default)s)")
    parser.add_argument("--log-file", default=None, help="the PostgreSQL server's log (default: pg_lsclusters)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--label", default="", help="a word for the result (e.g. before, after)")
    args = parser.parse_args(argv)
    log_file = Path(args.log_file or default_log_file())
    offset = log_file.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="motcua-statements-"))
    ensure_database()
    psql(f"ALTER DATABASE {DATABASE} SET log_statement = 'all'")
    try:
        code = subprocess.call([sys.executable, "-m", "bench.throughput", "--rates", f"{args.rate:g}",
                                "--duration", f"{args.duration:g}", "--replicas", "1",
                                "--baseline-seconds", "0", "--out", str(work)], cwd=ROOT)
    finally:
        psql(f"ALTER DATABASE {DATABASE} RESET log_statement")
    result = json.loads((work / "throughput-latest.json").read_text())
    phase = result["runs"][0]["phases"][0]
    lives = phase["completed"]
    with log_file.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        lines = handle.read().splitlines()
    first_life = datetime.fromtimestamp(phase["load_started_at"], timezone.utc)
    during = count(lines, first_life)
    everything = count(lines, None)
    figures = {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label": args.label,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "machine": result["machine"], "rate": args.rate, "duration_s": args.duration,
        "lives_completed": lives, "exactly_once": phase["exactly_once"]["exactly_once"],
        "statements_during_load": during, "statements_with_startup": everything["total"],
        "statements_per_life": round(during["total"] / lives, 1) if lives else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"statements-{args.label}.json" if args.label else "statements-latest.json"
    (out / name).write_text(json.dumps(figures, indent=1, ensure_ascii=False))
    print(f"\nstatements logged by PostgreSQL for {DATABASE} ({figures['commit']}, {lives} complete lives, "
          f"exactly once: {figures['exactly_once']}):")
    print(f"  during the load: {during['total']}  ->  {figures['statements_per_life']} per life")
    print("  by kind:    " + ", ".join(f"{k} {v}" for k, v in during["by_kind"].items()))
    print("  by service: " + ", ".join(f"{k} {v}" for k, v in during["by_service"].items()))
    print(f"  with the stack's start-up: {everything['total']}")
    print(f"written: {out / name}")
    return code


if __name__ == "__main__":
    sys.exit(main())
