"""bookings: the booking rules per machine type or machine, and the bookings and blocks

Revision ID: 0021_bookings
Revises: 0020_metered_material
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0021_bookings"
down_revision: str | Sequence[str] | None = "0020_metered_material"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "booking_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_type_id", sa.Integer(), nullable=True),
        sa.Column("machine_id", sa.Integer(), nullable=True),
        sa.Column("bookable", sa.Boolean(), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("min_minutes", sa.Integer(), nullable=False),
        sa.Column("max_minutes", sa.Integer(), nullable=False),
        sa.Column("ahead_days", sa.JSON(), nullable=False),
        sa.Column("week_hours", sa.JSON(), nullable=False),
        sa.Column("opening", sa.JSON(), nullable=False),
        sa.Column("trained_only", sa.Boolean(), nullable=False),
        sa.Column("grace_minutes", sa.Integer(), nullable=False),
        sa.Column("no_show_fee", sa.Boolean(), nullable=False),
        sa.Column("late_cancel_hours", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["machine_id"], ["machine.id"]),
        sa.ForeignKeyConstraint(["machine_type_id"], ["machine_type.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_booking_rule_machine_id", "booking_rule", ["machine_id"], unique=True)
    op.create_index(
        "ix_booking_rule_machine_type_id", "booking_rule", ["machine_type_id"], unique=True
    )
    op.create_table(
        "booking",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("kind", _text(length=10), nullable=False),
        sa.Column("status", _text(length=10), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", _text(length=200), nullable=False),
        sa.Column("created_by", _text(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", _text(length=200), nullable=True),
        sa.Column("session_id", _text(length=64), nullable=True),
        sa.Column("overrun", sa.Boolean(), nullable=False),
        sa.Column("fee_cents", sa.Integer(), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["machine_id"], ["machine.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_booking_machine_time", "booking", ["machine_id", "starts_at"])
    op.create_index("ix_booking_status_start", "booking", ["status", "starts_at"])
    op.create_index("ix_booking_member_id", "booking", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_booking_member_id", table_name="booking")
    op.drop_index("ix_booking_status_start", table_name="booking")
    op.drop_index("ix_booking_machine_time", table_name="booking")
    op.drop_table("booking")
    op.drop_index("ix_booking_rule_machine_type_id", table_name="booking_rule")
    op.drop_index("ix_booking_rule_machine_id", table_name="booking_rule")
    op.drop_table("booking_rule")
