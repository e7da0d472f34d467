"""partial indexes for the scheduler's scan: one per predicate of what is still to flag

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 02:40:00.000000

Each index holds only the rows the scan may still flag (a running workflow not flagged overdue,
an overdue one without apology nor flag, an open step not flagged overdue, an open step not yet
warned), with the code (index-only scans): a flag set takes the row out, so a scan with nothing
to do reads empty ranges whatever the number of open dossiers. They replace the two partial
indexes of 0001 that held every running workflow and every open step by due date (flagged or
not: a scan read all the overdue ones again every round); nothing else used them.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OPEN = "state IN ('handed_over', 'held')"


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_workflows_scan_overdue', 'workflows', ['due_date'], unique=False, schema='routing',
                    postgresql_include=['code'],
                    postgresql_where=sa.text("state = 'running' AND overdue_at IS NULL"))
    op.create_index('ix_workflows_scan_apology', 'workflows', ['overdue_at'], unique=False, schema='routing',
                    postgresql_include=['code'],
                    postgresql_where=sa.text("overdue_at IS NOT NULL AND apology IS NULL AND apology_missing_at IS NULL"
                                             " AND state IN ('running', 'processed')"))
    op.create_index('ix_steps_scan_overdue', 'steps', ['due_date'], unique=False, schema='routing',
                    postgresql_include=['code'], postgresql_where=sa.text(f"{OPEN} AND overdue_at IS NULL"))
    op.create_index('ix_steps_scan_at_risk', 'steps', ['due_date'], unique=False, schema='routing',
                    postgresql_include=['code'],
                    postgresql_where=sa.text(f"{OPEN} AND overdue_at IS NULL AND at_risk_at IS NULL"))
    op.drop_index('ix_workflows_running_due', table_name='workflows', schema='routing')
    op.drop_index('ix_steps_open_due', table_name='steps', schema='routing')


def downgrade() -> None:
    """Downgrade schema."""
    op.create_index('ix_steps_open_due', 'steps', ['due_date'], unique=False, schema='routing',
                    postgresql_where=sa.text(OPEN))
    op.create_index('ix_workflows_running_due', 'workflows', ['due_date'], unique=False, schema='routing',
                    postgresql_where=sa.text("state = 'running'"))
    op.drop_index('ix_steps_scan_at_risk', table_name='steps', schema='routing')
    op.drop_index('ix_steps_scan_overdue', table_name='steps', schema='routing')
    op.drop_index('ix_workflows_scan_apology', table_name='workflows', schema='routing')
    op.drop_index('ix_workflows_scan_overdue', table_name='workflows', schema='routing')
