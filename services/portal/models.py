"""The portal sync's tables, in the ``portal`` schema."""
from sqlalchemy import (BigInteger, Column, DateTime, Identity, Index, Integer, SmallInteger, Table, Text,
                        UniqueConstraint, func)

from motcua.runtime.db import service_metadata
from motcua.runtime.inbox import inbox_table

metadata = service_metadata("portal")

# Every change of a dossier's national status, to be sent to the national portal: written in the
# transaction that consumes intake's dossier.status_changed (with the inbox row), sent in ``seq``
# order per dossier, kept once sent (the reconciliation compares them with what the portal holds).
sync_rows = Table(
    "sync_rows", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("code", Text, nullable=False),
    Column("seq", Integer, nullable=False),                 # the dossier's status changes, from 1
    Column("status", SmallInteger, nullable=False),         # national status 1..10
    Column("previous_status", SmallInteger),
    Column("channel", SmallInteger, nullable=False),        # national channel 1..3
    Column("unit", Text, nullable=False),                   # the receiving desk
    Column("procedure_code", Text, nullable=False),
    Column("handling_agency", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("state", Text, nullable=False, server_default="pending"),   # pending | sent
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("sent_at", DateTime(timezone=True)),
    Column("resends", Integer, nullable=False, server_default="0"),    # re-sent by a reconciliation
    Column("queued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("code", "seq"),
)
Index("ix_sync_rows_due", sync_rows.c.next_attempt_at, postgresql_where=sync_rows.c.state == "pending")
Index("ix_sync_rows_changed", sync_rows.c.changed_at)

processed_events = inbox_table(metadata)
