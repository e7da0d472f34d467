"""The fees' books, in the ``fees`` schema. Money is integer VND; nothing is ever deleted."""
from sqlalchemy import (BigInteger, Boolean, Column, Date, DateTime, ForeignKey, Identity, Index, Integer, Table,
                        Text, UniqueConstraint)
from sqlalchemy.dialects.postgresql import JSONB

from motcua.runtime.catalogue import catalogue_tables
from motcua.runtime.audit import audit_table
from motcua.runtime.db import service_metadata
from motcua.runtime.idempotency import idempotency_table
from motcua.runtime.inbox import inbox_table
from motcua.runtime.outbox import outbox_table

metadata = service_metadata("fees")

# One account per received dossier: what it owes, what was paid and refunded.
accounts = Table(
    "accounts", metadata,
    Column("code", Text, primary_key=True),
    Column("unit", Text, nullable=False),                  # the receiving desk: where money is collected
    Column("procedure_code", Text, nullable=False),
    Column("procedure_version", Integer, nullable=False),
    Column("procedure_name", Text, nullable=False),
    Column("payer", Text, nullable=False),                 # the applicant's name, printed on receipts
    Column("charged", BigInteger, nullable=False, server_default="0"),
    Column("paid", BigInteger, nullable=False, server_default="0"),
    Column("refunded", BigInteger, nullable=False, server_default="0"),
    Column("settled_at", DateTime(timezone=True)),         # balance reached zero (last time)
    Column("processing_started", Boolean, nullable=False, server_default="false"),
    Column("closed_reason", Text),                         # refused / withdrawn
    Column("opened_at", DateTime(timezone=True), nullable=False),
)
Index("ix_accounts_unit", accounts.c.unit, accounts.c.opened_at)

charges = Table(
    "charges", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("code", Text, ForeignKey("fees.accounts.code"), nullable=False),
    Column("item_id", Text, nullable=False),
    Column("type", Text, nullable=False),                  # phi | le_phi
    Column("name", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("detail", Text, nullable=False),
    Column("origin", Text, nullable=False),                # receipt | obligation
    Column("charged_at", DateTime(timezone=True), nullable=False),
)
Index("ix_charges_code", charges.c.code)

payments = Table(
    "payments", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("code", Text, ForeignKey("fees.accounts.code"), nullable=False),
    Column("unit", Text, nullable=False),
    Column("method", Text, nullable=False),                # cash | transfer | online
    Column("reference", Text, nullable=False),             # bank or gateway reference; cash: a request id
    Column("amount", BigInteger, nullable=False),
    Column("official", Text),
    Column("paid_at", DateTime(timezone=True), nullable=False),
    Column("receipt_year", Integer, nullable=False),
    Column("receipt_number", Integer, nullable=False),
    Column("cancelled_at", DateTime(timezone=True)),
    UniqueConstraint("method", "reference", name="uq_payments_method_reference"),   # idempotency
)
Index("ix_payments_unit_paid", payments.c.unit, payments.c.paid_at)
Index("ix_payments_code", payments.c.code)

refunds = Table(
    "refunds", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("code", Text, ForeignKey("fees.accounts.code"), nullable=False),
    Column("unit", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("method", Text, nullable=False),                # how the money goes back: cash | transfer
    Column("refunded_at", DateTime(timezone=True), nullable=False),
    Column("receipt_year", Integer, nullable=False),
    Column("receipt_number", Integer, nullable=False),
    Column("for_receipt", Text, nullable=False),           # the payment receipt(s) refunded
)

# Biên lai: numbered per desk per year with no gaps; a cancelled receipt keeps its number.
receipts = Table(
    "receipts", metadata,
    Column("unit", Text, primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("code", Text, nullable=False),
    Column("kind", Text, nullable=False),                  # payment | refund
    Column("amount", BigInteger, nullable=False),
    Column("method", Text, nullable=False),
    Column("official", Text),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("lines", JSONB, nullable=False),                # the charges it covers, for printing
    Column("cancelled_at", DateTime(timezone=True)),
    Column("cancel_reason", Text),
    Column("cancelled_by", Text),
)
Index("ix_receipts_code", receipts.c.code)

receipt_counters = Table(
    "receipt_counters", metadata,
    Column("unit", Text, primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("last_number", Integer, nullable=False),
)

# Every gateway callback, accepted or not: rejected ones are evidence.
callbacks = Table(
    "gateway_callbacks", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("params", JSONB, nullable=False),
    Column("accepted", Boolean, nullable=False),
    Column("reason", Text),
)

cash_closings = Table(
    "cash_closings", metadata,
    Column("unit", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("expected", BigInteger, nullable=False),
    Column("declared", BigInteger, nullable=False),
    Column("official", Text, nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=False),
)

settlement_imports = Table(
    "settlement_imports", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("official", Text, nullable=False),
    Column("lines", Integer, nullable=False),
    Column("result", JSONB, nullable=False),
)

outbox = outbox_table(metadata)
processed_events = inbox_table(metadata)
# HTTP writes: their idempotency keys with the answers given, and their hash-chained audit log.
idempotency_keys = idempotency_table(metadata)
audit_log = audit_table(metadata)
catalogue_procedures, catalogue_units = catalogue_tables(metadata)
