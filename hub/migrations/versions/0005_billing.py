"""billing: rates, prepaid balances, closed months, statements and credit notes

Revision ID: 0005_billing
Revises: 0004_audit
Create Date: 2026-11-23 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_billing"
down_revision: str | Sequence[str] | None = "0004_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "billing_rate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_type", _text(length=63), nullable=False),
        sa.Column("category", _text(length=20), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("cents_per_hour", sa.Integer(), nullable=False),
        sa.Column("basis", _text(length=10), nullable=False),
        sa.Column("start_fee_cents", sa.Integer(), nullable=False),
        sa.Column("minimum_cents", sa.Integer(), nullable=False),
        sa.Column("rounding_minutes", sa.Integer(), nullable=False),
        sa.Column("daily_cap_cents", sa.Integer(), nullable=True),
        sa.Column("included_minutes_per_month", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("machine_type", "category", "effective_from"),
    )
    op.create_table(
        "billing_account",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("prepaid_only", sa.Boolean(), nullable=False),
        sa.Column("balance_cents", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.create_table(
        "billing_month",
        sa.Column("month", _text(length=7), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", _text(length=100), nullable=False),
        sa.Column("timezone", _text(length=64), nullable=False),
        sa.PrimaryKeyConstraint("month"),
    )
    op.create_table(
        "statement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", _text(length=40), nullable=False),
        sa.Column("month", _text(length=7), nullable=False),
        sa.Column("kind", _text(length=20), nullable=False),
        sa.Column("payer_ref", _text(length=20), nullable=False),
        sa.Column("payer_name", _text(length=200), nullable=False),
        sa.Column("credits_id", sa.Integer(), nullable=True),
        sa.Column("reason", _text(length=500), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=False),
        sa.Column("prepaid_cents", sa.Integer(), nullable=False),
        sa.Column("due_cents", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["credits_id"], ["statement.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    with op.batch_alter_table("statement", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_statement_month"), ["month"], unique=False)
    op.create_table(
        "statement_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("session_id", _text(length=64), nullable=False),
        sa.Column("member_ref", _text(length=20), nullable=False),
        sa.Column("machine", _text(length=63), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("billed_minutes", sa.Integer(), nullable=False),
        sa.Column("cents", sa.Integer(), nullable=False),
        sa.Column("explanation", _text(length=2000), nullable=False),
        sa.ForeignKeyConstraint(["statement_id"], ["statement.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("statement_line", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_statement_line_statement_id"), ["statement_id"], unique=False
        )
    op.create_table(
        "balance_movement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", _text(length=20), nullable=False),
        sa.Column("cents", sa.Integer(), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=True),
        sa.Column("note", _text(length=500), nullable=False),
        sa.Column("actor", _text(length=100), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.ForeignKeyConstraint(["statement_id"], ["statement.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("balance_movement", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_balance_movement_member_id"), ["member_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("balance_movement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_balance_movement_member_id"))
    op.drop_table("balance_movement")
    with op.batch_alter_table("statement_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_statement_line_statement_id"))
    op.drop_table("statement_line")
    with op.batch_alter_table("statement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_statement_month"))
    op.drop_table("statement")
    op.drop_table("billing_month")
    op.drop_table("billing_account")
    op.drop_table("billing_rate")
