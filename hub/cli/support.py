"""What every `atelier hub` command needs: the settings, a migrated database, a clear exit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.engine import Engine

from hub.core.errors import HubError, describe


def load_settings(config: Path | None) -> Any:
    """The hub's settings, or every problem with them listed and exit code 2."""
    from hub.core.settings import SettingsError, get_settings

    try:
        return get_settings(config)
    except SettingsError as exc:
        typer.echo("hub settings are not valid:", err=True)
        for error in exc.errors:
            typer.echo(f"  - {error}", err=True)
        raise typer.Exit(2) from None


def fail(message: str) -> typer.Exit:
    """A person's mistake: the message on stderr, exit code 2 (raise what this returns)."""
    typer.echo(message, err=True)
    return typer.Exit(2)


def flag_for(field: str, flags: Mapping[str, str] | None = None) -> str:
    """The command-line name of a service's field: `by` is `--by`, unless `flags` says
    otherwise (a positional argument such as TASK)."""
    if flags and field in flags:
        return flags[field]
    return "--" + field.replace("_", "-")


def refusal(error: HubError, flags: Mapping[str, str] | None = None) -> typer.Exit:
    """A service's HubError for a person: the flag at fault, the message, exit code 2."""
    message = describe(error)
    if error.field is not None:
        message = f"{flag_for(error.field, flags)}: {message}"
    return fail(message)


@contextmanager
def refusals(**flags: str) -> Iterator[None]:
    """Turns a HubError raised inside into `refusal(...)`: `with refusals(task_id="TASK"):`."""
    try:
        yield
    except HubError as error:
        raise refusal(error, flags) from None


@contextmanager
def database(config: Path | None) -> Iterator[tuple[Any, Engine]]:
    """(settings, engine) with the schema brought up to date; the engine closed after."""
    from hub.core.db import make_engine, migrate

    settings = load_settings(config)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        yield settings, engine
    finally:
        engine.dispose()
