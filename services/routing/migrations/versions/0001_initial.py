"""initial

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 06:59:01.365720

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
    schema='routing'
    )
    op.create_index('ix_outbox_pending', 'outbox', ['seq'], unique=False, schema='routing', postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('processed_events',
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_processed_events')),
    schema='routing'
    )
    op.create_table('workflows',
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('procedure_code', sa.Text(), nullable=False),
    sa.Column('procedure_version', sa.Integer(), nullable=False),
    sa.Column('procedure_name', sa.Text(), nullable=False),
    sa.Column('field', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('time_limit', sa.Text(), nullable=False),
    sa.Column('applicant_name', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_by', sa.Text(), nullable=True),
    sa.Column('original_due_date', sa.Date(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('stage', sa.Integer(), server_default='0', nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('clock_stops', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result_class', sa.Text(), nullable=True),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('overdue_agency', sa.Text(), nullable=True),
    sa.Column('apology', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('apology_missing_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_workflows')),
    schema='routing'
    )
    op.create_index('ix_workflows_running_due', 'workflows', ['due_date'], unique=False, schema='routing', postgresql_where=sa.text("state = 'running'"))
    op.create_index('ix_workflows_unit_received', 'workflows', ['unit', 'received_at'], unique=False, schema='routing')
    op.create_index('ix_workflows_unit_resolved', 'workflows', ['unit', 'resolved_at'], unique=False, schema='routing')
    op.create_table('actions',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('agency', sa.Text(), nullable=True),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('step_id', sa.BigInteger(), nullable=True),
    sa.Column('note', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['code'], ['routing.workflows.code'], name=op.f('fk_actions_code_workflows')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_actions')),
    schema='routing'
    )
    op.create_index('ix_actions_code', 'actions', ['code', 'id'], unique=False, schema='routing')
    op.create_table('handovers',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('from_agency', sa.Text(), nullable=False),
    sa.Column('to_agency', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('giver', sa.Text(), nullable=False),
    sa.Column('receiver', sa.Text(), nullable=True),
    sa.Column('step_id', sa.BigInteger(), nullable=True),
    sa.Column('result_class', sa.Text(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['code'], ['routing.workflows.code'], name=op.f('fk_handovers_code_workflows')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handovers')),
    schema='routing'
    )
    op.create_index('ix_handovers_code', 'handovers', ['code', 'id'], unique=False, schema='routing')
    op.create_table('steps',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('parallel', sa.Boolean(), nullable=False),
    sa.Column('agency', sa.Text(), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('handed_over_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('handed_over_by', sa.Text(), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_by', sa.Text(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_by', sa.Text(), nullable=True),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('result_class', sa.Text(), nullable=True),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('at_risk_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['code'], ['routing.workflows.code'], name=op.f('fk_steps_code_workflows')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_steps')),
    schema='routing'
    )
    op.create_index('ix_steps_agency_state', 'steps', ['agency', 'state'], unique=False, schema='routing')
    op.create_index('ix_steps_code', 'steps', ['code', 'stage', 'position'], unique=True, schema='routing')
    op.create_index('ix_steps_open_due', 'steps', ['due_date'], unique=False, schema='routing', postgresql_where=sa.text("state IN ('handed_over', 'held')"))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_steps_open_due', table_name='steps', schema='routing', postgresql_where=sa.text("state IN ('handed_over', 'held')"))
    op.drop_index('ix_steps_code', table_name='steps', schema='routing')
    op.drop_index('ix_steps_agency_state', table_name='steps', schema='routing')
    op.drop_table('steps', schema='routing')
    op.drop_index('ix_handovers_code', table_name='handovers', schema='routing')
    op.drop_table('handovers', schema='routing')
    op.drop_index('ix_actions_code', table_name='actions', schema='routing')
    op.drop_table('actions', schema='routing')
    op.drop_index('ix_workflows_unit_resolved', table_name='workflows', schema='routing')
    op.drop_index('ix_workflows_unit_received', table_name='workflows', schema='routing')
    op.drop_index('ix_workflows_running_due', table_name='workflows', schema='routing', postgresql_where=sa.text("state = 'running'"))
    op.drop_table('workflows', schema='routing')
    op.drop_table('processed_events', schema='routing')
    op.drop_index('ix_outbox_pending', table_name='outbox', schema='routing', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox', schema='routing')
