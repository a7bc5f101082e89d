"""What every `atelier hub` command needs: the settings, a migrated database, a clear exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.engine import Engine


def fail(message: str) -> typer.Exit:
    """A person's mistake: the message on stderr, exit code 2 (raise what this returns)."""
    typer.echo(message, err=True)
    return typer.Exit(2)


@contextmanager
def database(config: Path | None) -> Iterator[tuple[Any, Engine]]:
    """(settings, engine) with the schema brought up to date; the engine closed after."""
    from hub.cli import load_settings
    from hub.core.db import make_engine, migrate

    settings = load_settings(config)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        yield settings, engine
    finally:
        engine.dispose()
