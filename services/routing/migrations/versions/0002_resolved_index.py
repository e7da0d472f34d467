"""index on resolved_at for district reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:18:41.772002

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_workflows_resolved', 'workflows', ['resolved_at'], unique=False, schema='routing')


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_workflows_resolved', table_name='workflows', schema='routing')
