"""Report II.06a from its roll-ups (reports.ii06a), from a scan of the workflows (store.report_rows, through
reports.ii06a(scan=True)) and from the pure rule (domain.classify_for_report) over the same dossiers: a few
hundred random workflows of two units of our own, many of them on the edges of the periods (received,
resolved or due exactly at a boundary, a microsecond either side, in UTC or local time), saved through
routing's repository as a life would save them (received; a clock stop that takes the due date away and
gives a later one back; a due date changed after receipt; resolved early, on the due date, late,
withdrawn or stopped; some still pending), so that the roll-ups are the ones the save path keeps. Every
figure must be the same three ways, per unit and field, and every row and total balanced; and the
migration's back-fill must build the same roll-ups from the same workflows."""
from __future__ import annotations

import importlib.util
import random
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, select, text
from sqlalchemy.orm import Session

from motcua.contracts.calendar import TZ, classify, local_date
from motcua.contracts.periods import parse_period
from services.routing import reports, store
from services.routing.domain import classify_for_report
from services.routing.models import report_rollup_changes, report_rollups, workflows
from services.routing.unit_of_work import SqlRepository
from services.routing.workflow import Workflow

UTC = timezone.utc
UNITS = ("000.90.20.H29", "000.91.20.H29")     # codes nobody else uses: this module owns their rows
FIELDS = ("Hộ tịch", "Chứng thực", "Đất đai", "Xây dựng", "Đăng ký kinh doanh")
COUNTED = ("online", "in_person_or_post", "carried_over", "early", "on_time", "late", "within_deadline", "overdue")
ROWS = 600

# The periods checked: a month, a day, a quarter, a year, one across the new year, one before any data.
PERIODS = [("2026-03-01", "2026-03-31"), ("2026-03-16", "2026-03-16"), ("2026-01-01", "2026-03-31"),
           ("2026-01-01", "2026-12-31"), ("2025-12-15", "2026-01-15"), ("2026-02-28", "2026-02-28"),
           ("2024-01-01", "2024-12-31")]


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=TZ)


def _anchors() -> list[datetime]:
    """The boundaries of every checked period, local midnights."""
    out = []
    for first, last in PERIODS[:-1]:
        period = parse_period(first, last)
        out += [period.begin, period.end]
    return sorted(set(out))


def _near(rng: random.Random, anchor: datetime) -> datetime:
    """An instant on or right next to a boundary, sometimes written in UTC."""
    instant = anchor + rng.choice([timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=1),
                                   timedelta(hours=-7), timedelta(hours=8, minutes=30),
                                   timedelta(hours=15, minutes=30), timedelta(days=-1, hours=16)])
    return instant.astimezone(UTC) if rng.random() < 0.3 else instant


def _random_instant(rng: random.Random) -> datetime:
    start = datetime(2025, 11, 1, tzinfo=TZ)
    return start + timedelta(seconds=rng.randrange(int(timedelta(days=450).total_seconds())),
                             microseconds=rng.randrange(1_000_000))


def generate(rng: random.Random, count: int) -> list[dict]:
    anchors = _anchors()
    rows = []
    for i in range(count):
        unit = UNITS[i % 2]
        received = _near(rng, rng.choice(anchors)) if rng.random() < 0.35 else _random_instant(rng)
        received_day = local_date(received)
        # Due: random, or on / next to the last day of a period.
        if rng.random() < 0.06:
            due = None                                                  # clock stopped
        elif rng.random() < 0.3:
            last_day = local_date(rng.choice(anchors) - timedelta(microseconds=1))
            due = max(received_day, last_day + timedelta(days=rng.choice([-1, 0, 1])))
        else:
            due = received_day + timedelta(days=rng.choice([0, 0, 1, 3, 5, 10, 15, 30]))
        # Resolved: never, some time later, or on / next to a boundary after the receipt.
        roll = rng.random()
        if roll < 0.3:
            resolved = None
        elif roll < 0.55:
            later = [a for a in anchors if a > received]
            resolved = _near(rng, rng.choice(later)) if later else None
            if resolved is not None and resolved < received:
                resolved = received
        else:
            resolved = received + timedelta(hours=rng.randrange(0, 24 * 45), microseconds=rng.randrange(1_000_000))
        if resolved is None:
            result_class, state = None, "running"
        else:
            result_class = classify(resolved, due) if due is not None else rng.choice(["early", "on_time", "late"])
            if rng.random() < 0.05:
                result_class = None                                     # none recorded: counts as on time
            state = rng.choice(["processed", "processed", "processed", "stopped", "withdrawn"])
        rows.append({
            "code": f"{unit}-{received_day:%y%m%d}-{i:04d}", "unit": unit,
            "procedure_code": f"2.00{rng.randrange(1000, 9999)}", "procedure_version": 1,
            "procedure_name": "Thủ tục thử nghiệm", "field": rng.choice(FIELDS),
            "channel": rng.choice(["online", "online", "in_person", "in_person", "post"]),
            "time_limit": "5 working days", "applicant_name": "Nguyễn Văn A", "received_at": received,
            "original_due_date": due or received_day, "due_date": due, "state": state,
            "resolved_at": resolved, "result_class": result_class})
    return rows


