"""Routing's scan against PostgreSQL: a burst larger than a batch flagged once, batch by batch, each
batch committed; a second scanner at the same time (another replica) skips the rows the first has
locked and nothing is flagged twice; and the candidate query reads the partial indexes made for it
(on 20,000 open dossiers, vacuumed and analysed: index-only scans, no sequential scan).

The tables are built from ``services/routing/models.py`` (which the migrations agree with:
``test_migrations``) in a schema of this module's own, reached through ``schema_translate_map``, so
that no other test's workflow is ever a candidate here, nor one of ours anywhere else."""
from __future__ import annotations

import re
import secrets
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.orm import sessionmaker

from motcua.contracts.calendar import TZ, default_calendar
from motcua.runtime import outbox
from motcua.runtime.db import UnitOfWork as Database
from services.routing import models
from services.routing.handlers import Scan, handle
from services.routing.unit_of_work import SqlUnitOfWork
from services.routing.workflow import one_working_day_before

UNIT, LAND = "000.00.20.H29", "000.41.20.H29"
NOW = datetime(2026, 12, 8, 9, 0, tzinfo=TZ)               # a Tuesday
YESTERDAY, FAR = date(2026, 12, 7), date(2027, 3, 1)
TABLES = [models.workflows, models.steps, models.handovers, models.actions, models.outbox]
SCAN_INDEXES = {"ix_workflows_scan_overdue", "ix_workflows_scan_apology", "ix_steps_scan_overdue",
                "ix_steps_scan_at_risk"}


@pytest.fixture(scope="module")
def schema(engine):
    schema = f"routing_scan_{secrets.token_hex(4)}"
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    models.metadata.create_all(engine.execution_options(schema_translate_map={"routing": schema}), tables=TABLES)
    yield schema
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def scoped(engine, schema):
    """The engine with ``routing`` meaning our schema (in SQLAlchemy's statements, not in text)."""
    with engine.begin() as connection:
        connection.execute(text(", ".join(f'"{schema}".{t.name}' for t in TABLES).join(("TRUNCATE ", ""))))
    return engine.execution_options(schema_translate_map={"routing": schema})


@pytest.fixture
def database(scoped):
    return Database(sessionmaker(bind=scoped, expire_on_commit=False), [])


def uow(database, now=NOW) -> SqlUnitOfWork:
    return SqlUnitOfWork(database, lambda session, e: outbox.add(session, models.outbox, e), now=now,
                         calendar=default_calendar(), procedure_version=lambda code, version: None)


def add_workflows(database, first: int, count: int, due: date, **values) -> list[str]:
    codes = [f"{UNIT}-261201-{n:05d}" for n in range(first, first + count)]
    with database.transaction() as session:
        session.execute(insert(models.workflows), [dict(
            code=code, unit=UNIT, procedure_code="1.013831", procedure_version=1, procedure_name="Chuyển nhượng",
            field="Đất đai", channel="in_person", time_limit="10 working days", applicant_name="Nguyễn Văn An",
            received_at=datetime(2026, 11, 23, 9, tzinfo=TZ), original_due_date=due, due_date=due,
            state="running", **values) for code in codes])
        session.execute(insert(models.steps), [dict(
            code=code, stage=0, position=0, parallel=False, agency=LAND, days=10, state="held", due_date=due,
            handed_over_at=datetime(2026, 11, 23, 9, tzinfo=TZ)) for code in codes])
    return codes


def outbox_codes(database, type_: str) -> Counter:
    with database.transaction() as session:
        return Counter(session.execute(select(models.outbox.c.envelope["payload"]["code"].astext)
                                       .where(models.outbox.c.type == type_)).scalars())


def test_a_burst_larger_than_a_batch_is_flagged_once_in_committed_batches(database, scoped):
    burst = add_workflows(database, 1, 23, YESTERDAY)
    add_workflows(database, 100, 5, FAR)                        # within their deadline: never candidates
    commits: list = []

    def committed(connection):
        commits.append(connection)

    event.listen(scoped, "commit", committed)
    try:
        counts = handle(Scan(batch=5), uow(database))
    finally:
        event.remove(scoped, "commit", committed)
    assert counts == {"overdue": 23, "step_overdue": 23, "at_risk": 0, "apology_missing": 0}
    assert len(commits) == 5                                    # 5 + 5 + 5 + 5 + 3: a transaction each
    assert outbox_codes(database, "dossier.overdue") == Counter(burst)          # each once
    assert outbox_codes(database, "dossier.step_overdue") == Counter(burst)
    with database.transaction() as session:
        flagged = session.execute(select(func.count()).where(models.workflows.c.overdue_at == NOW)).scalar_one()
    assert flagged == 23
    # Flagged rows have left the partial indexes: the next round finds nothing, in one batch.
    assert handle(Scan(batch=5), uow(database, NOW + timedelta(seconds=5))) == {
        "overdue": 0, "step_overdue": 0, "at_risk": 0, "apology_missing": 0}
    assert sum(outbox_codes(database, "dossier.overdue").values()) == 23


