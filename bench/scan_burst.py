"""Benchmark of the bursts of a real site's day: routing's overdue and at-risk scan over 300,000 open
dossiers, and notify's morning digest for the 17 desks (and its fan-out of the scan's events).

A scratch database of its own (``motcua_bench_scan_<pid>_<random>``, dropped at the end, also on
error or Ctrl-C), migrated from empty with routing's and notify's migrations, so the indexes are
exactly the ones production gets. It is filled by COPY with 300,000 open workflows of the 17 desks
of Gò Vấp (80 % one-step ward procedures, district procedures with one step or a land transfer's
three), their steps, and notify's copy of the same dossiers (plus ``--closed`` closed ones, as
notify keeps every dossier it was told of). The day is Tuesday 8 December 2026 (``TODAY``): what
fell due before it is already flagged (overdue, an apology or its missing flag, at-risk warnings),
as the scan of a running site leaves it; ``--burst`` dossiers fall due today; the other due dates
are spread over the next 45 working days; 3 % wait for the citizen with no due date.

It then measures, running the real code (``services.routing.handlers.scan`` through
``SqlUnitOfWork``, notify's handlers through its ``SqlUnitOfWork``) without nameko or a broker:

(a) an idle scan round (nothing to flag, 15:00 on TODAY), ``--idle-rounds`` times;
(b) the burst at the day boundary T = 9 December 00:00 local: one round at T + 2 s flags every
    dossier that crossed (and the at-risk warnings of the new day), batch by batch, each committed:
    time per batch, the round's time, the events written to the outbox;
(c) detection delay: the next boundary (10 December 00:00) in real time: a clock that reaches T a
    few seconds after the start, scan rounds every ``--interval`` (5) seconds as routing's timer
    does, and for a few dossiers due on 9 December the time from T to the commit of their flag;
(d) notify's fan-out of the burst's events (``dossier.overdue``, ``step_overdue``, ``at_risk``):
    each through notify's consumer handler in a transaction of its own, as its workers do
    (``--fanout`` of them; the messages queued counted; sending is not measured);
(e) the morning digest (07:30 on 9 December) of each of the 17 desks: notify's digest queries
    (``SqlDigests.figures``: counts, and at most ``--digest-max-codes`` codes per list) and the
    whole handler (claim, figures, message queued or the day recorded as failed), with the size of
    what it says. ``--only-digest`` fills the database and runs only this part.

Then the EXPLAIN (ANALYZE, BUFFERS) of the candidate query (idle and in the burst) and of the
digest's queries.

    .venv/bin/python bench/scan_burst.py                        # 300,000 open, burst 10,000
    .venv/bin/python bench/scan_burst.py --open 50000 --burst 2000 --fanout 500
    .venv/bin/python bench/scan_burst.py --only-digest          # the fill and (e) only
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import random
import re
import secrets
import statistics
import sys
import time
from bisect import bisect
from collections import Counter
from datetime import date, datetime, time as clock_time, timedelta
from functools import lru_cache
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from motcua.contracts.calendar import TZ, WorkingCalendar, default_calendar  # noqa: E402
from motcua.contracts.events import parse  # noqa: E402
from motcua.runtime import outbox  # noqa: E402
from motcua.runtime.db import UnitOfWork as Database  # noqa: E402
from motcua.runtime.migrations import upgrade  # noqa: E402
from services.notify import handlers as notify_handlers  # noqa: E402
from services.notify import models as notify_models  # noqa: E402
from services.notify.messages import DIGEST_MAX_CODES, Context, DigestFailed  # noqa: E402
from services.notify.repository import SqlDigests, SqlUnitOfWork as NotifyUnitOfWork  # noqa: E402
from services.routing import models  # noqa: E402
from services.routing import unit_of_work as routing_uow  # noqa: E402
from services.routing.handlers import Scan, handle  # noqa: E402
from services.routing.unit_of_work import SqlUnitOfWork  # noqa: E402
from services.routing.workflow import one_working_day_before  # noqa: E402

DEFAULT_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg2://motcua@127.0.0.1:5432/motcua_test")
DISTRICT = "000.00.20.H29"
WARDS = [f"000.{n:02d}.20.H29" for n in range(1, 18) if n != 2]
UNITS = [DISTRICT, *WARDS]
UNIT_WEIGHTS = [20] + [random.Random(n).uniform(3, 8) for n in range(16)]
LAND, TAX = "000.41.20.H29", "000.42.20.H29"
TODAY = date(2026, 12, 8)                                   # a Tuesday
T = datetime(2026, 12, 9, 0, 0, tzinfo=TZ)                  # the boundary of the burst
T2 = datetime(2026, 12, 10, 0, 0, tzinfo=TZ)                # the boundary of the real-time run
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ"]
GIVEN = ["Văn An", "Thị Bình", "Minh Châu", "Quốc Dũng", "Thị Hoa", "Văn Hùng", "Ngọc Lan", "Thanh Tâm"]

W_COLUMNS = ("code", "unit", "procedure_code", "procedure_version", "procedure_name", "field", "channel",
             "time_limit", "applicant_name", "received_at", "received_by", "original_due_date", "due_date", "stage",
             "state", "clock_stops", "overdue_at", "overdue_agency", "apology", "apology_missing_at")
S_COLUMNS = ("code", "stage", "position", "parallel", "agency", "days", "state", "handed_over_at", "accepted_at",
             "accepted_by", "completed_at", "result", "due_date", "result_class", "overdue_at", "at_risk_at")
N_COLUMNS = ("code", "unit", "procedure", "applicant_name", "phone", "email", "secret", "channels", "optional",
             "received_at", "appointment_date", "open", "overdue")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL,
                        help="a database of the server; the scratch database is made beside it (default %(default)s)")
    parser.add_argument("--open", type=int, default=300_000, help="open dossiers (default %(default)s)")
    parser.add_argument("--burst", type=int, default=10_000, help="dossiers due TODAY: they cross at T (default %(default)s)")
    parser.add_argument("--batch", type=int, default=Scan().batch, help="scan batch (default %(default)s)")
    parser.add_argument("--closed", type=int, default=300_000, help="closed dossiers in notify (default %(default)s)")
    parser.add_argument("--idle-rounds", type=int, default=20, help="idle scan rounds timed (default %(default)s)")
    parser.add_argument("--interval", type=float, default=5.0, help="routing's SCAN_SECONDS (default %(default)s)")
    parser.add_argument("--fanout", type=int, default=3000,
                        help="burst events through notify's consumer (default %(default)s; 0: none)")
    parser.add_argument("--seed", type=int, default=2246, help="random seed (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (its name is printed)")
    parser.add_argument("--only-digest", action="store_true",
                        help="fill, then measure only (e), the morning digest (skip the scan's (a)-(d))")
    parser.add_argument("--digest-max-codes", type=int, default=DIGEST_MAX_CODES,
                        help="notify's DIGEST_MAX_CODES for (e) (default %(default)s)")
    return parser.parse_args(argv)


# --- data ---------------------------------------------------------------------------------------------

class Generator:
    """Open workflows as a running site's scan leaves them the evening of TODAY."""

    def __init__(self, seed: int, total: int, burst: int):
        self.rng = random.Random(seed)
        self.calendar = WorkingCalendar()
        self.unit_cum = list(accumulate(UNIT_WEIGHTS))
        self.burst_share = burst / total
        self.future = [self.calendar.add_working_days(TODAY, n) for n in range(1, 46)]
        self.past = [self._back(TODAY, n) for n in range(2, 31)]
        self.sequence: Counter = Counter()

    @lru_cache(maxsize=None)
    def _back(self, day: date, n: int) -> date:
        """``n`` working days before ``day``."""
        while n > 0:
            day -= timedelta(days=1)
            n -= self.calendar.is_working_day(day)
        return day

    def flagged_at(self, due: date) -> datetime:
        """When a scan of the site saw ``due`` pass: just after the midnight that ended it."""
        return datetime.combine(due + timedelta(days=1), clock_time(0), tzinfo=TZ) + timedelta(
            seconds=self.rng.uniform(1, 4))

    def dossier(self) -> tuple[list, list[list]]:
        r = self.rng.random
        unit = UNITS[bisect(self.unit_cum, r() * self.unit_cum[-1])]
        land = unit == DISTRICT and r() < 0.25
        roll = r()
        if roll < self.burst_share:
            due = TODAY
        elif roll < self.burst_share + 0.04:
            due = self.past[int(r() * len(self.past))]                     # overdue, flagged long ago
        else:
            due = self.future[int(r() * len(self.future))]
        days = 10 if land else (3 if unit == DISTRICT else 2)
        day = self._back(due, days)
        if day > TODAY:          # due later than its time limit says (clock stops, long routes): received lately
            day = self._back(TODAY, int(r() * 10))
        received = datetime.combine(day, clock_time(8 + int(r() * 9), int(r() * 60)), tzinfo=TZ)
        self.sequence[unit, received.date()] += 1
        code = f"{unit}-{received.date():%y%m%d}-{self.sequence[unit, received.date()]:04d}"
        waiting = r() < 0.03                                              # clock stopped: no due date
        state = "stopped" if waiting else "running"
        overdue_at = overdue_agency = apology = apology_missing_at = None
        stage = int(r() * 3) if land else 0
        agencies = [LAND, TAX, LAND] if land else [unit]
        if due < TODAY and not waiting:
            overdue_at, overdue_agency = self.flagged_at(due), agencies[stage]
            if r() < 0.6:
                apology = '{"agency": "%s", "reason": "quá tải", "new_date": "%s"}' % (
                    overdue_agency, self.future[10].isoformat())
            else:
                apology_missing_at = overdue_at + timedelta(days=1)
        name = f"{FAMILY[int(r() * len(FAMILY))]} {GIVEN[int(r() * len(GIVEN))]}"
        workflow = [code, unit, "1.013831" if land else "2.000815", 1,
                    "Chuyển nhượng quyền sử dụng đất" if land else "Chứng thực bản sao từ bản chính",
                    "Đất đai" if land else "Chứng thực", "in_person", f"{days} working days", name,
                    received.isoformat(), "Cán bộ một cửa", due.isoformat(), None if waiting else due.isoformat(),
                    stage, state, "[]", _iso(overdue_at), overdue_agency, apology, _iso(apology_missing_at)]
        steps = []
        for position, agency in enumerate(agencies):
            # The current step is due with the dossier (its last stage) or a few working days before.
            step_due = None if waiting else (due if position == len(agencies) - 1 else self._back(due, 2 * (2 - position)))
            if position < stage:
                values = ["done", received.isoformat(), received.isoformat(), "x", received.isoformat(), "done",
                          step_due.isoformat() if step_due else None, "on_time", None, None]
            elif position == stage:
                flagged = step_due is not None and step_due < TODAY
                warned = step_due is not None and step_due <= self.calendar.add_working_days(TODAY, 1)
                values = ["held" if r() < 0.7 else "handed_over", received.isoformat(), None, None, None, None,
                          step_due.isoformat() if step_due else None, None,
                          _iso(self.flagged_at(step_due)) if flagged else None,
                          _iso(self.flagged_at(step_due) - timedelta(days=1)) if warned else None]
            else:
                values = ["pending", None, None, None, None, None, None, None, None, None]
            steps.append([code, position, 0, False, agency, days // len(agencies), *values])
        notify = [code, unit, workflow[4], name, "0901234567", "cong.dan@example.vn", secrets.token_hex(8),
                  '["sms", "email"]', False, received.isoformat(), due.isoformat(), True, overdue_at is not None]
        return workflow, steps, notify

    def closed(self, n: int) -> list:
        r = self.rng.random
        unit = UNITS[bisect(self.unit_cum, r() * self.unit_cum[-1])]
        day = TODAY - timedelta(days=40 + int(r() * 365))
        received = datetime.combine(day, clock_time(9), tzinfo=TZ)
        return [f"{unit}-{day:%y%m%d}-C{n:07d}", unit, "Chứng thực bản sao", "Lê Văn Cũ", None, None, "x",
                '["sms"]', False, received.isoformat(), (day + timedelta(days=3)).isoformat(), False, False]


def _iso(value):
    return value.isoformat() if value is not None else None


def copy_rows(cursor, table: str, columns: tuple, rows: list) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(["\\N" if v is None else v for v in row])
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)


def fill(engine, args) -> dict:
    generator = Generator(args.seed, args.open, args.burst)
    raw = engine.raw_connection()
    started = time.perf_counter()
    try:
        cursor = raw.cursor()
        done, chunk = 0, 50_000
        while done < args.open:
            batch = [generator.dossier() for _ in range(min(chunk, args.open - done))]
            copy_rows(cursor, "routing.workflows", W_COLUMNS, [b[0] for b in batch])
            copy_rows(cursor, "routing.steps", S_COLUMNS, [s for b in batch for s in b[1]])
            copy_rows(cursor, "notify.dossiers", N_COLUMNS, [b[2] for b in batch])
            raw.commit()
            done += len(batch)
        for start in range(0, args.closed, chunk):
            copy_rows(cursor, "notify.dossiers", N_COLUMNS,
                      [generator.closed(n) for n in range(start, min(start + chunk, args.closed))])
            raw.commit()
        raw.commit()
        raw.driver_connection.autocommit = True   # as autovacuum leaves the tables of a running site
        cursor.execute("VACUUM ANALYZE routing.workflows, routing.steps, notify.dossiers")
        raw.driver_connection.autocommit = False
    finally:
        raw.close()
    return {"seconds": time.perf_counter() - started}


# --- the scratch database -------------------------------------------------------------------------------

TRANSIENT = ("connection slots", "shutting down", "starting up", "Connection refused", "terminating connection")


def retrying(action, *, seconds: float = 120.0):
    """``action()``, again while the server has no connection slot free or is restarting (the
    machine is shared: other benchmarks and test runs can hold all of ``max_connections`` for a
    while, or restart the server)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except OperationalError as error:
            if not any(reason in str(error) for reason in TRANSIENT) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def _admin(url, sql: str) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(sql))
    finally:
        admin.dispose()


def create_scratch(url, name: str) -> str:
    retrying(lambda: _admin(url, f'CREATE DATABASE "{name}"'))
    scratch = make_url(url).set(database=name).render_as_string(hide_password=False)
    for service in ("routing", "notify"):
        retrying(lambda: upgrade(ROOT / "services" / service / "migrations", scratch))
    return scratch


def drop_scratch(url, name: str) -> None:
    retrying(lambda: _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), seconds=600)


# --- routing's scan -------------------------------------------------------------------------------------

class TimedUnitOfWork(SqlUnitOfWork):
    """Routing's unit of work, remembering when each transaction (a batch) committed, what it
    flagged, and how long its save (``save_all``) and its commit took."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[dict] = []
        self._opened = self._emitted = 0
        self._open = False
        self._save = 0.0

    def __enter__(self):
        if self._open:              # from ``commit``: the previous batch has just committed
            self._record()
        self._open, self._opened, self._emitted, self._save = True, time.perf_counter(), len(self.emitted), 0.0
        return super().__enter__()

    def __exit__(self, *exc):
        self._ending = time.perf_counter()
        result = super().__exit__(*exc)
        if self._open and exc[0] is None:
            self._record()
        self._open = False
        return result

    def commit(self):
        self._ending = time.perf_counter()
        super().commit()

    def save_all(self, changes):
        started = time.perf_counter()
        try:
            return super().save_all(changes)
        finally:
            self._save += time.perf_counter() - started

    def _record(self):
        events = self.emitted[self._emitted:]
        now = time.perf_counter()
        self.batches.append({"opened": self._opened, "committed": now, "save": self._save,
                             "commit": now - self._ending,
                             "workflows": len({e.payload["code"] for e in events}), "events": len(events),
                             "crossed": {e.payload["code"] for e in events if e.type == "dossier.overdue"}})


def scan_round(database, now: datetime, batch: int) -> tuple[dict, TimedUnitOfWork, float]:
    uow = TimedUnitOfWork(database, lambda session, e: outbox.add(session, models.outbox, e), now=now,
                          calendar=default_calendar(), procedure_version=lambda code, version: None)
    started = time.perf_counter()
    counts = handle(Scan(batch=batch), uow)
    return counts, uow, started


class Captured:
    """The SQL statements of the scan's candidate query (the UNION of the four index ranges), or
    (``everything``) every statement sent."""

    def __init__(self, engine, everything: bool = False):
        self.engine, self.statements, self.everything = engine, [], everything

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self.capture)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self.capture)

    def capture(self, conn, cursor, statement, parameters, context, executemany):
        if self.everything or " UNION " in statement:
            self.statements.append((statement, parameters))


