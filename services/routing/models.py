"""Routing's tables, in the ``routing`` schema."""
from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Column, Date, DateTime, ForeignKey, Identity, Index,
                        Integer, PrimaryKeyConstraint, Table, Text, and_, func)
from sqlalchemy.dialects.postgresql import JSONB

from motcua.runtime.catalogue import catalogue_tables
from motcua.runtime.audit import audit_table
from motcua.runtime.db import service_metadata
from motcua.runtime.idempotency import idempotency_table
from motcua.runtime.inbox import inbox_table
from motcua.runtime.outbox import outbox_table

metadata = service_metadata("routing")

# One workflow per received dossier: the copy of the dossier routing needs, and its deadline.
workflows = Table(
    "workflows", metadata,
    Column("code", Text, primary_key=True),
    Column("unit", Text, nullable=False),                  # the receiving desk
    Column("procedure_code", Text, nullable=False),
    Column("procedure_version", Integer, nullable=False),
    Column("procedure_name", Text, nullable=False),
    Column("field", Text, nullable=False),                 # lĩnh vực, for report II.06a
    Column("channel", Text, nullable=False),
    Column("time_limit", Text, nullable=False),
    Column("applicant_name", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("received_by", Text),
    Column("original_due_date", Date, nullable=False),
    Column("due_date", Date),                              # None while the clock is stopped
    Column("stage", Integer, nullable=False, server_default="0"),
    Column("state", Text, nullable=False),                 # running, processed, stopped, withdrawn
    Column("clock_stops", JSONB, nullable=False, server_default="[]"),
    Column("resolved_at", DateTime(timezone=True)),
    Column("result_class", Text),
    Column("overdue_at", DateTime(timezone=True)),         # when the breach was detected (once)
    Column("overdue_agency", Text),
    Column("apology", JSONB),                              # Mẫu 04, when given
    Column("apology_missing_at", DateTime(timezone=True)),  # flagged: overdue a working day, no apology
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_workflows_unit_received", workflows.c.unit, workflows.c.received_at)
Index("ix_workflows_unit_resolved", workflows.c.unit, workflows.c.resolved_at)
# Whole-district reports of recent periods: "resolved_at IS NULL OR resolved_at >= start".
Index("ix_workflows_resolved", workflows.c.resolved_at)
# The scheduler's scan (``SqlRepository.scan_candidates``), one partial index per predicate: each
# holds only what is still to flag, with the code (index-only scans), so a scan with nothing to do
# reads empty ranges and a burst reads index entries, not rows.
Index("ix_workflows_scan_overdue", workflows.c.due_date, postgresql_include=["code"],
      postgresql_where=and_(workflows.c.state == "running", workflows.c.overdue_at.is_(None)))
Index("ix_workflows_scan_apology", workflows.c.overdue_at, postgresql_include=["code"],
      postgresql_where=and_(workflows.c.overdue_at.is_not(None), workflows.c.apology.is_(None),
                            workflows.c.apology_missing_at.is_(None),
                            workflows.c.state.in_(["running", "processed"])))

# Report II.06a's roll-ups: what the dossiers of a (unit, field, channel) add up to over a day, a month
# and a year (``span``, starting on ``day``), kept by the repository's save in the transaction of the
# change. ``received``, ``early``, ``on_time`` and ``late`` count what happened in the span;
# ``pending_change`` and ``overdue_change`` are the changes of the pending and pending-overdue counts at
# the end of each day, so that a balance at the end of a day is their sum over every span before it
# (services/routing/reports.py: ``rollup_deltas`` says what a dossier adds, and where).
def _rollup_columns() -> list:
    """A roll-up row: its key (span, the span's first day, unit, field, channel) and its counters."""
    return [
        Column("span", Text, nullable=False),                  # day, month, year
        Column("day", Date, nullable=False),                   # the span's first day
        Column("unit", Text, nullable=False),
        Column("field", Text, nullable=False),
        Column("channel", Text, nullable=False),
        *(Column(name, Integer, nullable=False, server_default="0")
          for name in ("received", "early", "on_time", "late", "pending_change", "overdue_change")),
        CheckConstraint("span IN ('day', 'month', 'year')", name="span"),
    ]


report_rollups = Table(
    "report_rollups", metadata, *_rollup_columns(),
    PrimaryKeyConstraint("span", "day", "unit", "field", "channel"),
)
# One unit's report (the primary key serves the whole city's).
Index("ix_report_rollups_unit_span_day", report_rollups.c.unit, report_rollups.c.span, report_rollups.c.day)

# What saves add to the roll-ups, insert only: a save never waits for another's roll-up rows (the
# upsert of a busy desk's rows made every routing transaction of that desk wait for the one before
# it to commit). Folded into report_rollups every few seconds; the report reads both.
report_rollup_changes = Table(
    "report_rollup_changes", metadata,
    Column("id", BigInteger, Identity(), primary_key=True), *_rollup_columns(),
)

steps = Table(
    "steps", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("code", Text, ForeignKey("routing.workflows.code"), nullable=False),
    Column("stage", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("parallel", Boolean, nullable=False),
    Column("agency", Text, nullable=False),
    Column("days", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("handed_over_at", DateTime(timezone=True)),
    Column("handed_over_by", Text),
    Column("accepted_at", DateTime(timezone=True)),
    Column("accepted_by", Text),
    Column("completed_at", DateTime(timezone=True)),
    Column("completed_by", Text),
    Column("result", Text),
    Column("note", Text),
    Column("due_date", Date),
    Column("result_class", Text),
    Column("overdue_at", DateTime(timezone=True)),
    Column("at_risk_at", DateTime(timezone=True)),
)
Index("ix_steps_code", steps.c.code, steps.c.stage, steps.c.position, unique=True)
Index("ix_steps_scan_overdue", steps.c.due_date, postgresql_include=["code"],
      postgresql_where=and_(steps.c.state.in_(["handed_over", "held"]), steps.c.overdue_at.is_(None)))
Index("ix_steps_scan_at_risk", steps.c.due_date, postgresql_include=["code"],
      postgresql_where=and_(steps.c.state.in_(["handed_over", "held"]), steps.c.overdue_at.is_(None),
                            steps.c.at_risk_at.is_(None)))
Index("ix_steps_agency_state", steps.c.agency, steps.c.state)

# The process-control slip (Mẫu 05): one row per hand-over.
handovers = Table(
    "handovers", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("code", Text, ForeignKey("routing.workflows.code"), nullable=False),
    Column("from_agency", Text, nullable=False),
    Column("to_agency", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("giver", Text, nullable=False),
    Column("receiver", Text),                              # filled when the receiving agency accepts
    Column("step_id", BigInteger),                         # the step handed over (None: back to the desk)
    Column("result_class", Text, nullable=False),          # of the giver, against its own deadline
    Column("note", Text),
    # The giving unit's signature over the row (motcua.contracts.signing.handover_content); NULL:
    # not signed (written before signing, or no key held for the unit).
    Column("signed_by", Text),
    Column("key_id", Text),
    Column("signature", Text),
)
Index("ix_handovers_code", handovers.c.code, handovers.c.id)

# Every action with its actor, time and note.
actions = Table(
    "actions", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("code", Text, ForeignKey("routing.workflows.code"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("agency", Text),
    Column("action", Text, nullable=False),
    Column("step_id", BigInteger),
    Column("note", JSONB, nullable=False, server_default="{}"),
)
Index("ix_actions_code", actions.c.code, actions.c.id)

outbox = outbox_table(metadata)
processed_events = inbox_table(metadata)
# HTTP writes: their idempotency keys with the answers given, and their hash-chained audit log.
idempotency_keys = idempotency_table(metadata)
audit_log = audit_table(metadata)
catalogue_procedures, catalogue_units = catalogue_tables(metadata)
