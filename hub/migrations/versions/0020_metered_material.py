"""maintenance tasks metered in grams of filament or kWh

Revision ID: 0020_metered_material
Revises: 0019_materials

Issue 21 item 4: a maintenance task's counter may be `grams` (filament used on the machine) or
`kwh` (what its smart plug measured). PostgreSQL's enum type gets the two values; SQLite stores
the name as text.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020_metered_material"
down_revision: str | Sequence[str] | None = "0019_materials"
branch_labels: str | Sequence[str] | None = None
# The enum type is 0006's, on a branch of its own: it must exist first.
depends_on: str | Sequence[str] | None = "0006_maintenance"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute("ALTER TYPE maintenancecounter ADD VALUE IF NOT EXISTS 'GRAMS'")
            op.execute("ALTER TYPE maintenancecounter ADD VALUE IF NOT EXISTS 'KWH'")


def downgrade() -> None:
    # PostgreSQL cannot drop a value from an enum type; tasks on these counters go first.
    op.execute(
        "DELETE FROM maintenance_sign_off WHERE task_id IN"
        " (SELECT id FROM maintenance_task WHERE counter IN ('GRAMS', 'KWH'))"
    )
    op.execute("DELETE FROM maintenance_task WHERE counter IN ('GRAMS', 'KWH')")
