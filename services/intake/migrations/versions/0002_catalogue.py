"""the catalogue's local copy (read model): every procedure version, whole, and every unit

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 13:30:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('catalogue_procedures',
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('code', 'version', name=op.f('pk_catalogue_procedures')),
    schema='intake'
    )
    op.create_table('catalogue_units',
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_catalogue_units')),
    schema='intake'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('catalogue_units', schema='intake')
    op.drop_table('catalogue_procedures', schema='intake')
