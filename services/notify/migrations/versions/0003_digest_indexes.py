"""the digest's indexes, and a digest that failed to render kept as failed

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 03:10:00.000000

The unit heads' digest asks three things of a unit's dossiers (``SqlDigests.figures``): how many
were received since a day, the open ones due today, the open ones routing said are overdue. With
only 0001's ``(unit, open)`` it read every open dossier of the unit and filtered (the district at
300,000 open dossiers: 114,000 rows for the first, 58,000 for each list). Each now has an index in
the order the digest lists its codes: counts and the first N codes are index-only scans. 0001's
``ix_notify_dossiers_unit`` served only the digest: dropped.

``digests`` gains ``state`` (queued | failed) and ``reason``: a digest whose template failed to
render keeps its claim, marked failed, instead of being rolled back and tried again every minute.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_dossiers_digest_received', 'dossiers', ['unit', 'received_at'], unique=False,
                    schema='notify')
    op.create_index('ix_dossiers_digest_due', 'dossiers', ['unit', 'appointment_date', 'code'], unique=False,
                    schema='notify', postgresql_where=sa.text('open'))
    op.create_index('ix_dossiers_digest_overdue', 'dossiers', ['unit', 'appointment_date', 'code'], unique=False,
                    schema='notify', postgresql_where=sa.text('open AND overdue'))
    op.drop_index('ix_notify_dossiers_unit', table_name='dossiers', schema='notify')
    op.add_column('digests', sa.Column('state', sa.Text(), server_default='queued', nullable=False),
                  schema='notify')
    op.add_column('digests', sa.Column('reason', sa.Text(), nullable=True), schema='notify')


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('digests', 'reason', schema='notify')
    op.drop_column('digests', 'state', schema='notify')
    op.create_index('ix_notify_dossiers_unit', 'dossiers', ['unit', 'open'], unique=False, schema='notify')
    op.drop_index('ix_dossiers_digest_overdue', table_name='dossiers', schema='notify')
    op.drop_index('ix_dossiers_digest_due', table_name='dossiers', schema='notify')
    op.drop_index('ix_dossiers_digest_received', table_name='dossiers', schema='notify')
