"""The migrations build exactly the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import hub.billing_store  # noqa: F401  (registers the billing tables)
import hub.maintenance_store  # noqa: F401  (registers the maintenance tables)
import hub.models  # noqa: F401
import hub.notification_models  # noqa: F401  (registers the notification outbox)
from hub.core.db import make_engine, migrate


def test_models_and_migrations_agree(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)  # idempotent: a second start changes nothing
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            drift = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    finally:
        engine.dispose()
    assert drift == [], f"a model changed without its migration: {drift}"
