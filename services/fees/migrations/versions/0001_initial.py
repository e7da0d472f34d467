"""initial

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 07:19:35.806142

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
    op.create_table('accounts',
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('procedure_code', sa.Text(), nullable=False),
    sa.Column('procedure_version', sa.Integer(), nullable=False),
    sa.Column('procedure_name', sa.Text(), nullable=False),
    sa.Column('payer', sa.Text(), nullable=False),
    sa.Column('charged', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('paid', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('refunded', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('processing_started', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('closed_reason', sa.Text(), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_accounts')),
    schema='fees'
    )
    op.create_index('ix_accounts_unit', 'accounts', ['unit', 'opened_at'], unique=False, schema='fees')
    op.create_table('cash_closings',
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('expected', sa.BigInteger(), nullable=False),
    sa.Column('declared', sa.BigInteger(), nullable=False),
    sa.Column('official', sa.Text(), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('unit', 'day', name=op.f('pk_cash_closings')),
    schema='fees'
    )
    op.create_table('gateway_callbacks',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gateway_callbacks')),
    schema='fees'
    )
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
    schema='fees'
    )
    op.create_index('ix_outbox_pending', 'outbox', ['seq'], unique=False, schema='fees', postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('processed_events',
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_processed_events')),
    schema='fees'
    )
    op.create_table('receipt_counters',
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('unit', 'year', name=op.f('pk_receipt_counters')),
    schema='fees'
    )
    op.create_table('receipts',
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('official', sa.Text(), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.Column('cancelled_by', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('unit', 'year', 'number', name=op.f('pk_receipts')),
    schema='fees'
    )
    op.create_index('ix_receipts_code', 'receipts', ['code'], unique=False, schema='fees')
    op.create_table('settlement_imports',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('official', sa.Text(), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_imports')),
    schema='fees'
    )
    op.create_table('charges',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('item_id', sa.Text(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('origin', sa.Text(), nullable=False),
    sa.Column('charged_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['code'], ['fees.accounts.code'], name=op.f('fk_charges_code_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charges')),
    schema='fees'
    )
    op.create_index('ix_charges_code', 'charges', ['code'], unique=False, schema='fees')
    op.create_table('payments',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('reference', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('official', sa.Text(), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('receipt_year', sa.Integer(), nullable=False),
    sa.Column('receipt_number', sa.Integer(), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['code'], ['fees.accounts.code'], name=op.f('fk_payments_code_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('method', 'reference', name='uq_payments_method_reference'),
    schema='fees'
    )
    op.create_index('ix_payments_code', 'payments', ['code'], unique=False, schema='fees')
    op.create_index('ix_payments_unit_paid', 'payments', ['unit', 'paid_at'], unique=False, schema='fees')
    op.create_table('refunds',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('receipt_year', sa.Integer(), nullable=False),
    sa.Column('receipt_number', sa.Integer(), nullable=False),
    sa.Column('for_receipt', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['code'], ['fees.accounts.code'], name=op.f('fk_refunds_code_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    schema='fees'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('refunds', schema='fees')
    op.drop_index('ix_payments_unit_paid', table_name='payments', schema='fees')
    op.drop_index('ix_payments_code', table_name='payments', schema='fees')
    op.drop_table('payments', schema='fees')
    op.drop_index('ix_charges_code', table_name='charges', schema='fees')
    op.drop_table('charges', schema='fees')
    op.drop_table('settlement_imports', schema='fees')
    op.drop_index('ix_receipts_code', table_name='receipts', schema='fees')
    op.drop_table('receipts', schema='fees')
    op.drop_table('receipt_counters', schema='fees')
    op.drop_table('processed_events', schema='fees')
    op.drop_index('ix_outbox_pending', table_name='outbox', schema='fees', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox', schema='fees')
    op.drop_table('gateway_callbacks', schema='fees')
    op.drop_table('cash_closings', schema='fees')
    op.drop_index('ix_accounts_unit', table_name='accounts', schema='fees')
    op.drop_table('accounts', schema='fees')
