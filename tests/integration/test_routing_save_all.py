"""Routing's batch save against PostgreSQL: ``save_all`` writes the very rows that one ``save`` per
workflow writes (workflows, steps, hand-overs, actions, outbox payloads, II.06a roll-ups), on
identical data with identical changes, in a few statements whatever the number of workflows; and a
scan round sends the same statements for each batch.

Each way runs in a schema of its own (tables from ``services/routing/models.py``, reached through
``schema_translate_map``), created with this module and dropped at its end."""
from __future__ import annotations

import secrets
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import sessionmaker

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import TZ, default_calendar
from motcua.contracts.events import new_event
from motcua.runtime import outbox
from motcua.runtime.db import UnitOfWork as Database
from services.routing import models, store
from services.routing.handlers import Scan, handle
from services.routing.unit_of_work import SqlUnitOfWork, _summed
from services.routing.workflow import Workflow

CAL = default_calendar()
UNIT, LAND, TAX = "000.00.20.H29", "000.41.20.H29", "000.42.20.H29"
PROCEDURE = {"name": "Chuyển nhượng quyền sử dụng đất", "field": "Đất đai",
             "steps": [{"agency": LAND, "days": 3}, {"agency": TAX, "days": 3}, {"agency": LAND, "days": 4}]}
REGISTRY = Actor("Lê Văn Đức", LAND)
RECEIVED = datetime(2026, 12, 1, 8, 30, tzinfo=TZ)          # a Tuesday: step 0 due on Friday the 4th
TABLES = [models.workflows, models.steps, models.handovers, models.actions, models.outbox, models.report_rollups,
          models.report_rollup_changes]
WORKFLOWS = 30


@pytest.fixture(scope="module")
def schemas(engine):
    names = [f"routing_save_{way}_{secrets.token_hex(4)}" for way in ("one", "all")]
    for name in names:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        models.metadata.create_all(engine.execution_options(schema_translate_map={"routing": name}), tables=TABLES)
    yield names
    with engine.begin() as connection:
        for name in names:
            connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))