def test_two_scanners_at_once_skip_each_others_rows_and_flag_each_breach_once(database):
    burst = add_workflows(database, 1, 25, YESTERDAY)
    first = uow(database)
    with first:                       # one replica has locked a batch and not yet committed it …
        codes = first.workflows.scan_candidates(
            date(2026, 12, 8), default_calendar().add_working_days(date(2026, 12, 8), 1),
            one_working_day_before(NOW, default_calendar()))
        assert codes == burst
        held = first.workflows.lock_for_scan(codes[:6])
        assert [w.code for w in held] == burst[:6]
        # … the other scans the whole burst meanwhile, in batches, skipping the locked rows.
        counts = handle(Scan(batch=4), uow(database, NOW + timedelta(seconds=1)))
        assert counts["overdue"] == 19
        for workflow in held:
            first.save(workflow, workflow.scan(NOW, default_calendar(), 1))
    assert outbox_codes(database, "dossier.overdue") == Counter(burst)          # 25, each once
    assert handle(Scan(batch=4), uow(database, NOW + timedelta(seconds=5)))["overdue"] == 0


def test_the_candidate_query_reads_the_partial_indexes(database, scoped, schema):
    # 20,000 open dossiers: most within their deadline, some flagged long ago, a few to flag now.
    with scoped.begin() as connection:
        connection.execute(text(f"""
            INSERT INTO "{schema}".workflows (code, unit, procedure_code, procedure_version, procedure_name, field,
                channel, time_limit, applicant_name, received_at, original_due_date, due_date, state, overdue_at)
            SELECT format('%s-261201-%s', :unit, lpad(i::text, 6, '0')), :unit, '1.013831', 1, 'p', 'f',
                'online', '10 working days', 'A', now(), d, d,
                CASE WHEN i % 10 = 0 THEN 'processed' ELSE 'running' END,
                CASE WHEN d < date '2026-12-08' AND i % 500 <> 7 THEN timestamptz '2026-12-08 00:00:05+07' END
            FROM generate_series(1, 20000) i, LATERAL (SELECT date '2026-12-08' + (i % 60) - 3 AS d) due"""),
            {"unit": UNIT})
        connection.execute(text(f"""
            INSERT INTO "{schema}".steps (code, stage, position, parallel, agency, days, state, due_date, overdue_at,
                at_risk_at)
            SELECT code, 0, 0, false, :agency, 10, CASE WHEN state = 'running' THEN 'held' ELSE 'done' END,
                due_date, overdue_at, CASE WHEN due_date <= date '2026-12-09' THEN timestamptz '2026-12-07 09:00:05+07' END
            FROM "{schema}".workflows"""), {"agency": LAND})
    with scoped.connect() as connection:                    # as autovacuum leaves them
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(
            text(f'VACUUM ANALYZE "{schema}".workflows, "{schema}".steps'))
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if " UNION " in statement:
            statements.append((statement, parameters))

    event.listen(scoped.engine, "before_cursor_execute", capture)
    try:
        counts = handle(Scan(batch=500), uow(database))
    finally:
        event.remove(scoped.engine, "before_cursor_execute", capture)
    to_flag = sum(1 for i in range(1, 20001) if i % 500 == 7 and i % 60 < 3)      # due before today
    assert counts == {"overdue": to_flag, "step_overdue": to_flag, "at_risk": 0, "apology_missing": 0}
    statement, parameters = statements[0]
    with scoped.connect() as connection:
        plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
    used = set(re.findall(r"(?:Index Only Scan|Index Scan|Bitmap Index Scan) (?:Backward )?(?:using|on) (\S+)", plan))
    assert SCAN_INDEXES <= used, plan
    assert "Seq Scan" not in plan, plan
