"""`atelier hub rgpd kit`: the notice, the members' information text and the record of
processing entry, in French, as Markdown and PDF, from the lab's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.cli.support import database

rgpd_app = typer.Typer(no_args_is_help=True, help="RGPD: the documents the lab posts and keeps.")
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]


@rgpd_app.command("kit")
def kit(
    out: Annotated[Path, typer.Option("--out", help="the directory to write them in")],
    config: ConfigOpt = None,
) -> None:
    """affiche, information-membres and registre, each as .md and .pdf (docs/rgpd.md says
    what the lab must still complete)."""
    from sqlmodel import Session

    from hub.reports.rgpd import TO_FILL_IN, write_kit
    from hub.services.lab import rgpd_kit_inputs

    with database(config) as (settings, engine), Session(engine) as session:
        inputs = rgpd_kit_inputs(session, settings)
    for path in write_kit(inputs, out):
        typer.echo(f"wrote {path}")
    if not inputs.lab.privacy_contact or not inputs.lab.address:
        typer.echo(
            f"the lab's address or privacy contact is not set: the texts say {TO_FILL_IN} there "
            "(Settings, or PATCH /api/v1/lab/identity)",
            err=True,
        )
