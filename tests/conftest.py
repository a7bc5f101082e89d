"""Shared fixtures: a real Mosquitto, fresh databases, gpiozero's mock pin factory."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import postgres_url, throwaway_postgres_database
from tests.support.mosquitto import MOSQUITTO_HINT, MosquittoBroker, find_binary


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    if find_binary("mosquitto") is None:
        pytest.skip(MOSQUITTO_HINT)
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    if not postgres_url():
        pytest.skip("set ATELIER_TEST_DATABASE_URL to run against PostgreSQL")
    with throwaway_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file brought to the newest revision per run: each test gets a copy, so the
    22 migrations run once, not before every test (a test's own migrate() is then a no-op)."""
    from hub.core.db import migrate

    path = tmp_path_factory.mktemp("template") / "hub.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _migrated_postgres() -> Iterator[str | None]:
    """The same on PostgreSQL: a migrated database each test's database is created from."""
    if not postgres_url():
        yield None
        return
    from sqlalchemy.engine import make_url

    from hub.core.db import migrate

    with throwaway_postgres_database() as url:
        migrate(url)  # its engine is disposed: a template must have no connection left
        yield make_url(url).database


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    _migrated_sqlite: Path,
    _migrated_postgres: str | None,
) -> Iterator[str]:
    """Every database test runs on SQLite, and on PostgreSQL when one is configured, on a
    database already at the newest revision (the templates are the chain run on empty databases)."""
    if request.param == "sqlite":
        shutil.copyfile(_migrated_sqlite, tmp_path / "hub.db")
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    if not postgres_url():
        pytest.skip("set ATELIER_TEST_DATABASE_URL to run against PostgreSQL")
    with throwaway_postgres_database(template=_migrated_postgres) as url:
        yield url


@pytest.fixture
def mock_factory() -> Iterator[object]:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = None


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """A command run in-process (CliRunner) sets up logging for its process: the root level and
    a handler on the stream it had. Put both back after each test, so a later test's caplog
    sees the levels it expects and no record goes to a stream pytest has closed since."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
