"""units dissolved by a reorganisation

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 06:05:00.000000

catalog.units.dissolved_on and successor: set by ``motcua reorganise apply`` (a merger of units on a
date); NULL for a unit that receives.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("units", sa.Column("dissolved_on", sa.Date()), schema="catalog")
    op.add_column("units", sa.Column("successor", sa.Text()), schema="catalog")


def downgrade() -> None:
    op.drop_column("units", "successor", schema="catalog")
    op.drop_column("units", "dissolved_on", schema="catalog")
