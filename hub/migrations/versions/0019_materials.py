"""materials, their prices per category, spools, what each session used, a session's spool

Revision ID: 0019_materials
Revises: 0018_energy

Issue 21 items 1, 2 and 6: a catalogue of materials priced per kilogram, metre, sheet or unit
(and per member category where the lab wants), spools with an NFC tag or a printed code, what
is left on them and where they are; the material each session used (grams counted from a
print, sheets recorded at the machine or on the web), which is also each spool's history.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.models.base

revision: str = "0019_materials"
down_revision: str | Sequence[str] | None = "0018_energy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "material",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", _S(length=63), nullable=False),
        sa.Column("name", _S(length=200), nullable=False),
        sa.Column("kind", _S(length=60), nullable=False),
        sa.Column(
            "unit",
            sa.Enum("GRAM", "METRE", "SHEET", "UNIT", name="materialunit"),
            nullable=False,
        ),
        sa.Column("cents_per_price_unit", sa.Integer(), nullable=False),
        sa.Column("diameter_mm", sa.Float(), nullable=True),
        sa.Column("density_g_cm3", sa.Float(), nullable=True),
        sa.Column("created_at", hub.models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_material_code"), "material", ["code"], unique=True)
    op.create_table(
        "material_price",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("category", _S(length=20), nullable=False),
        sa.Column("cents_per_price_unit", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["material_id"], ["material.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("material_id", "category"),
    )
    op.create_index(
        op.f("ix_material_price_material_id"), "material_price", ["material_id"], unique=False
    )
    op.create_table(
        "spool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("code", _S(length=63), nullable=False),
        sa.Column("tag", _S(length=20), nullable=True),
        sa.Column("initial_g", sa.Float(), nullable=False),
        sa.Column("remaining_g", sa.Float(), nullable=False),
        sa.Column("location", _S(length=200), nullable=False),
        sa.Column("low_g", sa.Float(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("created_at", hub.models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["material_id"], ["material.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tag"),
    )
    op.create_index(op.f("ix_spool_code"), "spool", ["code"], unique=True)
    op.create_index(op.f("ix_spool_material_id"), "spool", ["material_id"], unique=False)
    op.create_table(
        "material_use",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", _S(length=64), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("spool_id", sa.Integer(), nullable=True),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("source", _S(length=20), nullable=False),
        sa.Column("job_id", _S(length=100), nullable=True),
        sa.Column("recorded_by", _S(length=100), nullable=False),
        sa.Column("recorded_at", hub.models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["material_id"], ["material.id"]),
        sa.ForeignKeyConstraint(["spool_id"], ["spool.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("session_id", "material_id", "spool_id", "recorded_at"):
        op.create_index(op.f(f"ix_material_use_{column}"), "material_use", [column], unique=False)
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spool_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_session_spool_id_spool", "spool", ["spool_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_constraint("fk_session_spool_id_spool", type_="foreignkey")
        batch_op.drop_column("spool_id")
    for column in ("recorded_at", "spool_id", "material_id", "session_id"):
        op.drop_index(op.f(f"ix_material_use_{column}"), table_name="material_use")
    op.drop_table("material_use")
    op.drop_index(op.f("ix_spool_material_id"), table_name="spool")
    op.drop_index(op.f("ix_spool_code"), table_name="spool")
    op.drop_table("spool")
    op.drop_index(op.f("ix_material_price_material_id"), table_name="material_price")
    op.drop_table("material_price")
    op.drop_index(op.f("ix_material_code"), table_name="material")
    op.drop_table("material")
    if op.get_bind().dialect.name == "postgresql":
        sa.Enum(name="materialunit").drop(op.get_bind(), checkfirst=True)