MIGRATION = Path(__file__).resolve().parents[2] / "services/routing/migrations/versions/0005_ii06a_rollups.py"


def _forget(connection) -> None:
    connection.execute(delete(workflows).where(workflows.c.unit.in_(UNITS)))
    connection.execute(delete(report_rollups).where(report_rollups.c.unit.in_(UNITS)))
    connection.execute(delete(report_rollup_changes).where(report_rollup_changes.c.unit.in_(UNITS)))


def _life(rng: random.Random, row: dict) -> list[dict]:
    """The workflow's values as saved one after the other, ending with ``row``: received (with the due
    date the desk counted, sometimes earlier than the last one, or one that a stop took away), perhaps a
    clock stop and its end (no due date, then a later one), then resolved (or still running)."""
    received_day = local_date(row["received_at"])
    final_due = row["due_date"]
    first_due = final_due
    if final_due is None or rng.random() < 0.3:
        base = final_due or received_day + timedelta(days=rng.choice([0, 1, 5, 30]))
        first_due = max(received_day, base - timedelta(days=rng.choice([1, 2, 5, 20])))
    running = dict(row, state="running", resolved_at=None, result_class=None, due_date=first_due)
    saves = [running]
    if final_due != first_due or rng.random() < 0.1:
        saves.append(dict(running, due_date=None))                     # a clock stop
        if final_due is not None:
            saves.append(dict(running, due_date=final_due))            # ... and its end: a later date
    if row["resolved_at"] is not None or saves[-1] != row:
        saves.append(row)
    return saves


@pytest.fixture(scope="module")
def dossiers(engine):
    """The generated dossiers, saved by routing's repository through their lives: the first save of
    each in one transaction, then per dossier its changes, some two in one transaction."""
    rng = random.Random(20260316)
    rows = generate(rng, ROWS)
    lives = [_life(rng, row) for row in rows]
    with engine.begin() as connection:
        _forget(connection)                                             # left by a crashed run
    with Session(engine) as session, session.begin():
        repository = SqlRepository(session)
        for life in lives:
            repository.save(Workflow(**life[0]))
    for life in lives:
        changes = life[1:]
        while changes:
            together = changes[:rng.choice([1, 2])]
            changes = changes[len(together):]
            with Session(engine) as session, session.begin():
                repository = SqlRepository(session)
                workflow = repository.get(together[0]["code"])
                for values in together:
                    for name, value in values.items():
                        setattr(workflow, name, value)
                    repository.save(workflow)
    yield rows
    with engine.begin() as connection:
        _forget(connection)


def expected(rows: list[dict], unit: str | None, begin: datetime, finish: datetime) -> dict:
    """{unit: {field: Counter}} summed from the pure rule."""
    out: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for row in rows:
        if unit is not None and row["unit"] != unit:
            continue
        columns = classify_for_report(received_at=row["received_at"], channel=row["channel"],
                                      resolved_at=row["resolved_at"], result_class=row["result_class"],
                                      due=row["due_date"], start=begin, end=finish)
        if columns:
            out[row["unit"]][row["field"]].update(columns)
    return {u: {f: {c: counts[c] for c in COUNTED} for f, counts in fields.items()} for u, fields in out.items()}


def actual(report: dict) -> dict:
    return {u["unit"]: {line["label"]: {c: line[c] for c in COUNTED} for line in u["fields"]}
            for u in report["units"] if u["unit"] in UNITS}


def check_report(engine, rows, unit, first_text, last_text):
    period = parse_period(first_text, last_text)
    with Session(engine) as session:
        report = reports.ii06a(session, unit, period)
        scanned = reports.ii06a(session, unit, period, scan=True)
    assert actual(report) == expected(rows, unit, period.begin, period.end)
    assert actual(report) == actual(scanned)
    mine = [u for u in report["units"] if u["unit"] in UNITS]
    assert mine == [u for u in scanned["units"] if u["unit"] in UNITS]
    for u in mine:
        assert all(line["balanced"] for line in u["fields"]), u
        assert u["total"]["balanced"]
        for column in COUNTED + ("received", "resolved", "pending"):
            assert u["total"][column] == sum(line[column] for line in u["fields"])
    assert report["total"]["balanced"]
    if unit is not None:
        assert [u["unit"] for u in report["units"]] in ([], [unit])
        assert report == scanned
        for column in COUNTED:
            assert report["total"][column] == sum(u["total"][column] for u in mine)
    return report


