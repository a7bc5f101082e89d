"""Energy as the lab reports and prices it: kWh per machine and month, their cost, their CO2e.

Pure: the kWh come from the agents (a smart plug's counter shared out between sessions and busy
periods at the machine, edge.domain.energy); here they are grouped, priced and turned into an
estimate of emissions with a factor the lab sets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

# The French grid's average emission factor for electricity as consumed, in kg CO2e per kWh,
# the default of the hub setting `energy_co2e_kg_per_kwh`. Labs elsewhere, or wanting a later
# year, set their own; reports print the factor and its source beside every estimate.
FRENCH_GRID_CO2E_KG_PER_KWH = 0.052
FRENCH_GRID_CO2E_SOURCE = (
    "ADEME Base Empreinte, Électricité - 2022 - mix moyen - consommation (France continentale)"
)


class EnergyUse(NamedTuple):
    """kWh measured on a machine: a session's (its own and its run-on), or a busy period's with
    no session (the machine drawing power while nobody was badged in)."""

    machine: str
    machine_type: str
    started_at: datetime
    kwh: float
    session_id: str | None


class EnergyTotal(NamedTuple):
    month: str  # YYYY-MM, lab time
    machine: str
    machine_type: str
    kwh: float
    sessions: int
    outside_sessions_kwh: float


def by_machine_month(uses: Iterable[EnergyUse], tz: ZoneInfo) -> list[EnergyTotal]:
    """The kWh per month (of the start, in the lab's zone) and machine, sorted by both."""
    kwh: dict[tuple[str, str, str], float] = defaultdict(float)
    outside: dict[tuple[str, str, str], float] = defaultdict(float)
    sessions: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for use in uses:
        key = (use.started_at.astimezone(tz).strftime("%Y-%m"), use.machine, use.machine_type)
        kwh[key] += use.kwh
        if use.session_id is None:
            outside[key] += use.kwh
        else:
            sessions[key].add(use.session_id)
    return [
        EnergyTotal(month, machine, mtype, kwh[key], len(sessions[key]), outside[key])
        for key in sorted(kwh)
        for month, machine, mtype in (key,)
    ]


def energy_cents(kwh: float, cents_per_kwh: float) -> int:
    """What `kwh` cost at the lab's price, rounded half up to the cent."""
    return int(kwh * cents_per_kwh + 0.5) if kwh > 0 and cents_per_kwh > 0 else 0


def co2e_kg(kwh: float, kg_per_kwh: float) -> float:
    return kwh * kg_per_kwh
