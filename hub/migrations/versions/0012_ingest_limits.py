"""the ingest's limits: 64-bit sequence numbers, dead letters with their size and hash

Revision ID: 0012_ingest_limits
Revises: 0011_member_category_history

The protocol accepts a seq up to protocol.limits.SEQ_MAX (64 bits): event.seq and
agent_seq.max_seq/seen become BIGINT (on PostgreSQL a wider seq was refused and its batch
retried for ever; SQLite's INTEGER already holds 64 bits, its tables are left as they are).
A dead letter now keeps its payload's full size and sha256 beside the first
DEAD_LETTER_PAYLOAD_BYTES of it; older rows get their size, no hash, and keep their payload
until retention removes them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012_ingest_limits"
down_revision: str | Sequence[str] | None = "0011_member_category_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WIDENED = (("event", "seq"), ("agent_seq", "max_seq"), ("agent_seq", "seen"))


def upgrade() -> None:
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.add_column(sa.Column("size", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
    op.execute("UPDATE dead_letter SET size = length(payload)")
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.alter_column("size", server_default=None)
    if op.get_bind().dialect.name == "postgresql":
        for table, column in _WIDENED:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in _WIDENED:
            op.alter_column(table, column, type_=sa.Integer(), existing_nullable=False)
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.drop_column("sha256")
        batch_op.drop_column("size")
