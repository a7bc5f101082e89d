"""Material used in a session, measured and priced: filament length to grams, quantity to cents.

Pure. A print reports the filament it used (mm: the agent's edge.domain.filament, from
OctoPrint's job analysis and how far the print got); with the filament's diameter and density
that is a weight, counted against the spool tapped at the machine and billed at the lab's
price for the member's category.
"""

from __future__ import annotations

import math
from typing import NamedTuple

# Prices of materials counted in grams are given per kilogram, as labs publish them.
PER_PRICE_UNIT = {"gram": 1000.0, "metre": 1.0, "sheet": 1.0, "unit": 1.0}
UNIT_WORDS = {"gram": "g", "metre": "m", "sheet": "sheet(s)", "unit": "unit(s)"}
PRICE_WORDS = {"gram": "kg", "metre": "m", "sheet": "sheet", "unit": "unit"}


def filament_grams(length_mm: float, diameter_mm: float, density_g_cm3: float) -> float:
    """The weight of `length_mm` of filament: its volume (a cylinder) times its density."""
    if length_mm <= 0 or diameter_mm <= 0 or density_g_cm3 <= 0:
        return 0.0
    volume_cm3 = math.pi * (diameter_mm / 2) ** 2 * length_mm / 1000.0
    return volume_cm3 * density_g_cm3


class MaterialCharge(NamedTuple):
    explanation: str
    cents: int


def _euros(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d} €"


def _quantity(quantity: float, unit: str) -> str:
    return f"{quantity:g} {UNIT_WORDS[unit]}"


def material_charge(
    name: str, quantity: float, unit: str, cents_per_price_unit: int
) -> MaterialCharge:
    """One statement line: `42 g of PLA black at 25,00 €/kg`, rounded half up to the cent
    (grams are counted to the tenth before pricing, as a scale shows them)."""
    if unit == "gram":
        quantity = round(quantity, 1)
    cents = int(quantity * cents_per_price_unit / PER_PRICE_UNIT[unit] + 0.5) if quantity > 0 else 0
    return MaterialCharge(
        f"{_quantity(quantity, unit)} of {name} at "
        f"{_euros(cents_per_price_unit)}/{PRICE_WORDS[unit]}",
        cents,
    )
