"""a unit's office hours

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 06:10:00.000000

catalog.units.office_hours: the periods of a working day ("07:30-11:30, 13:00-17:00") in which
the unit's remaining time is counted; NULL for the default hours.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("units", sa.Column("office_hours", sa.Text()), schema="catalog")


def downgrade() -> None:
    op.drop_column("units", "office_hours", schema="catalog")