def explain(engine, statement: str, parameters, *, analyze: bool = True) -> tuple[list[str], list[str], bool]:
    """The plan; for a locking query, in a transaction rolled back (nothing stays locked or changed)."""
    with engine.connect() as connection:
        plan = [r[0] for r in connection.exec_driver_sql(
            ("EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN ") + statement, parameters)]
        connection.rollback()
    used = sorted(set(re.findall(r"(?:Index Only Scan|Index Scan|Bitmap Index Scan) (?:Backward )?(?:using|on) "
                                 r"(\S+)", "\n".join(plan))))
    return plan, used, any("Seq Scan" in line for line in plan)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def timed(repository_class, name: str):
    """Wrap a method of ``SqlRepository`` to time each call."""
    original = getattr(repository_class, name)
    timings: list[float] = []

    def wrapper(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            timings.append(time.perf_counter() - started)

    setattr(repository_class, name, wrapper)
    return timings, lambda: setattr(repository_class, name, original)


def outbox_counts(engine) -> Counter:
    with engine.connect() as connection:
        return Counter(dict(connection.execute(text("SELECT type, count(*) FROM routing.outbox GROUP BY type")).all()))


# --- notify ---------------------------------------------------------------------------------------------

def notify_context(now: datetime) -> Context:
    return Context(now=now, unit_name=lambda code: code, procedure_name=lambda code, version: code,
                   officials={unit: {"email": [f"lanhdao.{unit}@govap.example.gov.vn"]} for unit in [*UNITS, LAND, TAX]},
                   public_url="https://motcua.example.vn",
                   quiet_hours=(clock_time(0), clock_time(0)))


def fanout(engine, sessions, limit: int) -> dict:
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT envelope FROM routing.outbox WHERE type IN ('dossier.overdue', 'dossier.step_overdue', "
            "'dossier.at_risk') ORDER BY created_at, id LIMIT :n"), {"n": limit}).scalars().all()
        before = connection.execute(select(func.count()).select_from(notify_models.messages)).scalar_one()
    database = Database(sessions, [])
    ctx = notify_context(T + timedelta(seconds=5))
    started = time.perf_counter()
    timings = []
    for raw in rows:
        e = parse(raw)
        t0 = time.perf_counter()
        notify_handlers.handle(e.type, notify_handlers.Consume(e, ctx), NotifyUnitOfWork(database))
        timings.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    with engine.connect() as connection:
        after = connection.execute(select(func.count()).select_from(notify_models.messages)).scalar_one()
    return {"events": len(rows), "seconds": elapsed, "timings": timings, "messages": after - before,
            "types": Counter(parse(r).type for r in rows)}


