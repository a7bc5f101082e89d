"""a printer's OctoPrint address and key, for the setup check and the agent's config

Revision ID: 0014_machine_setup
Revises: 0013_list_versions

`atelier hub machine add` and the web's "add a machine" take a printer's OctoPrint URL and
API key, check them at once, write them into the agent's config, and the setup check asks
OctoPrint again later: the hub keeps both, and the choices the agent's config was written
with (`setup`), to give the same config again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014_machine_setup"
down_revision: str | Sequence[str] | None = "0013_list_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("octoprint_url", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "octoprint_api_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True
            )
        )
        batch_op.add_column(sa.Column("setup", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.drop_column("setup")
        batch_op.drop_column("octoprint_api_key")
        batch_op.drop_column("octoprint_url")
