"""`atelier hub display`: the read-only tokens that open the wall display on a kiosk screen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import typer

from hub.audit import cli_actor
from hub.cli.support import database, refusals

display_app = typer.Typer(
    no_args_is_help=True, help="Wall displays: kiosk addresses that show the machines live."
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]


@display_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="which screen it is for, e.g. 'hall screen'")],
    group: Annotated[
        str, typer.Option(help="group the cards by location (room or area), type, or none")
    ] = "location",
    machine_type: Annotated[
        str, typer.Option("--type", help="show only this machine type (its code)")
    ] = "",
    hub_url: Annotated[
        str, typer.Option(help="the hub's address as the screen reaches it")
    ] = "https://atelier.example.org",
    config: ConfigOpt = None,
) -> None:
    """Make a display token and print the kiosk address, once: the hub keeps only its hash."""
    from sqlmodel import Session

    from hub.services.displays import create_display, wall_options

    with database(config) as (_, engine), Session(engine) as session:
        with refusals(name="NAME", group="--group", type="--type"):
            grouping, code = wall_options(session, grouping=group, machine_type=machine_type)
            secret, display = create_display(session, name=name, actor=cli_actor())
        session.commit()
        query = {"group": grouping} if grouping != "location" else {}
        if code:
            query["type"] = code
        suffix = f"?{urlencode(query)}" if query else ""
        typer.echo(f"display {display.id} ({display.name}) created; open on the screen:")
        typer.echo(f"{hub_url.rstrip('/')}/wall/{secret}{suffix}")


@display_app.command("list")
def list_displays(config: ConfigOpt = None) -> None:
    """Every display token: number, prefix, name, state, last seen; never the secrets."""
    from sqlmodel import Session

    from hub.services.displays import list_displays

    with database(config) as (_, engine), Session(engine) as session:
        for d in list_displays(session):
            state = f"revoked {d.revoked_at:%Y-%m-%d %H:%M}Z" if d.revoked_at else "live"
            seen = f"{d.last_used_at:%Y-%m-%d %H:%M}Z" if d.last_used_at else "never seen"
            typer.echo(f"{d.id}\t{d.prefix}\t{d.name}\t{state}\t{seen}")


@display_app.command("revoke")
def revoke(
    display: Annotated[
        str, typer.Argument(help="its number or the start of its secret, as `list` shows")
    ],
    config: ConfigOpt = None,
) -> None:
    """Revoke a display token: its screen is refused within seconds."""
    from sqlmodel import Session

    from hub.services.displays import revoke_display

    with database(config) as (_, engine), Session(engine) as session:
        with refusals(display="DISPLAY"):
            row = revoke_display(session, display=display, actor=cli_actor())
        session.commit()
        typer.echo(f"display {row.id} ({row.name}) revoked")