@pytest.mark.parametrize("period", PERIODS, ids=["-".join(p) for p in PERIODS])
@pytest.mark.parametrize("unit", [UNITS[0], UNITS[1], None], ids=["unit-90", "unit-91", "all-units"])
def test_the_database_counts_what_the_domain_counts(engine, dossiers, unit, period):
    check_report(engine, dossiers, unit, *period)


def test_the_data_reaches_every_column_and_every_edge(dossiers):
    """Guards the generator: the comparison above is only worth something if every column is hit."""
    period = parse_period("2026-03-01", "2026-03-31")
    march = expected(dossiers, None, period.begin, period.end)
    totals = Counter()
    for fields in march.values():
        for counts in fields.values():
            totals.update(counts)
    assert all(totals[c] >= 3 for c in COUNTED), totals
    assert set(march) == set(UNITS)
    assert sum(1 for r in dossiers if r["received_at"] in (period.begin, period.end)) >= 3
    assert sum(1 for r in dossiers if r["resolved_at"] in (period.begin, period.end)) >= 3
    assert sum(1 for r in dossiers if r["received_at"] in (period.begin - timedelta(microseconds=1),
                                                           period.end - timedelta(microseconds=1))) >= 3
    assert sum(1 for r in dossiers if r["due_date"] == date(2026, 3, 31)) >= 3
    assert sum(1 for r in dossiers if r["due_date"] is None) >= 3
    assert sum(1 for r in dossiers if r["resolved_at"] is not None and r["result_class"] is None) >= 3


def test_a_period_before_any_dossier_is_empty_and_balanced(engine, dossiers):
    report = check_report(engine, dossiers, UNITS[0], "2024-01-01", "2024-12-31")
    assert report["units"] == []
    assert report["total"]["received"] == 0 and report["total"]["on_time_rate"] is None
    csv_lines = reports.as_csv(report).splitlines()
    assert csv_lines[-1] == ",Tổng cộng,0,0,0,0,0,0,0,0,0,0,0,,,"


def test_the_year_report_of_a_unit_as_csv(engine, dossiers):
    report = check_report(engine, dossiers, UNITS[1], "2026-01-01", "2026-12-31")
    lines = reports.as_csv(report).splitlines()
    fields = report["units"][0]["fields"]
    assert len(lines) == 1 + len(fields) + 1 + 1
    total = report["units"][0]["total"]
    assert lines[-2].split(",")[:13] == [UNITS[1], "Cộng", *(str(total[k]) for k, _ in reports.COLUMNS[:11])]


@settings(max_examples=40, deadline=None)
@given(first=st.dates(min_value=date(2025, 10, 1), max_value=date(2027, 2, 28)),
       length=st.integers(min_value=0, max_value=365), unit=st.sampled_from([UNITS[0], UNITS[1], None]))
def test_any_period(engine, dossiers, first, length, unit):
    check_report(engine, dossiers, unit, first.isoformat(), (first + timedelta(days=length)).isoformat())


def _as_expected(rows) -> dict:
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r.unit, {})[r.field] = {c: getattr(r, c) for c in COUNTED}
    return out


instants = st.one_of(
    st.datetimes(min_value=datetime(2025, 10, 1), max_value=datetime(2027, 2, 28), timezones=st.sampled_from([TZ, UTC])),
    st.builds(lambda anchor, shift: anchor + shift, st.sampled_from(_anchors()),
              st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(microseconds=-1),
                               timedelta(hours=5), timedelta(hours=-5)])))


@settings(max_examples=40, deadline=None)
@given(start=instants, length=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400)),
       unit=st.sampled_from([UNITS[0], None]))
def test_report_rows_for_any_pair_of_instants(engine, dossiers, start, length, unit):
    """store.report_rows for [start, end) not on local midnights (an end at 05:00 local is still the
    previous day in UTC): the database must take the last day of the period in local time too."""
    end = start + length
    with Session(engine) as session:
        rows = [r for r in store.report_rows(session, unit, start, end) if r.unit in UNITS]
    assert _as_expected(rows) == expected(dossiers, unit, start, end)


