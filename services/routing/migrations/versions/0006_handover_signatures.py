"""hand-overs signed by the giving unit's key: the unit, the key id and the Ed25519 signature

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 06:00:00.000000

Kept beside the row they sign (``motcua verify-handoffs`` checks them later); NULL on the rows
written before, and on those of a unit whose key the platform does not hold.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    for name in ("signed_by", "key_id", "signature"):
        op.add_column("handovers", sa.Column(name, sa.Text()), schema="routing")


def downgrade() -> None:
    """Downgrade schema."""
    for name in ("signature", "key_id", "signed_by"):
        op.drop_column("handovers", name, schema="routing")
