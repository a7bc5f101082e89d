"""the lab's settings (legal identity, locale), the yearly document counter, members' language,
the record of outside lines imported (HelloAsso)

Revision ID: 0022_association
Revises: 0021_bookings

Existing statements keep the numbers they were given; new ones are numbered per year from 1.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0022_association"
down_revision: str | Sequence[str] | None = "0021_bookings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "lab_setting",
        sa.Column("key", _text(length=40), nullable=False),
        sa.Column("value", _text(length=2000), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", _text(length=100), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "document_counter",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year"),
    )
    op.create_table(
        "import_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", _text(length=20), nullable=False),
        sa.Column("kind", _text(length=20), nullable=False),
        sa.Column("key", _text(length=400), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("cents", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", _text(length=100), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "kind", "key"),
    )
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", _text(length=5), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_column("language")
    op.drop_table("import_record")
    op.drop_table("document_counter")
    op.drop_table("lab_setting")
