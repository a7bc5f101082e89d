"""a job's end reason, and how a machine type bills a job ended by the printer going offline

Revision ID: 0017_run_on_billing
Revises: 0016_display_tokens

Issue 21 item 5: a print job records why it ended (`printer-offline` is no longer taken for
`cancelled`) and how long it was seen printing; each machine type says how such a job is
billed on a busy-time rate (`whole`, `until-offline`, `free`; `whole` for every existing type,
which is what they were billed before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017_run_on_billing"
down_revision: str | Sequence[str] | None = "0016_display_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("print_job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("end_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
        )
        batch_op.add_column(sa.Column("printing_seen_s", sa.Float(), nullable=True))
    with op.batch_alter_table("machine_type", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "offline_jobs",
                sqlmodel.sql.sqltypes.AutoString(length=20),
                nullable=False,
                server_default="whole",
            )
        )
    with op.batch_alter_table("machine_type", schema=None) as batch_op:
        batch_op.alter_column("offline_jobs", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("machine_type", schema=None) as batch_op:
        batch_op.drop_column("offline_jobs")
    with op.batch_alter_table("print_job", schema=None) as batch_op:
        batch_op.drop_column("printing_seen_s")
        batch_op.drop_column("end_reason")
