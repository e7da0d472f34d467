"""Benchmark of report II.06a: from its roll-ups (reports.ii06a, store.rollup_report_rows) against the
scan of the workflows it replaced (reports.ii06a(scan=True), store.scan_report_rows).

Fills a scratch schema with a year of workflows for the 17 desks of Gò Vấp (the district,
000.00.20.H29, and its wards 000.01 … 000.17, no 02) over ~20 fields, builds their roll-ups with the
back-fill of migration 0005 (the same rows routing's saves keep), then runs the report for one unit and
for the whole district over a month, a quarter and a year, several times each, both ways, and prints
rows, fill and back-fill times, min/p50/max time per report and way, whether both ways give identical
reports, and the EXPLAIN (ANALYZE, BUFFERS) of the heaviest query of each way.

A city: ``--rows`` above 2 million spreads the dossiers over ``--districts`` districts of 17 desks
(default: one per 1.1 million dossiers, 18 for 20 million: 306 desks). The workflows of one district
are generated and compared as above; the other districts' roll-ups are that district's, copied under
their own unit codes (000.MM.NN.H29, NN = 21, 22 …), so the roll-up table has a city's rows and keys;
then the city's reports over the same periods, from the roll-ups alone.

The tables are copies of ``routing.workflows`` and ``routing.report_rollups`` with every index
(``CREATE TABLE … (LIKE … INCLUDING ALL)``, or built from ``services/routing/models.py`` when the
routing schema is not migrated) in a schema of its own, ``bench_ii06a_<pid>_<random>``; the report's
queries reach them through SQLAlchemy's ``schema_translate_map``. The scratch schema is dropped at the
end (also on error or Ctrl-C), so the benchmark never reads or touches a row it did not insert.

    .venv/bin/python bench/report_ii06a.py                      # 300,000 rows, the test database
    .venv/bin/python bench/report_ii06a.py --rows 20000000 --repeat 5     # a city's year
    .venv/bin/python bench/report_ii06a.py --rows 50000 --repeat 3
    .venv/bin/python bench/report_ii06a.py --database-url postgresql+psycopg2://motcua@127.0.0.1:5432/motcua
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import os
import random
import re
import secrets
import statistics
import sys
import time
from datetime import date, datetime, time as clock_time, timedelta
from bisect import bisect
from functools import lru_cache
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, event, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from motcua.contracts.calendar import TZ, WorkingCalendar, due_date, parse_time_limit  # noqa: E402
from motcua.contracts.periods import parse_period  # noqa: E402
from services.routing import models, reports  # noqa: E402

DEFAULT_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg2://motcua@127.0.0.1:5432/motcua_test")
DISTRICT = "000.00.20.H29"
WARDS = [f"000.{n:02d}.20.H29" for n in range(1, 18) if n != 2]
UNITS = [DISTRICT, *WARDS]

# (field, weight, [(time limit, weight)], share received online): what a desk of that level receives.
DISTRICT_FIELDS = [
    ("Đăng ký kinh doanh", 22, [("3 working days", 1)], 0.65),
    ("Đất đai", 18, [("30 days", 2), ("10 days", 3), ("15 days", 2)], 0.25),
    ("Xây dựng", 14, [("15 days", 1)], 0.35),
    ("Hộ tịch có yếu tố nước ngoài", 4, [("15 days", 1)], 0.3),
    ("Chứng thực", 8, [("same day", 1)], 0.2),
    ("Lao động – Thương binh và Xã hội", 7, [("10 working days", 1), ("5 working days", 1)], 0.3),
    ("Văn hóa – Thông tin", 4, [("5 working days", 1)], 0.4),
    ("Giáo dục – Đào tạo", 5, [("5 working days", 1), ("10 working days", 1)], 0.4),
    ("Y tế", 4, [("10 working days", 1)], 0.45),
    ("Tài nguyên nước – Môi trường", 3, [("10 working days", 1)], 0.3),
    ("Quy hoạch – Kiến trúc", 3, [("15 working days", 1)], 0.3),
    ("Giao thông vận tải", 3, [("5 working days", 1)], 0.4),
    ("Nội vụ", 2, [("10 working days", 1)], 0.3),
    ("Thi đua – Khen thưởng", 1, [("20 working days", 1)], 0.2),
    ("Tôn giáo", 1, [("20 working days", 1)], 0.2),
]
WARD_FIELDS = [
    ("Chứng thực", 40, [("same day", 4), ("2 working days", 1)], 0.15),
    ("Hộ tịch", 30, [("same day", 3), ("3 working days", 2), ("5 working days", 1)], 0.55),
    ("Bảo trợ xã hội", 7, [("10 working days", 1)], 0.3),
    ("Người có công", 4, [("10 working days", 1)], 0.2),
    ("Đất đai", 5, [("10 working days", 1)], 0.2),
    ("Văn hóa – Thông tin", 3, [("5 working days", 1)], 0.3),
    ("Hòa giải cơ sở", 2, [("5 working days", 1)], 0.1),
    ("Nuôi con nuôi", 1, [("30 days", 1)], 0.2),
    ("Xác nhận cư trú", 8, [("3 working days", 1)], 0.6),
]
# The district desk takes about a fifth of the dossiers; the wards differ in size.
UNIT_WEIGHTS = [20] + [random.Random(n).uniform(3, 8) for n in range(16)]

COLUMNS = ("code", "unit", "procedure_code", "procedure_version", "procedure_name", "field", "channel",
           "time_limit", "applicant_name", "received_at", "received_by", "original_due_date", "due_date",
           "stage", "state", "clock_stops", "resolved_at", "result_class")

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ"]
GIVEN = ["Văn An", "Thị Bình", "Minh Châu", "Quốc Dũng", "Thị Hoa", "Văn Hùng", "Ngọc Lan", "Thanh Tâm"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="default: the test database (%(default)s)")
    parser.add_argument("--rows", type=int, default=300_000, help="dossiers of the year (default %(default)s)")
    parser.add_argument("--districts", type=int, default=None,
                        help="districts of 17 desks the dossiers are spread over (default: 1 up to 2 million "
                             "dossiers, else one per 1.1 million)")
    parser.add_argument("--year", type=int, default=2026, help="the year of the data (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=7, help="runs of each report (default %(default)s)")
    parser.add_argument("--seed", type=int, default=2245, help="random seed (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema (its name is printed)")
    return parser.parse_args(argv)


# --- data ---------------------------------------------------------------------------------------

class Generator:
    """Random workflows, fast enough for 300,000 rows in seconds: cumulative weights are computed
    once, due dates are cached per (day, after 15:00, limit)."""

    def __init__(self, year: int, seed: int):
        self.rng = random.Random(seed)
        self.calendar = WorkingCalendar()
        # Receipts from 1 December of the year before (carried over into January) to 31 December.
        first, last = date(year - 1, 12, 1), date(year, 12, 31)
        self.days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        self.midnights = [datetime.combine(d, clock_time(0), tzinfo=TZ) for d in self.days]
        self.working = [self.calendar.is_working_day(d) for d in self.days]
        self.day_cum = list(accumulate(1.0 if w else 0.04 for w in self.working))
        self.unit_cum = list(accumulate(UNIT_WEIGHTS))
        self.fields = {level: (fields, list(accumulate(f[1] for f in fields)),
                               [([l for l, _ in f[2]], list(accumulate(w for _, w in f[2]))) for f in fields])
                       for level, fields in (("district", DISTRICT_FIELDS), ("ward", WARD_FIELDS))}
        self.now = datetime(year + 1, 1, 1, 8, 0, tzinfo=TZ)      # the moment the data is "seen"
        self.sequence: dict[tuple[str, int], int] = {}

    @lru_cache(maxsize=None)
    def _due(self, day: date, after_cutoff: bool, limit: str) -> date:
        received = datetime.combine(day, clock_time(16 if after_cutoff else 9), tzinfo=TZ)
        return due_date(received, parse_time_limit(limit), self.calendar)

    @lru_cache(maxsize=None)
    def _working_days_after(self, day: date, n: int) -> date:
        return self.calendar.add_working_days(day, n)

    @lru_cache(maxsize=None)
    def _span(self, day: date, due: date) -> int:
        return self.calendar.working_days_between(day, due)

    def row(self) -> tuple:
        r = self.rng.random
        unit_index = bisect(self.unit_cum, r() * self.unit_cum[-1])
        unit = UNITS[unit_index]
        fields, field_cum, limit_tables = self.fields["district" if unit_index == 0 else "ward"]
        f = bisect(field_cum, r() * field_cum[-1])
        field, _, _, online_share = fields[f]
        limits, limit_cum = limit_tables[f]
        limit = limits[bisect(limit_cum, r() * limit_cum[-1])]
        d = bisect(self.day_cum, r() * self.day_cum[-1])
        day = self.days[d]
        online = r() < online_share or not self.working[d]
        seconds = int(r() * 86400) if online else 27000 + int(r() * 34200)     # in person: 7:30–17:00
        received = self.midnights[d] + timedelta(seconds=seconds, microseconds=int(r() * 1_000_000))
        channel = "online" if online else ("post" if r() < 0.06 else "in_person")
        original_due = self._due(day, seconds > 54000, limit)
        # About one dossier in twelve waited for a supplement or a payment: its due date moved.
        stop_start = stop_end = None
        due = original_due
        if r() < 0.08:
            waited = 1 + int(r() * 7)
            stop_start = received + timedelta(hours=2 + int(r() * 46))
            stop_end = stop_start + timedelta(days=waited)
            due = self._working_days_after(original_due, waited)
        # The result: mostly early, some on the due date, about one in twelve late; 2 % withdrawn.
        roll = r()
        if roll < 0.62:
            span = self._span(day, due)
            done_day = self._working_days_after(day, int(r() * span)) if span > 1 else day
            if done_day >= due:
                done_day = day
        elif roll < 0.92:
            done_day = due
        else:
            done_day = self._working_days_after(due, (1, 1, 2, 3, 5, 10, 20)[int(r() * 7)])
        resolved = datetime.combine(done_day, clock_time(8 + int(r() * 9), int(r() * 60)), tzinfo=TZ)
        if resolved < received:
            resolved = received + timedelta(hours=1)
        state = "withdrawn" if r() < 0.02 else "processed"
        if resolved >= self.now:
            resolved, state = None, "running"
        if resolved is None:
            result_class = None
        else:
            done = resolved.date()        # local: every instant here is in TZ
            result_class = "early" if done < due else ("on_time" if done == due else "late")
        if state == "running" and stop_start is not None and r() < 0.3:
            stop_end, due = None, None                  # still waiting for the citizen: no due date
        stops = "[]" if stop_start is None else (
            '[{"start": "%s", "end": %s, "reason": "supplement"}]'
            % (stop_start.isoformat(), f'"{stop_end.isoformat()}"' if stop_end else "null"))
        key = (unit, d)
        number = self.sequence[key] = self.sequence.get(key, 0) + 1
        return (f"{unit}-{day:%y%m%d}-{number:04d}", unit, f"2.00{1000 + int(r() * 8999)}", 1,
                f"Thủ tục {field.lower()}", field, channel, limit,
                f"{FAMILY[int(r() * len(FAMILY))]} {GIVEN[int(r() * len(GIVEN))]}", received.isoformat(),
                "Cán bộ một cửa", original_due.isoformat(), due.isoformat() if due else None, 0, state, stops,
                resolved.isoformat() if resolved else None, result_class)


def fill(engine, schema: str, rows: int, generator: Generator, chunk: int = 50_000) -> tuple[float, float]:
    """COPY ``rows`` generated workflows into the scratch table; returns (generation s, copy s)."""
    generating = copying = 0.0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            t0 = time.perf_counter()
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for _ in range(n):
                writer.writerow(["" if v is None else v for v in generator.row()])
            buffer.seek(0)
            t1 = time.perf_counter()
            cursor.copy_expert(f'COPY "{schema}".workflows ({", ".join(COLUMNS)}) FROM STDIN WITH (FORMAT csv)',
                               buffer)
            raw.commit()
            t2 = time.perf_counter()
            generating += t1 - t0
            copying += t2 - t1
            done += n
            print(f"  {done:>9,} / {rows:,} rows   generate {generating:6.1f} s   copy {copying:6.1f} s", flush=True)
        cursor.execute(f'ANALYZE "{schema}".workflows')
        raw.commit()
    finally:
        raw.close()
    return generating, copying


# --- the scratch schema -------------------------------------------------------------------------

def create_scratch(engine, schema: str) -> str:
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        if connection.execute(text("SELECT to_regclass('routing.report_rollup_changes')")).scalar():
            for table in ("workflows", "report_rollups", "report_rollup_changes"):
                connection.execute(text(f'CREATE TABLE "{schema}".{table} (LIKE routing.{table} INCLUDING ALL)'))
            return ("copies of routing.workflows, routing.report_rollups and routing.report_rollup_changes "
                    "(LIKE … INCLUDING ALL: same columns, defaults and indexes)")
        scoped = connection.execution_options(schema_translate_map={"routing": schema})
        models.workflows.create(scoped)
        models.report_rollups.create(scoped)
        models.report_rollup_changes.create(scoped)
        return "built from services/routing/models.py (routing schema not migrated to 0005 in this database)"


MIGRATION = Path(__file__).resolve().parent.parent / "services/routing/migrations/versions/0005_ii06a_rollups.py"


def backfill(engine, schema: str) -> tuple[int, float]:
    """The roll-ups of the scratch workflows, by migration 0005's back-fill; (rows, seconds)."""
    spec = importlib.util.spec_from_file_location("routing_0005_ii06a_rollups", MIGRATION)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    t0 = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text(
            f'INSERT INTO "{schema}".report_rollups (span, day, unit, field, channel, {migration.COUNTERS}) '
            + migration.rollups_from_workflows(f'"{schema}".workflows')))
        connection.execute(text(f'ANALYZE "{schema}".report_rollups'))
        rows = connection.execute(text(f'SELECT count(*) FROM "{schema}".report_rollups')).scalar()
    return rows, time.perf_counter() - t0


