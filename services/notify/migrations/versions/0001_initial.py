"""initial

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 07:25:52.286638

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
    op.create_table('digests',
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('unit', 'day', name=op.f('pk_digests')),
    schema='notify'
    )
    op.create_table('dossiers',
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('procedure', sa.Text(), nullable=False),
    sa.Column('applicant_name', sa.Text(), nullable=False),
    sa.Column('phone', sa.Text(), nullable=True),
    sa.Column('email', sa.Text(), nullable=True),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('channels', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('optional', sa.Boolean(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('appointment_date', sa.Date(), nullable=True),
    sa.Column('open', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('overdue', sa.Boolean(), server_default='false', nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_dossiers')),
    schema='notify'
    )
    op.create_index('ix_notify_dossiers_unit', 'dossiers', ['unit', 'open'], unique=False, schema='notify')
    op.create_table('messages',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('idempotency_key', sa.Text(), nullable=False),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('unit', sa.Text(), nullable=True),
    sa.Column('template', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('audience', sa.Text(), nullable=False),
    sa.Column('recipient', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('provider_id', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_messages_idempotency_key')),
    schema='notify'
    )
    op.create_index('ix_messages_code', 'messages', ['code', 'id'], unique=False, schema='notify')
    op.create_index('ix_messages_due', 'messages', ['next_attempt_at'], unique=False, schema='notify', postgresql_where=sa.text("state IN ('queued', 'sending')"))
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
    schema='notify'
    )
    op.create_index('ix_outbox_pending', 'outbox', ['seq'], unique=False, schema='notify', postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('processed_events',
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_processed_events')),
    schema='notify'
    )
    op.create_table('templates',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_by', sa.Text(), server_default='system', nullable=False),
    sa.PrimaryKeyConstraint('key', 'channel', name=op.f('pk_templates')),
    schema='notify'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('templates', schema='notify')
    op.drop_table('processed_events', schema='notify')
    op.drop_index('ix_outbox_pending', table_name='outbox', schema='notify', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox', schema='notify')
    op.drop_index('ix_messages_due', table_name='messages', schema='notify', postgresql_where=sa.text("state IN ('queued', 'sending')"))
    op.drop_index('ix_messages_code', table_name='messages', schema='notify')
    op.drop_table('messages', schema='notify')
    op.drop_index('ix_notify_dossiers_unit', table_name='dossiers', schema='notify')
    op.drop_table('dossiers', schema='notify')
    op.drop_table('digests', schema='notify')
