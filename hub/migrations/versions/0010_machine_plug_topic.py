"""a machine's smart-plug topic, for its broker account

Revision ID: 0010_machine_plug_topic
Revises: 0009_busy_period_indexes

An agent reading a Tasmota or Shelly plug on the lab's broker needs `topic read` of the plug's
topic in its ACL; `atelier hub mqtt-credentials` writes it from this column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010_machine_plug_topic"
down_revision: str | Sequence[str] | None = "0009_busy_period_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("plug_topic", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.drop_column("plug_topic")
