"""Fresh databases for tests: a SQLite file, or a throwaway database on a PostgreSQL server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PG_ENV = "ATELIER_TEST_DATABASE_URL"


def postgres_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@contextmanager
def throwaway_postgres_database(template: str | None = None) -> Iterator[str]:
    """CREATE DATABASE on the server named by ATELIER_TEST_DATABASE_URL (a copy of `template`
    when one is named); dropped afterwards."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    base = make_url(os.environ[PG_ENV])
    name = f"atelier_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def demo_lab(url: str) -> Iterator[Any]:
    """A migrated database at `url` holding the demo lab (site "lab"), as an engine."""
    from sqlmodel import Session

    from hub.core.db import make_engine, migrate
    from hub.demo.seed import seed_demo

    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        session.commit()
    yield engine
    engine.dispose()