def digests(engine, sessions, max_codes: int) -> list[dict]:
    now = datetime(2026, 12, 9, 7, 30, tzinfo=TZ)
    since = datetime.combine(TODAY, clock_time(0), tzinfo=TZ)
    database = Database(sessions, [])
    ctx = notify_context(now)
    results = []
    for unit in UNITS:
        with database.transaction() as session:
            t0 = time.perf_counter()
            figures = SqlDigests(session).figures(unit, since, now.date(), max_codes)
            query = time.perf_counter() - t0
        t0 = time.perf_counter()
        events = notify_handlers.handle("notify.digest", notify_handlers.SendDigest(
            unit, since, ctx, max_codes, "https://motcua.example.vn/api/v1/due"), NotifyUnitOfWork(database))
        whole = time.perf_counter() - t0
        failed = next((e.reason for e in events if isinstance(e, DigestFailed)), None)
        results.append({"unit": unit, "query": query, "whole": whole, "received": figures.received,
                        "due_today": figures.due_today_count, "overdue": figures.overdue_count,
                        "listed": len(figures.due_today) + len(figures.overdue),
                        "messages": len(events) - 1 if failed is None else 0, "failed": failed})
    with engine.connect() as connection:
        sizes = connection.execute(select(notify_models.messages.c.channel, func.max(func.char_length(
            notify_models.messages.c.text))).where(notify_models.messages.c.template == "daily_digest")
            .group_by(notify_models.messages.c.channel)).all()
        states = dict(connection.execute(select(notify_models.digests.c.state, func.count()).group_by(
            notify_models.digests.c.state)).all())
    return results, dict(sizes), states