def scoped(engine, schema):
    """The engine with ``routing`` meaning ``schema`` (its tables emptied first)."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE " + ", ".join(f'"{schema}".{t.name}' for t in TABLES)
                                + " RESTART IDENTITY"))
    return engine.execution_options(schema_translate_map={"routing": schema})


def uow(database, now) -> SqlUnitOfWork:
    return SqlUnitOfWork(database, lambda session, e: outbox.add(session, models.outbox, e), now=now,
                         calendar=CAL, procedure_version=lambda code, version: PROCEDURE)


def code(n: int) -> str:
    return f"{UNIT}-261201-{n:04d}"


def seed(database, count: int, received: datetime = RECEIVED, first: int = 0) -> None:
    """``count`` land transfers received on 1 December (or ``received``), saved one by one (new
    workflows): step 0 due three working days later, the dossier ten."""
    with uow(database, received) as work:
        for n in range(first, first + count):
            message = new_event("dossier.received", {
                "code": code(n), "procedure_code": "1.013831", "procedure_version": 1,
                "channel": "online" if n % 3 == 0 else "in_person", "received_at": received.isoformat(),
                "appointment_date": CAL.add_working_days(received.date(), 10).isoformat(),
                "time_limit": "10 working days", "handling_agency": LAND,
                "applicant": {"name": "Nguyễn Văn An"}, "quantities": {}, "secret": "x"}, UNIT)
            workflow, events = Workflow.start(message, PROCEDURE, received, CAL)
            work.workflows.add(workflow)
            work.save(workflow, events)


def change(n: int, workflow: Workflow) -> list:
    """What happens to the n-th workflow: a scan's flags, agency actions, a clock stop, a refusal
    (a resolved dossier: the roll-ups move), or nothing."""
    step = workflow.steps[0].id
    at = datetime(2026, 12, 3, 10, tzinfo=TZ) + timedelta(minutes=n)
    kind = n % 6
    if kind == 0:         # overdue dossier and step: 16 December
        return workflow.scan(datetime(2026, 12, 16, 0, 0, 2, tzinfo=TZ), CAL, 1)
    if kind == 1:         # the step at risk (due tomorrow)
        return workflow.scan(datetime(2026, 12, 3, 0, 0, 2, tzinfo=TZ), CAL, 1)
    if kind == 2:         # accepted, done, transferred: new hand-overs, a receiver filled, new actions
        return [*workflow.accept(REGISTRY, step, at), *workflow.complete(REGISTRY, step, {"result": "done"}, at, CAL),
                *workflow.transfer(REGISTRY, {"note": "chuyển thuế"}, at, CAL)]
    if kind == 3:         # a financial obligation: the clock stops, no due date (clock_stops, JSONB)
        return [*workflow.accept(REGISTRY, step, at),
                *workflow.request_obligation(REGISTRY, {"description": "lệ phí trước bạ", "amount": 500_000}, at, CAL)]
    if kind == 4:         # refused by the agency: resolved, back to the desk
        return [*workflow.accept(REGISTRY, step, at),
                *workflow.complete(REGISTRY, step, {"result": "refuse", "note": "sai hồ sơ"}, at, CAL)]
    return []


def tables(database) -> dict:
    w, s, h, a, o, ru = (models.workflows, models.steps, models.handovers, models.actions, models.outbox,
                         models.report_rollups)
    with database.transaction() as session:
        store.fold_rollup_changes(session)     # the change rows differ (summed per batch), their sums not
        return {
            "workflows": session.execute(select(*[c for c in w.c if c.name != "updated_at"])
                                         .order_by(w.c.code)).all(),
            "steps": session.execute(select(s).order_by(s.c.id)).all(),
            "handovers": session.execute(select(h).order_by(h.c.id)).all(),
            "actions": session.execute(select(a).order_by(a.c.id)).all(),
            "outbox": [(row.type, {k: v for k, v in row.envelope.items() if k not in ("id", "correlation_id")})
                       for row in session.execute(select(o).order_by(o.c.seq))],
            "report_rollups": session.execute(select(ru).order_by(*ru.primary_key.columns)).all(),
        }


class Statements:
    """The statements sent to the server (each page of a multi-row INSERT counts)."""

    def __init__(self, engine):
        self.engine, self.sent = engine, []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self.capture)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self.capture)

    def capture(self, conn, cursor, statement, parameters, context, executemany):
        if "pg_notify" in statement:
            return     # the outbox announcing its rows: no relay runs in this test's process
        self.sent.append(" ".join(statement.split()[:3]))


def test_a_batch_save_writes_the_rows_that_saves_one_by_one_write(engine, schemas):
    results, counts = [], []
    for schema, batch in zip(schemas, (False, True)):
        engine_ = scoped(engine, schema)
        database = Database(sessionmaker(bind=engine_, expire_on_commit=False), [])
        seed(database, WORKFLOWS)
        before = tables(database)
        with Statements(engine_.engine) as statements, \
                uow(database, datetime(2026, 12, 16, 0, 0, 2, tzinfo=TZ)) as work:
            loaded = work.workflows.lock_for_scan([code(n) for n in range(WORKFLOWS)])
            sent_before = len(statements.sent)
            changes = [(workflow, change(n, workflow)) for n, workflow in enumerate(loaded)]
            if batch:
                work.save_all(changes)
            else:
                for workflow, events in changes:
                    work.save(workflow, events)
        counts.append(Counter(statements.sent[sent_before:]))
        results.append((before, tables(database), changes))
    (before, one_by_one, changes), (_, batched, batched_changes) = results
    for table in one_by_one:
        assert batched[table] == one_by_one[table], table
    # Every kind of change was there to compare: the scan's flags, new rows, a receiver, the roll-ups.
    types = Counter(t for t, _ in one_by_one["outbox"][len(before["outbox"]):])
    assert {"dossier.overdue", "dossier.step_overdue", "dossier.at_risk", "dossier.step_started",
            "dossier.step_completed", "dossier.transferred", "dossier.obligation_requested",
            "dossier.deadline_changed", "dossier.processed"} <= set(types)
    assert len(one_by_one["handovers"]) > len(before["handovers"])
    assert len(one_by_one["actions"]) > len(before["actions"])
    assert one_by_one["report_rollups"] != before["report_rollups"]
    # The ids given to new rows are the same, in the same order, on the aggregates too.
    assert [[a.id for a in w.actions] for w, _ in changes] == [[a.id for a in w.actions] for w, _ in batched_changes]
    # One by one: a few statements per workflow (131 here); the batch: one per table and kind of change.
    one, many = ({_table(k): n for k, n in sent.items()} for sent in counts)
    assert sum(one.values()) > 4 * WORKFLOWS, one
    assert many == {
        "UPDATE workflows": 4,      # overdue (kind 0), next stage (2), clock stopped (3), resolved (4)
        "UPDATE steps": 6,          # overdue, at risk, accepted + done, handed over, accepted + due date gone, refused
        "UPDATE handovers": 1,      # the receivers filled in on acceptance
        "INSERT handovers": 1, "INSERT actions": 1, "INSERT report_rollup_changes": 1, "INSERT outbox": 1}


def _table(statement: str) -> str:
    """'UPDATE <schema>.steps SET' -> 'UPDATE steps'; 'INSERT INTO <schema>.outbox' -> 'INSERT outbox'."""
    words = statement.split()
    return f"{words[0]} {words[2 if words[0] == 'INSERT' else 1].rsplit('.', 1)[1]}"


def test_a_scan_round_sends_the_same_few_statements_for_every_batch(engine, schemas):
    engine_ = scoped(engine, schemas[1])
    database = Database(sessionmaker(bind=engine_, expire_on_commit=False), [])
    seed(database, 20)                                                    # step 0 due 4 December
    seed(database, 10, received=datetime(2026, 12, 14, 8, 30, tzinfo=TZ), first=20)      # due on the 17th
    transactions: list[list[str]] = [[]]

    def sent(conn, cursor, statement, *_):
        if "pg_notify" in statement:
            return     # the outbox announcing its rows: no relay runs in this test's process
        words = statement.split()
        transactions[-1].append("SELECT" if words[0] == "SELECT" else _table(" ".join(words[:3])))

    def committed(connection):
        transactions.append([])

    event.listen(engine_.engine, "before_cursor_execute", sent)
    event.listen(engine_.engine, "commit", committed)
    try:
        counts = handle(Scan(batch=10), uow(database, datetime(2026, 12, 16, 0, 0, 2, tzinfo=TZ)))
    finally:
        event.remove(engine_.engine, "before_cursor_execute", sent)
        event.remove(engine_.engine, "commit", committed)
    assert counts == {"overdue": 20, "step_overdue": 20, "at_risk": 10, "apology_missing": 0}
    overdue_batch = ["SELECT", "SELECT", "UPDATE workflows", "UPDATE steps", "INSERT actions", "INSERT outbox"]
    assert transactions == [
        ["SELECT", *overdue_batch],           # the candidate query once a round, then lock and load …
        overdue_batch,                        # … the same six statements for 10 workflows as for 500
        ["SELECT", "SELECT", "UPDATE steps", "INSERT outbox"],                  # warnings only
        []]                                   # nothing after the last commit


def test_the_batch_roll_up_deltas_are_summed_per_key_and_a_cancelled_key_stays():
    def delta(day, channel, **counters):
        return {"span": "day", "day": date(2026, 12, day), "unit": UNIT, "field": "Đất đai", "channel": channel,
                **{name: counters.get(name, 0) for name in
                   ("received", "early", "on_time", "late", "pending_change", "overdue_change")}}

    rows = _summed([delta(16, "online", overdue_change=1), delta(3, "online", pending_change=-1, late=1),
                    delta(16, "online", overdue_change=-1), delta(3, "online", pending_change=-1, on_time=1)])
    # One row per key, in key order (one upsert cannot change a row twice); a key whose deltas cancel
    # out is kept with zeros, as two saves one after the other would leave it.
    assert rows == [delta(3, "online", pending_change=-2, late=1, on_time=1), delta(16, "online")]


def test_the_roll_ups_read_only_the_columns_whose_change_makes_a_save_compute_them():
    from services.routing import reports
    from services.routing.unit_of_work import REPORTED

    values = {"unit": UNIT, "field": "Đất đai", "channel": "online", "received_at": RECEIVED,
              "resolved_at": RECEIVED + timedelta(days=2), "due_date": date(2026, 12, 15), "result_class": "early"}
    assert set(values) == set(REPORTED)
    assert reports.daily_contributions(values)      # a KeyError if they read a column left out of REPORTED
