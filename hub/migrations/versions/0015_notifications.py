"""the notification outbox (messages written with their cause, sent by a worker) and webhooks

Revision ID: 0015_notifications
Revises: 0014_machine_setup
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015_notifications"
down_revision: str | Sequence[str] | None = "0014_machine_setup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "notification_outbox",
        sa.Column("id", _text(length=32), nullable=False),
        sa.Column("dedup_key", _text(length=200), nullable=False),
        sa.Column("channel", _text(length=20), nullable=False),
        sa.Column("recipient", _text(length=320), nullable=False),
        sa.Column("kind", _text(length=40), nullable=False),
        sa.Column("language", _text(length=5), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", _text(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", _text(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", _text(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
    )
    op.create_index(
        "ix_notification_outbox_due", "notification_outbox", ["status", "next_attempt_at"]
    )
    op.create_table(
        "notification_webhook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _text(length=80), nullable=False),
        sa.Column("url", _text(length=2000), nullable=False),
        sa.Column("secret", _text(length=100), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("personal_data", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", _text(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "notification_default",
        sa.Column("kind", _text(length=40), nullable=False),
        sa.Column("channel", _text(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "channel"),
    )
    op.create_table(
        "notification_preference",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", _text(length=40), nullable=False),
        sa.Column("channel", _text(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("user_id", "kind", "channel"),
    )


def downgrade() -> None:
    op.drop_table("notification_preference")
    op.drop_table("notification_default")
    op.drop_table("notification_webhook")
    op.drop_index("ix_notification_outbox_due", table_name="notification_outbox")
    op.drop_table("notification_outbox")
