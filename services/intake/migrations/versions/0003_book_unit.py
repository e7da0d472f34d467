"""the desk whose tracking book holds a dossier's line

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 06:30:00.000000

intake.dossiers.book_unit: the unit whose book (Mẫu 06) holds the line, the receiving desk, for good;
a reorganisation moves a dossier to its successor (``unit``) but not its line in the old book. The
book's unique index moves from ``unit`` to ``book_unit``.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("dossiers", sa.Column("book_unit", sa.Text()), schema="intake")
    op.execute("UPDATE intake.dossiers SET book_unit = unit WHERE book_line IS NOT NULL")
    op.drop_index("ix_dossiers_book", table_name="dossiers", schema="intake")
    op.create_index("ix_dossiers_book", "dossiers", ["book_unit", "book_year", "book_line"], unique=True,
                    schema="intake")


def downgrade() -> None:
    op.drop_index("ix_dossiers_book", table_name="dossiers", schema="intake")
    op.create_index("ix_dossiers_book", "dossiers", ["unit", "book_year", "book_line"], unique=True,
                    schema="intake")
    op.drop_column("dossiers", "book_unit", schema="intake")
