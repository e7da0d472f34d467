"""the citizens' phone numbers and every recipient sealed at rest

Revision ID: 0005_pii
Revises: 0004
Create Date: 2026-12-07 12:50:00.000000

notify.dossiers.phone (the applicant's, for SMS and Zalo) and notify.messages.recipient (a phone
number, an e-mail address or a webhook) hold sealed values (AES-256-GCM, motcua/contracts/pii.py).
Existing rows are sealed here with the service's keys (PII_KEYS, PII_ACTIVE_KEY, PII_HASH_KEY).
So are the answers kept with idempotency keys. notify's outbox carries no personal numbers
(notify.delivered / notify.failed name the message).
No downgrade: the clear values are not written back.
"""
from typing import Sequence, Union

from alembic import context, op
import sqlalchemy as sa

from motcua.runtime.idempotency import seal_stored_answers
from motcua.runtime.pii import SealedColumns, migration_keyring, reseal_rows

revision: str = '0005_pii'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DOSSIERS = SealedColumns("notify.dossiers", ("code",), {"phone": "phone"})
MESSAGES = SealedColumns("notify.messages", ("id",), {"recipient": "recipient"})


def upgrade() -> None:
    connection = op.get_bind()
    if connection.execute(sa.text("SELECT EXISTS (SELECT 1 FROM notify.dossiers) "
                                  "OR EXISTS (SELECT 1 FROM notify.messages) "
                                  "OR EXISTS (SELECT 1 FROM notify.idempotency_keys)")).scalar():
        ring = migration_keyring(context.config)
        reseal_rows(connection, DOSSIERS, ring)
        reseal_rows(connection, MESSAGES, ring)
        seal_stored_answers(connection, "notify.idempotency_keys", ring)


def downgrade() -> None:
    raise NotImplementedError("the clear phone numbers and recipients are not written back")
