"""`atelier hub retention`: how long telemetry, events and dead letters are kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from hub.audit import cli_actor
from hub.cli.support import database, fail, refusals

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

    from hub.services.retention import policy

    with database(config) as (settings, engine), Session(engine) as session:
        _show(policy(session, settings))


@retention_app.command("set")
def set_days(
    kind: Annotated[
        str,
        typer.Argument(help="telemetry, events, dead_letters, badge_events or sessions"),
    ],
    days: Annotated[str, typer.Argument(help="a number of days, or 'forever'")],
    config: ConfigOpt = None,
) -> None:
    """Keep this kind so many days (applied at the next hourly purge, or `apply`)."""
    from sqlmodel import Session

    from hub.services.retention import KINDS, change_policy

    if days == "forever":
        value: float | None = None
    else:
        try:
            value = float(days)
        except ValueError:
            raise fail(f"DAYS {days!r}: give a number of days, e.g. 365, or 'forever'") from None
    with database(config) as (settings, engine), Session(engine) as session:
        # The kind and the days are the command's two arguments, whichever kind is refused.
        with refusals(kind="KIND", **{k: "DAYS" for k in KINDS}):
            rules = change_policy(
                session, settings=settings, changes={kind: value}, actor=cli_actor()
            )
        _show(rules)


@retention_app.command("apply")
def apply_now(config: ConfigOpt = None) -> None:
    """Purge now what is past retention (the hub does it every hour)."""
    from hub.services.retention import purge

    with database(config) as (settings, engine):
        counts = purge(engine, settings, now=datetime.now(UTC))
    telemetry = counts["telemetry"]
    typer.echo(
        f"telemetry: {telemetry['downsampled']} raw sample(s) merged, {telemetry['aged_out']} "
        f"removed; events: {counts['events']} removed; dead letters: {counts['dead_letters']} "
        f"removed; badge reads and refusals: {counts['badge_events']} removed; billed sessions: "
        f"{counts['sessions']} pseudonymised"
    )