def copy_districts(engine, schema: str, districts: int) -> tuple[int, float]:
    """The district's roll-ups copied to ``districts - 1`` more districts (000.MM.NN.H29, NN = 21 …)."""
    t0 = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text(
            f'INSERT INTO "{schema}".report_rollups '
            f"SELECT span, day, substr(unit, 1, 7) || lpad((20 + k)::text, 2, '0') || substr(unit, 10), field, "
            f"channel, received, early, on_time, late, pending_change, overdue_change "
            f'FROM "{schema}".report_rollups CROSS JOIN generate_series(1, :n) AS k'), {"n": districts - 1})
        connection.execute(text(f'ANALYZE "{schema}".report_rollups'))
        rows = connection.execute(text(f'SELECT count(*) FROM "{schema}".report_rollups')).scalar()
    return rows, time.perf_counter() - t0


def drop_scratch(engine, schema: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


# --- the reports ----------------------------------------------------------------------------------

PERIODS = ("06-01", "06-30"), ("12-01", "12-31"), ("10-01", "12-31"), ("01-01", "12-31")
KINDS = ("month", "month", "quarter", "year")


def run_reports(engine, schema: str, year: int, repeat: int, scopes, ways=("rollups", "scan")) -> list[dict]:
    """Each report of each scope over each period, ``repeat`` times each way; the reports of the ways
    compared whole."""
    scoped = engine.execution_options(schema_translate_map={"routing": schema})
    captured: list = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FILTER (WHERE" in statement:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    results = []
    try:
        for scope, who in scopes:
            for kind, (first_md, last_md) in zip(KINDS, PERIODS):
                period = parse_period(f"{year}-{first_md}", f"{year}-{last_md}")
                result = {"scope": scope, "period": f"{kind} {period.first}…{period.last}"}
                for way in ways:
                    timings, report = [], None
                    for _ in range(repeat):
                        captured.clear()
                        with Session(scoped) as session:
                            t0 = time.perf_counter()
                            report = reports.ii06a(session, who, period, scan=way == "scan")
                            timings.append(time.perf_counter() - t0)
                    total = report["total"]
                    result[way] = {
                        "timings": timings, "report": report, "sql": captured[-1], "total": total,
                        "lines": sum(len(u["fields"]) for u in report["units"]), "units": len(report["units"]),
                        "balanced": total["balanced"] and all(u["total"]["balanced"] and
                                                              all(f["balanced"] for f in u["fields"])
                                                              for u in report["units"])}
                if len(ways) == 2:
                    result["identical"] = result["rollups"]["report"] == result["scan"]["report"]
                results.append(result)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return results


def print_results(results: list[dict], ways) -> None:
    print(f"  {'scope':<24} {'period':<30} {'way':<8} {'lines':>5} {'(3) received':>12} {'(7)':>10} {'(11)':>8}"
          f" {'on-time':>7} {'min':>11} {'p50':>11} {'max':>11}  balanced  identical")
    for r in results:
        for way in ways:
            x = r[way]
            t = x["total"]
            rate = f"{t['on_time_rate']:.1%}" if t["on_time_rate"] is not None else "—"
            print(f"  {r['scope']:<24} {r['period']:<30} {way:<8} {x['lines']:>5} {t['received']:>12,}"
                  f" {t['resolved']:>10,} {t['pending']:>8,} {rate:>7} {ms(min(x['timings']))}"
                  f" {ms(statistics.median(x['timings']))} {ms(max(x['timings']))}  {str(x['balanced']):<8}"
                  f"  {r.get('identical', '')}")


def explain(engine, sql: tuple) -> tuple[list[str], list[str], bool]:
    statement, parameters = sql
    with engine.connect() as connection:
        plan = [r[0] for r in connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)]
    used = sorted(set(re.findall(r"(?:Index Only Scan|Index Scan|Bitmap Index Scan) (?:Backward )?(?:using|on) "
                                 r"(\S+)", "\n".join(plan))))
    return plan, used, any("Seq Scan" in line for line in plan)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main(argv=None) -> int:
    args = parse_args(argv)
    engine = create_engine(args.database_url, connect_args={"application_name": "bench_ii06a"})
    schema = f"bench_ii06a_{os.getpid()}_{secrets.token_hex(3)}"
    with engine.connect() as connection:
        server = connection.execute(text("SHOW server_version")).scalar()
    print(f"Report II.06a benchmark — PostgreSQL {server}, {engine.url.render_as_string(hide_password=True)}")
    print(f"scratch schema {schema}: ", end="", flush=True)
    try:
        print(create_scratch(engine, schema))
        with engine.connect() as connection:
            for name, definition in connection.execute(text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s ORDER BY indexname"), {"s": schema}):
                print(f"  index {name}: {definition.split(' USING ', 1)[1]}")
        districts = args.districts or (1 if args.rows <= 2_000_000 else round(args.rows / 1_100_000))
        per_district = args.rows // districts
        print(f"filling {per_district:,} workflows for {len(UNITS)} desks, "
              f"{len({f[0] for f in DISTRICT_FIELDS + WARD_FIELDS})} fields, {args.year - 1}-12-01…{args.year}-12-31"
              + (f" (one district of {districts}: {districts * len(UNITS)} desks, "
                 f"{per_district * districts:,} dossiers)" if districts > 1 else ""))
        started = time.perf_counter()
        generating, copying = fill(engine, schema, per_district, Generator(args.year, args.seed))
        fill_seconds = time.perf_counter() - started
        with engine.connect() as connection:
            count, size = connection.execute(text(
                f"SELECT count(*), pg_size_pretty(pg_total_relation_size('\"{schema}\".workflows')) "
                f'FROM "{schema}".workflows')).one()
            by_unit = connection.execute(text(
                f'SELECT unit, count(*) FROM "{schema}".workflows GROUP BY unit ORDER BY unit')).all()
            states = connection.execute(text(
                f'SELECT state, count(*) FROM "{schema}".workflows GROUP BY state ORDER BY state')).all()
        print(f"filled {count:,} rows ({size} with indexes) in {fill_seconds:.1f} s "
              f"(generate {generating:.1f} s, COPY {copying:.1f} s, then ANALYZE)")
        print("rows per desk: " + ", ".join(f"{u[4:6]}={n:,}" for u, n in by_unit))
        print("states: " + ", ".join(f"{s}={n:,}" for s, n in states))
        rollup_rows, backfill_seconds = backfill(engine, schema)
        print(f"roll-ups: {rollup_rows:,} rows, built by migration 0005's back-fill in {backfill_seconds:.1f} s")

        print(f"\nreports ({args.repeat} runs each; time of reports.ii06a, query and assembly), "
              f"from the roll-ups and by the scan:")
        ways = ("rollups", "scan")
        results = run_reports(engine, schema, args.year, args.repeat,
                              ((f"unit {DISTRICT}", DISTRICT), ("whole district", None)), ways)
        print_results(results, ways)
        for way in ways:
            heaviest = max(results, key=lambda r: statistics.median(r[way]["timings"]))
            plan, used, seq = explain(engine, heaviest[way]["sql"])
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) — {way}, heaviest: {heaviest['scope']}, {heaviest['period']}")
            for line in plan:
                print("  " + line)
            print(f"  -> indexes used: {', '.join(used) if used else 'none'}; sequential scan: {'yes' if seq else 'no'}")
        different = [r for r in results if not r["identical"]]
        print(f"\nroll-ups and scan identical in {len(results) - len(different)} of {len(results)} reports")

        if districts > 1:
            city_rows, copy_seconds = copy_districts(engine, schema, districts)
            with engine.connect() as connection:
                size = connection.execute(text(
                    f"SELECT pg_size_pretty(pg_total_relation_size('\"{schema}\".report_rollups'))")).scalar()
            print(f"\nthe city: {districts} districts, {districts * len(UNITS)} desks, {per_district * districts:,} "
                  f"dossiers' worth of roll-ups: {city_rows:,} rows ({size} with indexes), copied in {copy_seconds:.1f} s")
            city = run_reports(engine, schema, args.year, args.repeat,
                               ((f"unit {DISTRICT}", DISTRICT), ("whole city", None)), ("rollups",))
            print_results(city, ("rollups",))
            heaviest = max(city, key=lambda r: statistics.median(r["rollups"]["timings"]))
            plan, used, seq = explain(engine, heaviest["rollups"]["sql"])
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) — the city, heaviest: {heaviest['scope']}, {heaviest['period']}")
            for line in plan:
                print("  " + line)
            print(f"  -> indexes used: {', '.join(used) if used else 'none'}; sequential scan: {'yes' if seq else 'no'}")
            year = next(r for r in city if r["scope"] == "whole city" and r["period"].startswith("year"))
            p50 = statistics.median(year["rollups"]["timings"])
            print(f"\nthe city's year from the roll-ups: p50 {ms(p50).strip()}, max "
                  f"{ms(max(year['rollups']['timings'])).strip()} ({'under' if p50 < 1 else 'OVER'} 1 s); "
                  f"{year['rollups']['total']['received']:,} received")
        return 0 if not different else 1
    finally:
        if args.keep:
            print(f"kept scratch schema {schema} (drop it with: DROP SCHEMA \"{schema}\" CASCADE)")
        else:
            drop_scratch(engine, schema)
            print(f"dropped scratch schema {schema}")
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
