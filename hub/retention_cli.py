"""`atelier hub retention`: how long telemetry, events and dead letters are kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from hub.audit import cli_actor, record

retention_app = typer.Typer(
    no_args_is_help=True, help="Retention: how long telemetry, events and dead letters stay."
)
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]


def _show(rules: dict[str, float | None]) -> None:
    for kind, days in rules.items():
        typer.echo(f"{kind}\t{'kept for good' if days is None else f'{days:g} days'}")


@retention_app.command("show")
def show(config: ConfigOpt = None) -> None:
    """The days each kind is kept."""
    from sqlmodel import Session

    from hub.cli import load_settings
    from hub.core.db import make_engine, migrate
    from hub.retention import policy

    settings = load_settings(config)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        _show(policy(session, settings))
    engine.dispose()


@retention_app.command("set")
def set_days(
    kind: Annotated[str, typer.Argument(help="telemetry, events or dead_letters")],
    days: Annotated[str, typer.Argument(help="a number of days, or 'forever'")],
    config: ConfigOpt = None,
) -> None:
    """Keep this kind so many days (applied at the next hourly purge, or `apply`)."""
    from sqlmodel import Session

    from hub.cli import load_settings
    from hub.core.db import make_engine, migrate
    from hub.retention import RetentionError, policy, set_rule

    if days == "forever":
        value: float | None = None
    else:
        try:
            value = float(days)
        except ValueError:
            typer.echo(f"DAYS {days!r}: give a number of days, e.g. 365, or 'forever'", err=True)
            raise typer.Exit(2) from None
    settings = load_settings(config)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            try:
                set_rule(session, kind, value)
            except RetentionError as exc:
                typer.echo(str(exc), err=True)
                raise typer.Exit(2) from None
            record(
                session,
                actor=cli_actor(),
                action="retention.change",
                entity="retention",
                entity_id="policy",
                **{kind: value},
            )
            session.commit()
            _show(policy(session, settings))
    finally:
        engine.dispose()


@retention_app.command("apply")
def apply_now(config: ConfigOpt = None) -> None:
    """Purge now what is past retention (the hub does it every hour)."""
    from hub.cli import load_settings
    from hub.core.db import make_engine, migrate
    from hub.retention import purge

    settings = load_settings(config)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        counts = purge(engine, settings, now=datetime.now(UTC))
    finally:
        engine.dispose()
    telemetry = counts["telemetry"]
    typer.echo(
        f"telemetry: {telemetry['downsampled']} raw sample(s) merged, {telemetry['aged_out']} "
        f"removed; events: {counts['events']} removed; dead letters: {counts['dead_letters']} "
        "removed"
    )
