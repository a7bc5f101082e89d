"""Alembic environment: the hub's SQLModel metadata, SQLite (batch mode) or PostgreSQL."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import hub.billing_store  # noqa: F401  (billing tables)
import hub.maintenance_store  # noqa: F401  (maintenance tables)
import hub.models  # noqa: F401  (registers the tables)
import hub.notification_models  # noqa: F401  (the notification outbox)
from hub.core.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