def test_the_lives_reach_every_change_the_roll_ups_must_follow(dossiers):
    """Guards the fixture: due dates changed after receipt, clock stops, every end."""
    rng = random.Random(20260316)
    lives = [_life(rng, row) for row in generate(rng, ROWS)]
    assert sum(1 for life in lives if any(v["due_date"] is None for v in life[:-1])) >= 20
    assert sum(1 for life in lives if life[0]["due_date"] not in (None, life[-1]["due_date"])) >= 20
    assert sum(1 for r in dossiers if r["state"] == "withdrawn") >= 20
    assert sum(1 for r in dossiers if r["resolved_at"] is not None and r["due_date"] is not None
               and local_date(r["resolved_at"]) == r["due_date"]) >= 5
    assert sum(1 for r in dossiers if r["resolved_at"] is None and r["due_date"] is not None) >= 20


def _backfill_module():
    spec = importlib.util.spec_from_file_location("routing_0005_ii06a_rollups", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migrations_back_fill_builds_the_roll_ups_the_saves_kept(engine, dossiers):
    """The migration fills the roll-ups of an existing database from its workflows: the same rows
    (rows of zeros aside) as the repository's saves kept through the dossiers' lives."""
    migration = _backfill_module()
    ours = "(SELECT * FROM routing.workflows WHERE unit IN ('%s', '%s'))" % UNITS
    columns = ("span", "day", "unit", "field", "channel", *store.ROLLUP_COUNTERS)
    with Session(engine) as session, session.begin():
        store.fold_rollup_changes(session)
    with engine.connect() as connection:
        built = {tuple(r) for r in connection.execute(text(migration.rollups_from_workflows(ours)))}
        kept = {tuple(r) for r in connection.execute(
            select(*(report_rollups.c[c] for c in columns)).where(report_rollups.c.unit.in_(UNITS)))
            if any(r[5:])}
    assert len(built) > 1000
    assert built == kept


def test_the_roll_ups_change_in_the_saves_transaction_one_statement_or_none(engine):
    """A receipt writes its part of the roll-ups with one INSERT of change rows (no upsert: a save
    waits for no other's roll-up rows); a save that changes nothing the report counts writes none; a
    transaction that rolls back leaves the roll-ups as they were. The fold adds the change rows up."""
    unit = "000.93.20.H29"                  # a desk nobody else uses: this test owns its rows
    row = generate(random.Random(7), 1)[0]
    row.update(unit=unit, code=f"{unit}-260302-0001", state="running", resolved_at=None, result_class=None,
               received_at=datetime(2026, 3, 2, 9, tzinfo=TZ), due_date=date(2026, 3, 5))
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "report_rollup" in statement:
            statements.append(statement)

    def rollups():
        with Session(engine) as session, session.begin():
            store.fold_rollup_changes(session)
        with engine.connect() as connection:
            return connection.execute(select(report_rollups).where(report_rollups.c.unit == unit)
                                      .order_by(report_rollups.c.span, report_rollups.c.day)).all()

    with engine.begin() as connection:
        connection.execute(delete(workflows).where(workflows.c.unit == unit))
        connection.execute(delete(report_rollups).where(report_rollups.c.unit == unit))
        connection.execute(delete(report_rollup_changes).where(report_rollup_changes.c.unit == unit))
    event.listen(engine, "before_cursor_execute", count)
    try:
        with Session(engine) as session, session.begin():
            SqlRepository(session).save(Workflow(**row))
        assert len(statements) == 1 and statements[0].startswith("INSERT INTO routing.report_rollup_changes")
        statements.clear()
        received = rollups()
        assert {(r.span, r.day, r.received, r.pending_change, r.overdue_change) for r in received} == {
            ("day", date(2026, 3, 2), 1, 1, 0), ("day", date(2026, 3, 6), 0, 0, 1),
            ("month", date(2026, 3, 1), 1, 1, 1), ("year", date(2026, 1, 1), 1, 1, 1)}

        statements.clear()
        with Session(engine) as session, session.begin():
            repository = SqlRepository(session)
            workflow = repository.get(row["code"])
            workflow.overdue_at, workflow.stage = datetime(2026, 3, 6, 0, 5, tzinfo=TZ), 1
            repository.save(workflow)
        assert statements == []

        with pytest.raises(RuntimeError):
            with Session(engine) as session, session.begin():
                repository = SqlRepository(session)
                workflow = repository.get(row["code"])
                workflow.resolved_at, workflow.result_class = datetime(2026, 3, 9, 10, tzinfo=TZ), "late"
                repository.save(workflow)
                assert len(statements) == 1
                raise RuntimeError("the change fails after the save")
        assert rollups() == received
    finally:
        event.remove(engine, "before_cursor_execute", count)
        with engine.begin() as connection:
            connection.execute(delete(workflows).where(workflows.c.unit == unit))
            connection.execute(delete(report_rollups).where(report_rollups.c.unit == unit))
            connection.execute(delete(report_rollup_changes).where(report_rollup_changes.c.unit == unit))
