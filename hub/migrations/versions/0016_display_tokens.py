"""wall displays: the revocable read-only tokens a kiosk screen opens the live board with

Revision ID: 0016_display_tokens
Revises: 0015_notifications
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016_display_tokens"
down_revision: str | Sequence[str] | None = "0015_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "display_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _text(length=100), nullable=False),
        sa.Column("token_hash", _text(length=64), nullable=False),
        sa.Column("prefix", _text(length=12), nullable=False),
        sa.Column("created_by", _text(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_display_token_token_hash", "display_token", ["token_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_display_token_token_hash", table_name="display_token")
    op.drop_table("display_token")
