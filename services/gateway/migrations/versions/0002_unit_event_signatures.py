"""units' events kept with the key id and Ed25519 signature they were verified with

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 06:00:00.000000

``motcua verify-handoffs`` checks them again later; NULL on the rows written before.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    for name in ("key_id", "signature"):
        op.add_column("unit_events", sa.Column(name, sa.Text()), schema="gateway")


def downgrade() -> None:
    """Downgrade schema."""
    for name in ("signature", "key_id"):
        op.drop_column("unit_events", name, schema="gateway")
