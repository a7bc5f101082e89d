"""the lab's name, address and opening hours, set in the web (one row)

Revision ID: 0016_lab_settings
Revises: 0015_notifications
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016_lab_settings"
down_revision: str | Sequence[str] | None = "0015_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "lab_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _text(length=120), nullable=False),
        sa.Column("address", _text(length=500), nullable=False),
        sa.Column("opening_hours", _text(length=500), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", _text(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("lab_settings")