def digest_statements(engine, sessions, max_codes: int) -> list:
    captured = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "notify.dossiers" in statement and statement.lstrip().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Database(sessions, []).transaction() as session:
            SqlDigests(session).figures(DISTRICT, datetime.combine(TODAY, clock_time(0), tzinfo=TZ),
                                        date(2026, 12, 9), max_codes)
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return captured


def digest_part(engine, sessions, args) -> None:
    """(e): the 17 desks' morning digest, its figures, and the EXPLAIN of its queries."""
    results, sizes, states = digests(engine, sessions, args.digest_max_codes)
    print(f"\n(e) morning digest, 07:30 on {T.date()}, the 17 desks ({args.open:,} open dossiers and "
          f"{args.closed:,} closed in notify.dossiers), DIGEST_MAX_CODES {args.digest_max_codes}:")
    print(f"    {'unit':<15} {'received':>8} {'due today':>9} {'overdue':>8} {'listed':>6} {'figures':>11} "
          f"{'whole handler':>14}")
    for r in results:
        print(f"    {r['unit']:<15} {r['received']:>8,} {r['due_today']:>9,} {r['overdue']:>8,} {r['listed']:>6} "
              f"{ms(r['query']):>11} {ms(r['whole']):>14}" + (f"  FAILED: {r['failed']}" if r["failed"] else ""))
    failed = [r for r in results if r["failed"]]
    print(f"    digests queued {len(results) - len(failed)} of 17, failed {len(failed)}; notify.digests rows: "
          + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    print(f"    all 17: figures {ms(sum(r['query'] for r in results))}, whole handlers "
          f"{ms(sum(r['whole'] for r in results))}; messages queued {sum(r['messages'] for r in results)}; "
          "longest digest text per channel: " + ", ".join(f"{c} {n:,} characters" for c, n in sizes.items()))
    for statement, parameters in digest_statements(engine, sessions, args.digest_max_codes):
        plan, used, seq = explain(engine, statement, parameters)
        print("\nEXPLAIN (ANALYZE, BUFFERS) of a digest query (the district):\n  " + statement.replace("\n", " "))
        for line in plan:
            print("  " + line)
        print(f"  -> indexes: {', '.join(used)}; sequential scan: {'yes' if seq else 'no'}")


# --- the run --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    name = f"motcua_bench_scan_{os.getpid()}_{secrets.token_hex(3)}"
    print(f"Scan and digest burst benchmark — scratch database {name}")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start")
    engine = None
    try:
        url = create_scratch(args.database_url, name)
        engine = create_engine(url, pool_size=3, max_overflow=1, connect_args={"application_name": "bench_scan"})
        with retrying(engine.connect) as connection:
            print("PostgreSQL", connection.execute(text("SHOW server_version")).scalar(),
                  "; routing and notify migrated from empty; the scan's indexes:")
            for index, definition in connection.execute(text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'routing' AND indexname LIKE "
                    "'ix_%scan%' ORDER BY indexname")):
                print(f"  {index}: {definition.split(' USING ', 1)[1]}")
        print(f"filling {args.open:,} open dossiers (burst {args.burst:,} due {TODAY}), "
              f"{args.closed:,} closed in notify …", flush=True)
        filled = fill(engine, args)
        with engine.connect() as connection:
            workflows = connection.execute(text("SELECT count(*), pg_size_pretty(pg_total_relation_size("
                                                 "'routing.workflows')) FROM routing.workflows")).one()
            steps = connection.execute(text("SELECT count(*) FROM routing.steps")).scalar()
            states = connection.execute(text("SELECT state, count(*) FROM routing.workflows GROUP BY 1 ORDER BY 1")).all()
            flagged = connection.execute(text("SELECT count(overdue_at), count(apology), count(apology_missing_at) "
                                              "FROM routing.workflows")).one()
        print(f"filled in {filled['seconds']:.1f} s: {workflows[0]:,} workflows ({workflows[1]} with indexes), "
              f"{steps:,} steps; states " + ", ".join(f"{s} {n:,}" for s, n in states)
              + f"; already flagged overdue {flagged[0]:,} (apology {flagged[1]:,}, apology missing {flagged[2]:,})")

        sessions = sessionmaker(bind=engine, expire_on_commit=False)
        database = Database(sessions, [])
        if args.only_digest:
            digest_part(engine, sessions, args)
            load = os.getloadavg()
            print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            return 0

        # (a) idle rounds
        idle_now = datetime.combine(TODAY, clock_time(15, 0), tzinfo=TZ)
        timings = []
        with Captured(engine) as captured:
            for n in range(args.idle_rounds):
                counts, _, started = scan_round(database, idle_now + timedelta(seconds=5 * n), args.batch)
                timings.append(time.perf_counter() - started)
                assert not any(counts.values()), counts
        print(f"\n(a) idle scan round ({args.idle_rounds} rounds at {idle_now:%Y-%m-%d %H:%M}, nothing to flag): "
              f"min {ms(min(timings))}, p50 {ms(statistics.median(timings))}, max {ms(max(timings))}")
        idle_sql = captured.statements[-1]

        # (b) the burst at T; first the EXPLAIN ANALYZE of its first batch's candidate query (rolled back)
        burst_now = T + timedelta(seconds=2)
        with Captured(engine) as captured, sessions() as session:
            routing_uow.SqlRepository(session).scan_candidates(
                T.date(), default_calendar().add_working_days(T.date(), 1),
                one_working_day_before(burst_now, default_calendar()))
            session.rollback()
        burst_sql = captured.statements[0]
        burst_plan = explain(engine, *burst_sql)
        query_timings, restore_query = timed(routing_uow.SqlRepository, "scan_candidates")
        lock_timings, restore_lock = timed(routing_uow.SqlRepository, "lock_for_scan")
        try:
            with Captured(engine, everything=True) as every:
                counts, uow, started = scan_round(database, burst_now, args.batch)
        finally:
            restore_query()
            restore_lock()
        ended = time.perf_counter()
        batches = uow.batches
        total = ended - started
        print(f"\n(b) burst at T = {T:%Y-%m-%d %H:%M} local, one round at T + 2 s, batch {args.batch}: "
              + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        print(f"    round {total:.2f} s, {len(batches)} batches (transactions); workflows flagged "
              f"{sum(b['workflows'] for b in batches):,}, events {sum(b['events'] for b in batches):,}; "
              f"{sum(b['workflows'] for b in batches) / total:,.0f} workflows/s")
        durations = [b["committed"] - b["opened"] for b in batches]
        print(f"    candidate query (once a round): {ms(query_timings[0])}; per batch: min {ms(min(durations))}, "
              f"p50 {ms(statistics.median(durations))}, max {ms(max(durations))}, of which lock + load: min "
              f"{ms(min(lock_timings))}, p50 {ms(statistics.median(lock_timings))}, max {ms(max(lock_timings))}; "
              f"save (save_all) p50 {ms(statistics.median(b['save'] for b in batches))}, max "
              f"{ms(max(b['save'] for b in batches))}; commit (the outbox rows' INSERT) p50 "
              f"{ms(statistics.median(b['commit'] for b in batches))}, max {ms(max(b['commit'] for b in batches))}; "
              "the rest: the aggregate's scan")
        kinds = Counter(" ".join(s.split()[:3]) if not s.startswith("SELECT") else "SELECT"
                        for s, _ in every.statements)
        print(f"    statements sent in the round: {len(every.statements):,} ({len(every.statements) / len(batches):.1f} "
              f"a batch, {len(every.statements) / max(1, sum(b['workflows'] for b in batches)):.3f} a workflow): "
              + ", ".join(f"{k} {n:,}" for k, n in kinds.most_common()))
        for i, b in enumerate(batches):
            if i < 3 or i >= len(batches) - 2:
                print(f"      batch {i + 1:>3}: {b['workflows']:>4} workflows, {b['events']:>4} events, "
                      f"{ms(b['committed'] - b['opened']):>10}, committed at T + {2 + b['committed'] - started:.2f} s")
            elif i == 3:
                print("      …")
        print(f"    T → flag (round at T + 2 s): first batch T + {2 + batches[0]['committed'] - started:.2f} s, "
              f"last T + {2 + batches[-1]['committed'] - started:.2f} s; with the timer's phase "
              f"(0–{args.interval:g} s) at most T + {args.interval + batches[-1]['committed'] - started:.2f} s")
        written = outbox_counts(engine)
        print("    outbox rows written: " + ", ".join(f"{t} {n:,}" for t, n in sorted(written.items())))

        # (c) detection delay in real time, at T2
        watched = []
        with engine.connect() as connection:
            watched = connection.execute(text(
                "SELECT code FROM routing.workflows WHERE state = 'running' AND due_date = :d ORDER BY random() "
                "LIMIT 5"), {"d": T2.date() - timedelta(days=1)}).scalars().all()
            crossing = connection.execute(text(
                "SELECT count(*) FROM routing.workflows WHERE state = 'running' AND due_date = :d"),
                {"d": T2.date() - timedelta(days=1)}).scalar()
        phase = 3.7                                   # the first round 3.7 s before T2: the next one T2 + 1.3 s
        origin = time.perf_counter()
        virtual = lambda: T2 - timedelta(seconds=phase) + timedelta(seconds=time.perf_counter() - origin)  # noqa: E731
        flagged_at: dict[str, float] = {}
        rounds = []
        next_round = origin
        while time.perf_counter() - origin < phase + 2 * args.interval:
            time.sleep(max(0.0, next_round - time.perf_counter()))
            now = virtual()
            counts, uow, started = scan_round(database, now, args.batch)
            rounds.append(((now - T2).total_seconds(), time.perf_counter() - started, counts))
            for b in uow.batches:
                for code in b["crossed"]:
                    flagged_at.setdefault(code, b["committed"] - origin - phase)
            next_round += args.interval               # nameko's timer: every interval (or later if busy)
        print(f"\n(c) detection delay, real time: boundary T2 = {T2:%Y-%m-%d %H:%M}, {crossing:,} dossiers due the "
              f"day before; rounds every {args.interval:g} s, the first {phase:g} s before T2")
        for offset, seconds, counts in rounds:
            print(f"    round at T2 {offset:+6.2f} s: {ms(seconds):>10}  " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        for code in watched:
            print(f"    {code}: flagged at T2 + {flagged_at[code]:.2f} s" if code in flagged_at else f"    {code}: not flagged")
        if flagged_at:
            delays = sorted(flagged_at.values())
            print(f"    every dossier flagged overdue in the run: {len(delays):,}, T2 → commit of its flag: first "
                  f"{delays[0]:.2f} s, median {statistics.median(delays):.2f} s, last {delays[-1]:.2f} s")

        # EXPLAIN of the candidate query
        for title, (plan, used, seq) in (("idle (a)", explain(engine, *idle_sql)),
                                         ("the burst (b), before it ran", burst_plan)):
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the candidate query — {title}:")
            for line in plan:
                print("  " + line)
            print(f"  -> indexes: {', '.join(used)}; sequential scan: {'yes' if seq else 'no'}")
        print("\nthe candidate query (as sent, idle round):\n  " + idle_sql[0].replace("\n", "\n  "))

        # (d) notify's fan-out of the burst's events
        if args.fanout:
            result = fanout(engine, sessions, args.fanout)
            t = result["timings"]
            print(f"\n(d) notify's consumer over {result['events']:,} of the burst's events ("
                  + ", ".join(f"{k} {v:,}" for k, v in sorted(result["types"].items()))
                  + f"), one transaction each: {result['seconds']:.1f} s, {result['events'] / result['seconds']:,.0f} "
                  f"events/s; per event p50 {ms(statistics.median(t))}, p99 {ms(sorted(t)[int(len(t) * 0.99) - 1])}; "
                  f"messages queued {result['messages']:,}")

        # (e) the morning digest
        digest_part(engine, sessions, args)
        load = os.getloadavg()
        print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        return 0
    finally:
        if engine is not None:
            engine.dispose()
        if args.keep:
            print(f"kept scratch database {name}")
        else:
            drop_scratch(args.database_url, name)
            print(f"dropped scratch database {name}")


if __name__ == "__main__":
    sys.exit(main())
