"""initial

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 06:46:31.874661

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
    op.create_table('dossier_code_counters',
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('unit', 'day', name=op.f('pk_dossier_code_counters')),
    schema='intake'
    )
    op.create_table('dossiers',
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('status', sa.SmallInteger(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('procedure_code', sa.Text(), nullable=False),
    sa.Column('procedure_version', sa.Integer(), nullable=False),
    sa.Column('procedure', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('handling_agency', sa.Text(), nullable=False),
    sa.Column('applicant_name', sa.Text(), nullable=False),
    sa.Column('applicant_key', sa.Text(), nullable=False),
    sa.Column('applicant_id_number', sa.Text(), nullable=False),
    sa.Column('applicant_address', sa.Text(), nullable=False),
    sa.Column('applicant_phone', sa.Text(), nullable=False),
    sa.Column('applicant_email', sa.Text(), nullable=True),
    sa.Column('documents', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('sets', sa.Integer(), nullable=False),
    sa.Column('quantities', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('fee_conditions', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('notifications', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_by', sa.Text(), nullable=True),
    sa.Column('appointment_date', sa.Date(), nullable=True),
    sa.Column('appointment_history', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('clock_stops', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('supplement', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('supplement_requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refusal', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('book_year', sa.Integer(), nullable=True),
    sa.Column('book_volume', sa.Integer(), nullable=True),
    sa.Column('book_line', sa.Integer(), nullable=True),
    sa.Column('transferred_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fees_required', sa.Boolean(), nullable=False),
    sa.Column('fees_outstanding', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('fees_settled', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('fees_charged_seen', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('returned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('returned_to', sa.Text(), nullable=True),
    sa.Column('result_class', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_dossiers')),
    schema='intake'
    )
    op.create_index('ix_dossiers_applicant_id', 'dossiers', ['applicant_id_number'], unique=False, schema='intake')
    op.create_index('ix_dossiers_applicant_key', 'dossiers', ['applicant_key'], unique=False, schema='intake')
    op.create_index('ix_dossiers_book', 'dossiers', ['unit', 'book_year', 'book_line'], unique=True, schema='intake')
    op.create_index('ix_dossiers_unit_appointment', 'dossiers', ['unit', 'appointment_date'], unique=False, schema='intake')
    op.create_index('ix_dossiers_unit_received', 'dossiers', ['unit', 'received_at'], unique=False, schema='intake')
    op.create_index('ix_dossiers_unit_status', 'dossiers', ['unit', 'status'], unique=False, schema='intake')
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
    schema='intake'
    )
    op.create_index('ix_outbox_pending', 'outbox', ['seq'], unique=False, schema='intake', postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('processed_events',
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_processed_events')),
    schema='intake'
    )
    op.create_table('tracking_book_counters',
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('last_line', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('unit', 'year', name=op.f('pk_tracking_book_counters')),
    schema='intake'
    )
    op.create_table('dossier_history',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('actor_unit', sa.Text(), nullable=True),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('status_from', sa.SmallInteger(), nullable=True),
    sa.Column('status_to', sa.SmallInteger(), nullable=False),
    sa.Column('note', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['code'], ['intake.dossiers.code'], name=op.f('fk_dossier_history_code_dossiers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dossier_history')),
    schema='intake'
    )
    op.create_index('ix_dossier_history_code', 'dossier_history', ['code', 'id'], unique=False, schema='intake')


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_dossier_history_code', table_name='dossier_history', schema='intake')
    op.drop_table('dossier_history', schema='intake')
    op.drop_table('tracking_book_counters', schema='intake')
    op.drop_table('processed_events', schema='intake')
    op.drop_index('ix_outbox_pending', table_name='outbox', schema='intake', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox', schema='intake')
    op.drop_index('ix_dossiers_unit_status', table_name='dossiers', schema='intake')
    op.drop_index('ix_dossiers_unit_received', table_name='dossiers', schema='intake')
    op.drop_index('ix_dossiers_unit_appointment', table_name='dossiers', schema='intake')
    op.drop_index('ix_dossiers_book', table_name='dossiers', schema='intake')
    op.drop_index('ix_dossiers_applicant_key', table_name='dossiers', schema='intake')
    op.drop_index('ix_dossiers_applicant_id', table_name='dossiers', schema='intake')
    op.drop_table('dossiers', schema='intake')
    op.drop_table('dossier_code_counters', schema='intake')
