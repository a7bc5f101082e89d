"""allow-list versions are BIGINT: the hub issues them from the time of issue in ms

Revision ID: 0013_list_versions
Revises: 0012_ingest_limits

A list version is never below its issue time in milliseconds since the epoch, so a database
restored from a backup cannot sign lists older than those the agents already hold (see
hub/allowlist.py). That is about 1.8e12 today, beyond PostgreSQL's 32-bit INTEGER. The stored
counters are kept: the next list of each machine jumps to the time of issue.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_list_versions"
down_revision: str | Sequence[str] | None = "0012_ingest_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.alter_column(
            "acl_version",
            existing_type=sa.Integer(),
            type_=sa.BigInteger(),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.alter_column(
            "acl_version",
            existing_type=sa.BigInteger(),
            type_=sa.Integer(),
            existing_nullable=False,
        )
