"""the applicant's ID and phone numbers sealed at rest, found by keyed digests

Revision ID: 0005_pii
Revises: 0004
Create Date: 2026-12-07 12:45:00.000000

intake.dossiers.applicant_id_number and applicant_phone hold sealed values (AES-256-GCM,
motcua/contracts/pii.py) instead of the numbers; applicant_id_digest and applicant_phone_digest
the keyed hashes a desk's search compares. Existing rows are sealed here (the keys come from the
service's configuration: PII_KEYS, PII_ACTIVE_KEY, PII_HASH_KEY). So are the sealed fields of the
events still waiting in the outbox (``dossier.received``'s applicant phone), and the answers kept
with idempotency keys (a received dossier's, with both numbers). No downgrade: the clear numbers
are not written back.
"""
from typing import Sequence, Union

from alembic import context, op
import sqlalchemy as sa

from motcua.runtime.idempotency import seal_stored_answers
from motcua.runtime.pii import SealedColumns, SealedJson, migration_keyring, reseal_json, reseal_rows

revision: str = '0005_pii'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DOSSIERS = SealedColumns("intake.dossiers", ("code",),
                         {"applicant_id_number": "id_number", "applicant_phone": "phone"},
                         {"applicant_id_digest": "applicant_id_number", "applicant_phone_digest": "applicant_phone"})


def upgrade() -> None:
    op.add_column("dossiers", sa.Column("applicant_id_digest", sa.Text()), schema="intake")
    op.add_column("dossiers", sa.Column("applicant_phone_digest", sa.Text()), schema="intake")
    connection = op.get_bind()
    has_rows = connection.execute(sa.text("SELECT EXISTS (SELECT 1 FROM intake.dossiers)")).scalar()
    has_events = connection.execute(sa.text("SELECT EXISTS (SELECT 1 FROM intake.outbox) "
                                            "OR EXISTS (SELECT 1 FROM intake.idempotency_keys)")).scalar()
    if has_rows or has_events:
        ring = migration_keyring(context.config)
        reseal_rows(connection, DOSSIERS, ring)
        reseal_json(connection, SealedJson("intake.outbox", ("seq",), "envelope"), ring)
        seal_stored_answers(connection, "intake.idempotency_keys", ring)
    op.alter_column("dossiers", "applicant_id_digest", nullable=False, schema="intake")
    op.alter_column("dossiers", "applicant_phone_digest", nullable=False, schema="intake")
    op.drop_index("ix_dossiers_applicant_id", table_name="dossiers", schema="intake")
    op.create_index("ix_dossiers_applicant_id", "dossiers", ["applicant_id_digest"], schema="intake")
    op.create_index("ix_dossiers_applicant_phone", "dossiers", ["applicant_phone_digest"], schema="intake")


def downgrade() -> None:
    raise NotImplementedError("the clear ID and phone numbers are not written back")
