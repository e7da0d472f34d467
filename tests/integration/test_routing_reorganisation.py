"""Report II.06a across a merger of two desks, against PostgreSQL: random workflows of two desks of
our own (the generator of ``test_routing_report``, on the edges of periods, pending, resolved early,
on time, late, stopped, withdrawn), then ``catalog.units_reorganised`` through routing's real handler
and unit of work. The running workflows move to the successor, the finished ones stay; the roll-ups
(kept by the saves' deltas) and the scan of the workflows agree for every period, before, across and
after the date; every dossier is counted once, under the unit that holds it; a redelivery changes
nothing. In a schema of this module's own (``schema_translate_map``), as ``test_routing_scan``."""
from __future__ import annotations

import random
import secrets
from collections import Counter
from datetime import date, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import sessionmaker

from motcua.contracts.calendar import TZ, default_calendar, local_date
from motcua.contracts.events import new_event
from motcua.contracts.periods import parse_period
from motcua.contracts.reorganisations import Reorganisation, Transfer
from motcua.runtime import outbox
from motcua.runtime.db import UnitOfWork as Database
from services.routing import models, reports, store
from services.routing.handlers import handle_events
from services.routing.unit_of_work import SqlRepository, SqlUnitOfWork
from services.routing.workflow import Workflow
from tests.integration.test_routing_report import UNITS as GENERATED, generate

OLD = ("000.94.20.H29", "000.95.20.H29")
SUCCESSOR, OTHER = "000.96.20.H29", "000.97.20.H29"       # OTHER: a desk the merger leaves alone
EFFECTIVE = date(2026, 7, 1)
TABLES = [models.workflows, models.steps, models.handovers, models.actions, models.outbox, models.report_rollups,
          models.report_rollup_changes, models.processed_events]
PERIODS = [("2026-01-01", "2026-12-31"), ("2026-06-01", "2026-07-31"), ("2026-06-30", "2026-07-01"),
           ("2026-07-01", "2026-07-01"), ("2026-03-01", "2026-03-31"), ("2025-12-15", "2026-01-15"),
           ("2026-01-01", "2026-06-30")]
ROWS = 300


@pytest.fixture(scope="module")
def database(engine):
    schema = f"routing_reorg_{secrets.token_hex(4)}"
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = engine.execution_options(schema_translate_map={"routing": schema})
    models.metadata.create_all(scoped, tables=TABLES)
    yield Database(sessionmaker(bind=scoped, expire_on_commit=False), [])
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def uow(database) -> SqlUnitOfWork:
    return SqlUnitOfWork(database, lambda session, e: outbox.add(session, models.outbox, e),
                         now=datetime(2026, 7, 1, 0, 5, tzinfo=TZ), calendar=default_calendar(),
                         procedure_version=lambda code, version: None)


def units_of(rows) -> dict[str, str]:
    """Desks of our own: a third of the rows at a desk the merger leaves alone."""
    mapping = {GENERATED[0]: OLD[0], GENERATED[1]: OLD[1]}
    out = {}
    for i, row in enumerate(rows):
        out[row["code"]] = OTHER if i % 3 == 0 else mapping[row["unit"]]
    return out


def figures(database, scan: bool) -> dict:
    out = {}
    with database.transaction() as session:
        store.fold_rollup_changes(session)
        for first, last in PERIODS:
            report = reports.ii06a(session, None, parse_period(first, last), scan=scan)
            out[first, last] = {u["unit"]: u["total"] for u in report["units"]}
    return out


def test_ii06a_across_a_merger_counts_every_dossier_once_under_the_unit_that_holds_it(database):
    rows = generate(random.Random(1685), ROWS)
    desks = units_of(rows)
    for row in rows:
        desk = desks[row["code"]]
        row["code"], row["unit"] = row["code"].replace(row["unit"], desk), desk
    with database.transaction() as session:
        repository = SqlRepository(session)
        for row in rows:
            repository.save(Workflow(**row))
    before = figures(database, scan=False)
    assert before == figures(database, scan=True)

    reorganisation = Reorganisation("test merger", EFFECTIVE, (Transfer(OLD, SUCCESSOR),))
    event = new_event("catalog.units_reorganised", reorganisation.payload(), unit="000.00.20.H29")
    for _ in range(2):                                   # the second time: a redelivery, nothing happens
        handle_events([event], uow(database))

    with database.transaction() as session:
        held = dict(session.execute(select(models.workflows.c.code, models.workflows.c.unit)).all())
        moves = session.execute(select(models.actions.c.code).where(
            models.actions.c.action == "unit_reorganised")).scalars().all()
    running = {row["code"] for row in rows if row["state"] == "running" and row["unit"] in OLD}
    assert running and set(moves) == running and len(moves) == len(running)        # each moved once
    assert set(held) == {row["code"] for row in rows}                               # codes unchanged
    for row in rows:
        assert held[row["code"]] == (SUCCESSOR if row["code"] in running else row["unit"]), row["code"]

    after = figures(database, scan=False)
    assert after == figures(database, scan=True)                                   # roll-ups == scan
    for period, by_unit in after.items():
        assert all(total["balanced"] for total in by_unit.values()), period
        # Nothing gained or lost: what the three old desks reported, the four report now.
        for column in ("received", "carried_over", "resolved", "pending", "overdue", "early", "on_time", "late"):
            was = sum(total[column] for unit, total in before[period].items())
            now = sum(total[column] for unit, total in after[period].items())
            assert was == now, (period, column)
        assert after[period].get(OTHER) == before[period].get(OTHER)               # untouched
    # The successor holds exactly the moved dossiers: those received in the year, (4) + (5).
    year = after[("2026-01-01", "2026-12-31")][SUCCESSOR]
    received_2026 = Counter(row["code"] in running for row in rows if local_date(row["received_at"]).year == 2026
                            and row["unit"] in OLD)
    assert year["online"] + year["in_person_or_post"] == received_2026[True] > 0
