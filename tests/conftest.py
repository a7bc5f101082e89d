"""Shared fixtures: a real Mosquitto, fresh databases, gpiozero's mock pin factory."""

from __future__ import annotations

import logging
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


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every database test runs on SQLite, and on PostgreSQL when one is configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    if not postgres_url():
        pytest.skip("set ATELIER_TEST_DATABASE_URL to run against PostgreSQL")
    with throwaway_postgres_database() as url:
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
