"""The desk's tables, in the ``intake`` schema."""
from sqlalchemy import (BigInteger, Boolean, Column, Date, DateTime, ForeignKey, Identity, Index, Integer,
                        SmallInteger, Table, Text, func)
from sqlalchemy.dialects.postgresql import JSONB

from motcua.contracts.codes import code_counter_table
from motcua.contracts.pii import ID_NUMBER, PHONE
from motcua.runtime.catalogue import catalogue_tables
from motcua.runtime.audit import audit_table
from motcua.runtime.db import service_metadata
from motcua.runtime.idempotency import idempotency_table
from motcua.runtime.inbox import inbox_table
from motcua.runtime.outbox import outbox_table
from motcua.runtime.pii import SealedColumns, SealedJson

metadata = service_metadata("intake")

dossiers = Table(
    "dossiers", metadata,
    Column("code", Text, primary_key=True),
    Column("unit", Text, nullable=False),                      # the receiving desk
    Column("status", SmallInteger, nullable=False),            # national status 1..10
    Column("channel", Text, nullable=False),
    Column("procedure_code", Text, nullable=False),
    Column("procedure_version", Integer, nullable=False),
    Column("procedure", JSONB, nullable=False),                # the pinned version, as received
    Column("handling_agency", Text, nullable=False),
    Column("applicant_name", Text, nullable=False),
    Column("applicant_key", Text, nullable=False),             # folded name, for search
    # The ID and phone numbers are sealed (motcua/contracts/pii.py, by the repository); a desk finds
    # them by their keyed digests.
    Column("applicant_id_number", Text, nullable=False),
    Column("applicant_address", Text, nullable=False),
    Column("applicant_phone", Text, nullable=False),
    Column("applicant_id_digest", Text, nullable=False),
    Column("applicant_phone_digest", Text, nullable=False),
    Column("applicant_email", Text),
    Column("documents", JSONB, nullable=False),
    Column("sets", Integer, nullable=False),
    Column("quantities", JSONB, nullable=False),               # pages and copies, for fees
    Column("fee_conditions", JSONB, nullable=False, server_default="[]"),   # exemptions that apply
    Column("notifications", JSONB, nullable=False, server_default="{}"),    # the citizen's channels
    Column("secret", Text, nullable=False),                    # printed on the receipt: status lookup
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True)),            # None while an online submission waits
    Column("received_by", Text),
    Column("appointment_date", Date),
    Column("appointment_history", JSONB, nullable=False, server_default="[]"),
    Column("clock_stops", JSONB, nullable=False, server_default="[]"),
    Column("supplement", JSONB),                               # the one request (Mẫu 02), when made
    Column("supplement_requested_at", DateTime(timezone=True)),
    Column("refusal", JSONB),                                  # Mẫu 03, when refused
    Column("book_year", Integer),
    Column("book_volume", Integer),
    Column("book_line", Integer),
    # The desk whose book holds the line (Mẫu 06): the unit that received the dossier; a
    # reorganisation moves the dossier (``unit``), never its line in the old desk's book.
    Column("book_unit", Text),
    Column("transferred_at", DateTime(timezone=True)),
    Column("processed_at", DateTime(timezone=True)),
    Column("fees_required", Boolean, nullable=False),
    Column("fees_outstanding", BigInteger, nullable=False, server_default="0"),
    Column("fees_settled", Boolean, nullable=False, server_default="false"),
    Column("fees_charged_seen", Boolean, nullable=False, server_default="false"),   # fees has charged it
    Column("returned_at", DateTime(timezone=True)),
    Column("returned_to", Text),
    Column("result_class", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_dossiers_unit_received", dossiers.c.unit, dossiers.c.received_at)
Index("ix_dossiers_unit_status", dossiers.c.unit, dossiers.c.status)
Index("ix_dossiers_unit_appointment", dossiers.c.unit, dossiers.c.appointment_date)
Index("ix_dossiers_applicant_key", dossiers.c.applicant_key)
Index("ix_dossiers_applicant_id", dossiers.c.applicant_id_digest)
Index("ix_dossiers_applicant_phone", dossiers.c.applicant_phone_digest)
Index("ix_dossiers_book", dossiers.c.book_unit, dossiers.c.book_year, dossiers.c.book_line, unique=True)

# Who did what and when, for every dossier (ISO 9001: every step recorded with actor and time).
history = Table(
    "dossier_history", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("code", Text, ForeignKey("intake.dossiers.code"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("actor_unit", Text),
    Column("action", Text, nullable=False),
    Column("status_from", SmallInteger),
    Column("status_to", SmallInteger, nullable=False),
    Column("note", JSONB, nullable=False, server_default="{}"),
)
Index("ix_dossier_history_code", history.c.code, history.c.id)

# The tracking book (Mẫu 06): lines numbered per unit per year, no gaps.
book_counters = Table(
    "tracking_book_counters", metadata,
    Column("unit", Text, primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("last_line", Integer, nullable=False),
)

code_counters = code_counter_table(metadata)
outbox = outbox_table(metadata)
processed_events = inbox_table(metadata)
# HTTP writes: their idempotency keys with the answers given, and their hash-chained audit log.
idempotency_keys = idempotency_table(metadata)
audit_log = audit_table(metadata)
catalogue_procedures, catalogue_units = catalogue_tables(metadata)

# The dossier's sealed columns (the repository seals and opens them) and their search digests.
SEALED_DOSSIERS = SealedColumns("intake.dossiers", ("code",),
                                {"applicant_id_number": ID_NUMBER, "applicant_phone": PHONE},
                                {"applicant_id_digest": "applicant_id_number", "applicant_phone_digest": "applicant_phone"})
# What holds ID or phone numbers, sealed: what `motcua pii rotate` seals again under the active key
# (dossier.received's applicant phone in the outbox).
sealed = (SEALED_DOSSIERS, SealedJson("intake.outbox", ("seq",), "envelope"))
