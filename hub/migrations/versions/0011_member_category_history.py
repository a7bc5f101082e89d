"""a member's category changes, each effective from a lab-local day, for billing

Revision ID: 0011_member_category_history
Revises: 0010_machine_plug_topic

Nothing is backfilled: a member without changes is billed in their current category.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011_member_category_history"
down_revision: str | Sequence[str] | None = "0010_machine_plug_topic"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "member_category_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("category", _text(length=20), nullable=False),
        sa.Column("previous_category", _text(length=20), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", _text(length=100), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("member_category_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_member_category_change_member_id"), ["member_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("member_category_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_category_change_member_id"))
    op.drop_table("member_category_change")
