"""`atelier hub material ...` and `atelier hub spool ...`: the catalogue, the spools, what a
session used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.audit import cli_actor
from hub.cli.support import database, refusal
from hub.core.errors import HubError

material_app = typer.Typer(
    no_args_is_help=True, help="Materials sold at cost: filament, sheets... and their prices."
)
spool_app = typer.Typer(no_args_is_help=True, help="Spools: tag, what is left, where, history.")
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]
# The services' fields as the command line names them.
FLAGS = {
    "cents_per_price_unit": "--cents",
    "weight_g": "--weight-g",
    "low_g": "--low-g",
    "diameter_mm": "--diameter-mm",
    "density_g_cm3": "--density",
    "code": "CODE",
    "session": "SESSION",
    "spool": "--spool",
    "material": "--material",
}


@contextmanager
def _session(config: Path | None) -> Iterator[Any]:
    from sqlmodel import Session

    with database(config) as (_, engine), Session(engine) as session:
        try:
            yield session
        except HubError as error:
            session.rollback()
            raise refusal(error, FLAGS) from None


@material_app.command("add")
def add(
    code: Annotated[str, typer.Argument(help="e.g. pla-black")],
    name: Annotated[str, typer.Option(help="as members read it: PLA black")],
    unit: Annotated[str, typer.Option(help="gram, metre, sheet or unit")],
    cents: Annotated[str, typer.Option(help="price in cents per kg (gram) or per one")],
    kind: Annotated[str, typer.Option(help="the type statistics group by: PLA, plywood")] = "",
    diameter_mm: Annotated[str, typer.Option(help="a filament's diameter")] = "",
    density: Annotated[str, typer.Option(help="a filament's density, g/cm3")] = "",
    config: ConfigOpt = None,
) -> None:
    """Add a material to the catalogue."""
    from hub.services.materials import add_material

    with _session(config) as session:
        add_material(
            session,
            code=code,
            name=name,
            unit=unit,
            cents_per_price_unit=cents,
            kind=kind,
            diameter_mm=diameter_mm or None,
            density_g_cm3=density or None,
            actor=cli_actor(),
        )
        session.commit()
    typer.echo(f"material {code} added")


@material_app.command("price")
def price(
    code: Annotated[str, typer.Argument(help="the material")],
    category: Annotated[str, typer.Option(help="member category: student, professional...")],
    cents: Annotated[str, typer.Option(help="price in cents per kg (gram) or per one")],
    config: ConfigOpt = None,
) -> None:
    """The material's price for one member category."""
    from hub.services.materials import set_material_price

    with _session(config) as session:
        set_material_price(
            session, material=code, category=category, cents_per_price_unit=cents, actor=cli_actor()
        )
        session.commit()
    typer.echo(f"{code}: {cents} cents for {category}")


@material_app.command("use")
def use(
    session_id: Annotated[str, typer.Argument(metavar="SESSION", help="the session's id")],
    material: Annotated[str, typer.Option(help="the material's code")],
    quantity: Annotated[str, typer.Option(help="in the material's unit: 2 sheets, 35 g")],
    spool: Annotated[str, typer.Option(help="the spool it came off, by its code")] = "",
    config: ConfigOpt = None,
) -> None:
    """Record material a session used (a laser's sheets, grams weighed by hand)."""
    from hub.services.materials import record_use

    with _session(config) as session:
        record_use(
            session,
            session_id=session_id,
            material=material,
            quantity=quantity,
            spool=spool or None,
            source="cli",
            actor=cli_actor(),
        )
        session.commit()
    typer.echo(f"{quantity} of {material} recorded on {session_id}")


@spool_app.command("add")
def add_spool(
    code: Annotated[str, typer.Argument(help="its printed code, e.g. pla-black-07")],
    material: Annotated[str, typer.Option(help="the material's code")],
    weight_g: Annotated[str, typer.Option(help="filament on it, grams")],
    tag: Annotated[str, typer.Option(help="its NFC tag's UID, if it has one")] = "",
    location: Annotated[str, typer.Option(help="where it is kept")] = "",
    low_g: Annotated[str, typer.Option(help="on the maintenance board below this")] = "100",
    config: ConfigOpt = None,
) -> None:
    """Add a spool (publish the allow-lists for its tag to work at the machines)."""
    from hub.services.materials import add_spool as add

    with _session(config) as session:
        add(
            session,
            material=material,
            code=code,
            weight_g=weight_g,
            tag=tag or None,
            location=location,
            low_g=low_g,
            actor=cli_actor(),
        )
        session.commit()
    typer.echo(f"spool {code} added")


@spool_app.command("history")
def history(
    code: Annotated[str, typer.Argument(help="the spool's code")], config: ConfigOpt = None
) -> None:
    """What is left on a spool, and every session that used it."""
    from hub.services.materials import spool_history

    with _session(config) as session:
        spool, uses = spool_history(session, code)
        typer.echo(
            f"{spool.code}: {spool.remaining_g:.1f} g left of {spool.initial_g:.0f} g"
            f"{', ' + spool.location if spool.location else ''}"
        )
        for u in uses:
            typer.echo(
                f"{u.recorded_at:%Y-%m-%d %H:%M}\t{u.session_id}\t{u.member_ref or '-'}\t"
                f"{u.machine or '-'}\t{u.quantity:.1f}\t{u.source}"
            )


@spool_app.command("low")
def low(config: ConfigOpt = None) -> None:
    """Spools below their threshold, emptiest first."""
    from hub.services.materials import low_spools

    with _session(config) as session:
        for spool, material in low_spools(session):
            typer.echo(
                f"{spool.code}\t{material.name}\t{spool.remaining_g:.0f} g\t{spool.location}"
            )
