"""The migrations build exactly the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.core.db import make_engine, migrate

# hub.models alone, as the migrations import it: a table it left out would show as drift.
from hub.models import metadata


def test_models_and_migrations_agree(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)  # idempotent: a second start changes nothing
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            drift = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert drift == [], f"a model changed without its migration: {drift}"
