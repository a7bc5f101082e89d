"""kilowatt-hours per session and busy period, from the machines' smart plugs

Revision ID: 0018_energy
Revises: 0017_run_on_billing

Issue 21 item 3: the agent shares a Tasmota or Shelly plug's energy counter out between
sessions and busy periods (`energy_kwh`), and the part of a busy period after its session
ended (`run_on_energy_kwh`, billed to that session). NULL: not metered (no plug, or rows from
before this revision).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_energy"
down_revision: str | Sequence[str] | None = "0017_run_on_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("energy_kwh", sa.Float(), nullable=True))
    with op.batch_alter_table("busy_period", schema=None) as batch_op:
        batch_op.add_column(sa.Column("energy_kwh", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("run_on_energy_kwh", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("busy_period", schema=None) as batch_op:
        batch_op.drop_column("run_on_energy_kwh")
        batch_op.drop_column("energy_kwh")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_column("energy_kwh")
