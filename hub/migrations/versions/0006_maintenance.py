"""maintenance tasks, sign-offs, incidents and downtime

Revision ID: 0006_maintenance
Revises: 0004_audit
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006_maintenance"
down_revision: str | Sequence[str] | None = "0004_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _str(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("source", _str(20), nullable=False),
        sa.Column("kind", _str(40), nullable=False),
        sa.Column("reported_by_ref", _str(20), nullable=True),
        sa.Column("reported_by", _str(100), nullable=False),
        sa.Column("text", _str(2000), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("closed_by", _str(100), nullable=True),
        sa.Column("resolution", _str(2000), nullable=False),
        sa.ForeignKeyConstraint(["machine_id"], ["machine.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_machine_id"), ["machine_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_incident_opened_at"), ["opened_at"], unique=False)

    op.create_table(
        "maintenance_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", _str(200), nullable=False),
        sa.Column("description", _str(2000), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=True),
        sa.Column("machine_type_id", sa.Integer(), nullable=True),
        sa.Column(
            "counter",
            sa.Enum("BUSY", "SESSION", "PRINT", name="maintenancecounter"),
            nullable=False,
        ),
        sa.Column("every_hours", sa.Float(), nullable=True),
        sa.Column("every_days", sa.Integer(), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["machine_id"], ["machine.id"]),
        sa.ForeignKeyConstraint(["machine_type_id"], ["machine_type.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("maintenance_task", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_maintenance_task_machine_id"), ["machine_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_maintenance_task_machine_type_id"), ["machine_type_id"], unique=False
        )

    op.create_table(
        "downtime",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column(
            "cause",
            sa.Enum("MAINTENANCE", "INCIDENT", "MANUAL", name="downtimecause"),
            nullable=False,
        ),
        sa.Column("reason", _str(500), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.ForeignKeyConstraint(["machine_id"], ["machine.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("downtime", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_downtime_machine_id"), ["machine_id"], unique=False)

    op.create_table(
        "maintenance_sign_off",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("signed_at", TS, nullable=False),
        sa.Column("counter_hours", sa.Float(), nullable=False),
        sa.Column("note", _str(2000), nullable=False),
        sa.ForeignKeyConstraint(["machine_id"], ["machine.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["maintenance_task.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("maintenance_sign_off", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sign_off_task_machine", ["task_id", "machine_id", "signed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("maintenance_sign_off", schema=None) as batch_op:
        batch_op.drop_index("ix_sign_off_task_machine")
    op.drop_table("maintenance_sign_off")
    with op.batch_alter_table("downtime", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_downtime_machine_id"))
    op.drop_table("downtime")
    with op.batch_alter_table("maintenance_task", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_maintenance_task_machine_type_id"))
        batch_op.drop_index(batch_op.f("ix_maintenance_task_machine_id"))
    op.drop_table("maintenance_task")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_opened_at"))
        batch_op.drop_index(batch_op.f("ix_incident_machine_id"))
    op.drop_table("incident")
    # PostgreSQL keeps enum types after their tables; SQLite has none to drop.
    sa.Enum(name="downtimecause").drop(op.get_bind(), checkfirst=True)
    sa.Enum(name="maintenancecounter").drop(op.get_bind(), checkfirst=True)
