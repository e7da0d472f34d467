"""The catalogue's tables, in the ``catalog`` schema."""
from sqlalchemy import (ARRAY, Boolean, Column, Date, DateTime, Index, Integer, PrimaryKeyConstraint, Table,
                        Text, func)
from sqlalchemy.dialects.postgresql import JSONB

from motcua.runtime.db import service_metadata
from motcua.runtime.outbox import outbox_table

metadata = service_metadata("catalog")

units = Table(
    "units", metadata,
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("short_name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("parent", Text),
    Column("admin_code", Text),
    Column("desk", Boolean, nullable=False),
    Column("address", Text),
    Column("office_hours", Text),
    # A reorganisation's (``motcua reorganise apply``), never a catalogue load's: from this local date
    # the unit's desk no longer receives and ``successor`` holds its dossiers.
    Column("dissolved_on", Date),
    Column("successor", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every version of every procedure, never updated nor deleted: a dossier pins (code, version).
procedure_versions = Table(
    "procedure_versions", metadata,
    Column("code", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("name", Text, nullable=False),
    Column("search_key", Text, nullable=False),   # unaccented, lower case: "khai sinh" finds "khai sinh"
    Column("field", Text, nullable=False),
    Column("level", Text, nullable=False),
    Column("agencies", ARRAY(Text), nullable=False),  # handling agency and every step's agency
    Column("content", JSONB, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("code", "version"),
)
Index("ix_procedure_versions_in_force", procedure_versions.c.code, procedure_versions.c.effective_from)

outbox = outbox_table(metadata)
