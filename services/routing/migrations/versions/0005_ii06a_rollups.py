"""report II.06a's roll-ups, back-filled from the workflows

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 02:40:00.000000

The table routing.report_rollups (see services/routing/reports.py for what a dossier adds to it),
filled from every workflow already there, so that an existing database reports the same figures
as before. From here on routing's repository adds each change's part to routing.report_rollup_changes
in the transaction of the change (insert only), and routing folds those into the roll-ups.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COUNTERS = "received, early, on_time, late, pending_change, overdue_change"


def rollups_from_workflows(workflows: str) -> str:
    """A SELECT of the roll-up rows (span, day, unit, field, channel, counters) of the workflows in
    ``workflows`` (a table name or a parenthesised subquery): the same rows, apart from rows of
    zeros, that reports.rollup_deltas adds up to when every workflow is saved. Frozen here, as a
    migration must be; tests/integration/test_routing_report.py checks it against the save path."""
    return f"""
    WITH w AS (
        SELECT unit, field, channel,
               (received_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date AS r,
               (resolved_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date AS x,
               due_date AS d,
               coalesce(result_class, 'on_time') AS c
        FROM {workflows} AS workflows
    ), deltas (day, unit, field, channel, received, early, on_time, late, pending_change, overdue_change) AS (
        SELECT r, unit, field, channel, 1, 0, 0, 0, CASE WHEN x IS NULL OR r < x THEN 1 ELSE 0 END, 0 FROM w
        UNION ALL
        SELECT x, unit, field, channel, 0, (c = 'early')::int, (c = 'on_time')::int, (c = 'late')::int,
               CASE WHEN r < x THEN -1 ELSE 0 END, 0
        FROM w WHERE x IS NOT NULL
        UNION ALL
        SELECT greatest(r, d + 1), unit, field, channel, 0, 0, 0, 0, 0, 1
        FROM w WHERE d IS NOT NULL AND (x IS NULL OR greatest(r, d + 1) < x)
        UNION ALL
        SELECT x, unit, field, channel, 0, 0, 0, 0, 0, -1
        FROM w WHERE d IS NOT NULL AND x IS NOT NULL AND greatest(r, d + 1) < x
    ), daily AS (
        SELECT day, unit, field, channel, sum(received) AS received, sum(early) AS early,
               sum(on_time) AS on_time, sum(late) AS late, sum(pending_change) AS pending_change,
               sum(overdue_change) AS overdue_change
        FROM deltas GROUP BY day, unit, field, channel
    )
    SELECT spans.span, date_trunc(spans.span, daily.day::timestamp)::date AS day, unit, field, channel,
           sum(received)::int AS received, sum(early)::int AS early, sum(on_time)::int AS on_time,
           sum(late)::int AS late, sum(pending_change)::int AS pending_change,
           sum(overdue_change)::int AS overdue_change
    FROM daily CROSS JOIN (VALUES ('day'), ('month'), ('year')) AS spans (span)
    GROUP BY 1, 2, 3, 4, 5
    HAVING sum(received) <> 0 OR sum(early) <> 0 OR sum(on_time) <> 0 OR sum(late) <> 0
        OR sum(pending_change) <> 0 OR sum(overdue_change) <> 0
    """


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('report_rollups',
    sa.Column('span', sa.Text(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('field', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('received', sa.Integer(), server_default='0', nullable=False),
    sa.Column('early', sa.Integer(), server_default='0', nullable=False),
    sa.Column('on_time', sa.Integer(), server_default='0', nullable=False),
    sa.Column('late', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pending_change', sa.Integer(), server_default='0', nullable=False),
    sa.Column('overdue_change', sa.Integer(), server_default='0', nullable=False),
    sa.CheckConstraint("span IN ('day', 'month', 'year')", name=op.f('ck_report_rollups_span')),
    sa.PrimaryKeyConstraint('span', 'day', 'unit', 'field', 'channel', name=op.f('pk_report_rollups')),
    schema='routing'
    )
    op.create_index('ix_report_rollups_unit_span_day', 'report_rollups', ['unit', 'span', 'day'], unique=False,
                    schema='routing')
    op.execute(f"INSERT INTO routing.report_rollups (span, day, unit, field, channel, {COUNTERS}) "
               + rollups_from_workflows("routing.workflows"))
    op.create_table('report_rollup_changes',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('span', sa.Text(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('field', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('received', sa.Integer(), server_default='0', nullable=False),
    sa.Column('early', sa.Integer(), server_default='0', nullable=False),
    sa.Column('on_time', sa.Integer(), server_default='0', nullable=False),
    sa.Column('late', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pending_change', sa.Integer(), server_default='0', nullable=False),
    sa.Column('overdue_change', sa.Integer(), server_default='0', nullable=False),
    sa.CheckConstraint("span IN ('day', 'month', 'year')", name=op.f('ck_report_rollup_changes_span')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_rollup_changes')),
    schema='routing'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('report_rollup_changes', schema='routing')
    op.drop_index('ix_report_rollups_unit_span_day', table_name='report_rollups', schema='routing')
    op.drop_table('report_rollups', schema='routing')
