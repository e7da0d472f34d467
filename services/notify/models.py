"""Notify's tables, in the ``notify`` schema."""
from sqlalchemy import (BigInteger, Boolean, Column, Date, DateTime, Identity, Index, Integer, Table, Text,
                        func)
from sqlalchemy.dialects.postgresql import JSONB

from motcua.runtime.catalogue import catalogue_tables
from motcua.runtime.audit import audit_table
from motcua.runtime.db import service_metadata
from motcua.runtime.idempotency import idempotency_table
from motcua.runtime.inbox import inbox_table
from motcua.runtime.outbox import outbox_table
from motcua.runtime.pii import SealedColumns

metadata = service_metadata("notify")

# What notify keeps of each dossier (from intake's events): whom to tell, how, and the digest's figures.
dossiers = Table(
    "dossiers", metadata,
    Column("code", Text, primary_key=True),
    Column("unit", Text, nullable=False),
    Column("procedure", Text, nullable=False),
    Column("applicant_name", Text, nullable=False),
    Column("phone", Text),                                 # sealed (motcua/contracts/pii.py)
    Column("email", Text),
    Column("secret", Text, nullable=False),
    Column("channels", JSONB, nullable=False),             # the citizen's choice: ["sms", "email", "zalo"]
    Column("optional", Boolean, nullable=False),           # wants optional messages too
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("appointment_date", Date),
    Column("open", Boolean, nullable=False, server_default="true"),
    Column("overdue", Boolean, nullable=False, server_default="false"),
)
# The digest's three questions per unit (repository.SqlDigests.figures), each answered from an index
# in the order the digest lists its codes (index-only scans, a LIMIT reads only what it prints).
Index("ix_dossiers_digest_received", dossiers.c.unit, dossiers.c.received_at)
Index("ix_dossiers_digest_due", dossiers.c.unit, dossiers.c.appointment_date, dossiers.c.code,
      postgresql_where=dossiers.c.open)
Index("ix_dossiers_digest_overdue", dossiers.c.unit, dossiers.c.appointment_date, dossiers.c.code,
      postgresql_where=dossiers.c.open & dossiers.c.overdue)

# Every message, from queued to sent / delivered / failed. The key makes it once per
# (event, recipient, channel): a redelivered event finds its message already there.
messages = Table(
    "messages", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("code", Text),                                  # the dossier, when there is one
    Column("unit", Text),
    Column("template", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("audience", Text, nullable=False),              # citizen | official
    Column("recipient", Text, nullable=False),             # an address, sealed: never logged
    Column("subject", Text),
    Column("text", Text, nullable=False),
    Column("state", Text, nullable=False),                 # queued, sending, sent, delivered, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("provider_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
)
Index("ix_messages_due", messages.c.next_attempt_at, postgresql_where=messages.c.state.in_(["queued", "sending"]))
Index("ix_messages_code", messages.c.code, messages.c.id)

# Templates stored as data: officials edit them without a deploy (validated when saved).
templates = Table(
    "templates", metadata,
    Column("key", Text, primary_key=True),
    Column("channel", Text, primary_key=True),
    Column("subject", Text),
    Column("body", Text, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text, nullable=False, server_default="system"),
)

# One digest per unit and working day, whatever the number of replicas; one that could not be
# rendered is kept as failed, with its reason (not tried again that day).
digests = Table(
    "digests", metadata,
    Column("unit", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),     # when it was claimed
    Column("state", Text, nullable=False, server_default="queued"),  # queued | failed
    Column("reason", Text),
)

outbox = outbox_table(metadata)
processed_events = inbox_table(metadata)
# HTTP writes: their idempotency keys with the answers given, and their hash-chained audit log.
idempotency_keys = idempotency_table(metadata)
audit_log = audit_table(metadata)
catalogue_procedures, catalogue_units = catalogue_tables(metadata)

# What holds phone numbers (and every recipient), sealed: what `motcua pii rotate` seals again.
sealed = (SealedColumns("notify.dossiers", ("code",), {"phone": "phone"}),
          SealedColumns("notify.messages", ("id",), {"recipient": "recipient"}))
