"""busy periods indexed by start and session

Revision ID: 0009_busy_period_indexes
Revises: 0008_retention

The month close and the statistics read a period's busy time; without these they scanned
every busy period of the year.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_busy_period_indexes"
down_revision: str | Sequence[str] | None = "0008_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("busy_period", schema=None) as batch_op:
        batch_op.create_index("ix_busy_period_started_at", ["started_at"], unique=False)
        batch_op.create_index("ix_busy_period_session_id", ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("busy_period", schema=None) as batch_op:
        batch_op.drop_index("ix_busy_period_session_id")
        batch_op.drop_index("ix_busy_period_started_at")
