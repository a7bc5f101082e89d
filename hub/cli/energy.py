"""`atelier hub energy`: the kWh the machines' smart plugs measured, their cost and CO2e."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from hub.cli.support import database, refusals

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]


def energy(
    first_month: Annotated[str, typer.Option("--from", help="first month, e.g. 2026-01")],
    last_month: Annotated[
        str | None, typer.Option("--to", help="last month (default: the first)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """kWh per month and machine, with their cost (energy_cents_per_kwh) and estimated CO2e."""
    from sqlmodel import Session

    from hub.domain.energy import (
        FRENCH_GRID_CO2E_KG_PER_KWH,
        FRENCH_GRID_CO2E_SOURCE,
        co2e_kg,
        energy_cents,
    )
    from hub.services.billing import euros, parse_month
    from hub.services.energy import monthly_energy

    with refusals(first_month="--from", last_month="--to"):
        first, _ = parse_month(first_month, "first_month")
        _, nxt = parse_month(last_month or first_month, "last_month")
    with database(config) as (settings, engine), Session(engine) as session:
        totals = monthly_energy(session, first=first, nxt=nxt, tz=ZoneInfo(settings.timezone))
    factor = settings.energy_co2e_kg_per_kwh
    price = settings.energy_cents_per_kwh
    typer.echo("month\tmachine\ttype\tkWh\tsessions\toutside sessions kWh\tkg CO2e\tcost")
    for t in totals:
        cost = f"{euros(energy_cents(t.kwh, price))} €" if price is not None else "-"
        typer.echo(
            f"{t.month}\t{t.machine}\t{t.machine_type}\t{t.kwh:.3f}\t{t.sessions}\t"
            f"{t.outside_sessions_kwh:.3f}\t{co2e_kg(t.kwh, factor):.2f}\t{cost}"
        )
    kwh = sum(t.kwh for t in totals)
    typer.echo(f"total\t\t\t{kwh:.3f}\t\t\t{co2e_kg(kwh, factor):.2f}")
    source = (
        FRENCH_GRID_CO2E_SOURCE
        if factor == FRENCH_GRID_CO2E_KG_PER_KWH
        else "the lab's own factor (energy_co2e_kg_per_kwh)"
    )
    typer.echo(f"CO2e at {factor:g} kg/kWh: {source}")
