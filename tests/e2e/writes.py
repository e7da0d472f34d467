"""What a refused write must leave behind: nothing (issue 16).

``unchanged(engine, "intake")`` reads every row of every table of the service's schema before and
after the block and compares them. The outbox is one of those tables, and a service publishes only
what its outbox holds (the transactional outbox): no new outbox row, no event. Only the relay's own
bookkeeping on rows already there (``published_at``, ``attempts``) is left out, as it may move at
any moment for an event of an earlier, accepted write; so are routing's report roll-ups, which a
background task folds from one table into the other every few seconds (they are derived from the
saves of workflows and steps, which are compared). The audit log is the one table a refusal adds
to: an entry naming the refused call and its 4xx status, after the entries already there, which
stay as they were."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import text

#: columns a background task updates on rows of earlier writes (the outbox relay)
BOOKKEEPING = {"outbox": {"published_at", "attempts"}}
#: tables a refused write appends its own entry to (every HTTP write is audited, refused ones too)
AUDITED = ("audit_log",)
#: tables a background task rewrites from what earlier writes saved
DERIVED = {"routing": ("report_rollups", "report_rollup_changes")}


def snapshot(engine, schema: str, skip: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every row of every table of ``schema`` but ``skip`` (and Alembic's), as sorted text tuples."""
    rows = {}
    with engine.connect() as connection:
        tables = connection.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = :s AND table_type = 'BASE TABLE' "
            "ORDER BY table_name"), {"s": schema}).scalars().all()
        for table in tables:
            if table in skip or table in DERIVED.get(schema, ()) or table == "alembic_version":
                continue
            columns = connection.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
                "ORDER BY ordinal_position"), {"s": schema, "t": table}).scalars().all()
            kept = [c for c in columns if c not in BOOKKEEPING.get(table, ())]
            selected = ", ".join(f'"{c}"::text' for c in kept)
            rows[table] = sorted(tuple(row) for row in connection.execute(
                text(f'SELECT {selected} FROM "{schema}"."{table}"')))
    return rows


@contextmanager
def unchanged(engine, *schemas: str, skip: tuple[str, ...] = ()):
    """The block changes no row of these services' tables (their outbox included: nothing published)."""
    before = {schema: snapshot(engine, schema, skip) for schema in schemas}
    yield
    for schema in schemas:
        after = snapshot(engine, schema, skip)
        changed = sorted(t for t in set(before[schema]) | set(after)
                         if t not in AUDITED and before[schema].get(t) != after.get(t))
        for table in AUDITED:
            if table in after:
                _only_refusals_appended(engine, schema, table, before[schema][table], after[table])
        assert not changed, f"refused, yet rows changed in {', '.join(f'{schema}.{t}' for t in changed)}"


def _only_refusals_appended(engine, schema: str, table: str, before: list[tuple], after: list[tuple]) -> None:
    added = set(after) - set(before)
    assert set(before) <= set(after), f"refused, yet entries of {schema}.{table} changed or went"
    if added:
        with engine.connect() as connection:
            statuses = connection.execute(text(
                f'SELECT status FROM "{schema}"."{table}" ORDER BY seq DESC LIMIT :n'), {"n": len(added)}).scalars()
            assert all(status >= 400 for status in statuses), f"an accepted write was audited in {schema}.{table}"


def refused(answer, status: int, field: str) -> None:
    """A refusal: the status, and the JSON error naming the field."""
    assert answer.status_code == status, f"{answer.status_code} {answer.text}"
    body = answer.json()
    assert body.get("field") == field, body
    assert body.get("error"), body
