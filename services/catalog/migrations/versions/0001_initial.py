"""catalogue: units, procedure versions, outbox

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 06:30:34.029564

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('outbox',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('envelope', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('seq', name=op.f('uq_outbox_seq')),
    schema='catalog'
    )
    op.create_index('ix_outbox_pending', 'outbox', ['seq'], unique=False, schema='catalog', postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('procedure_versions',
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('search_key', sa.Text(), nullable=False),
    sa.Column('field', sa.Text(), nullable=False),
    sa.Column('level', sa.Text(), nullable=False),
    sa.Column('agencies', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('content', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('code', 'version', name=op.f('pk_procedure_versions')),
    schema='catalog'
    )
    op.create_index('ix_procedure_versions_in_force', 'procedure_versions', ['code', 'effective_from'], unique=False, schema='catalog')
    op.create_table('units',
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('short_name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('parent', sa.Text(), nullable=True),
    sa.Column('admin_code', sa.Text(), nullable=True),
    sa.Column('desk', sa.Boolean(), nullable=False),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_units')),
    schema='catalog'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('units', schema='catalog')
    op.drop_index('ix_procedure_versions_in_force', table_name='procedure_versions', schema='catalog')
    op.drop_table('procedure_versions', schema='catalog')
    op.drop_index('ix_outbox_pending', table_name='outbox', schema='catalog', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox', schema='catalog')
