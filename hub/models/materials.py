"""Materials the lab sells at cost (filament, sheets...), its spools, and what each session used."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.models.base import UTCDateTime, utcnow
from protocol import limits


class MaterialUnit(StrEnum):
    """What a material is counted in. A gram's price is given per kilogram, as labs publish
    it (25 €/kg); the others per one (a metre, a sheet, a unit)."""

    GRAM = "gram"
    METRE = "metre"
    SHEET = "sheet"
    UNIT = "unit"


class Material(SQLModel, table=True):
    __tablename__ = "material"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, max_length=limits.SLUG_MAX_CHARS)
    name: str = Field(max_length=200)
    # What a member's statement and the statistics group it by: PLA, PETG, plywood, acrylic...
    kind: str = Field(default="", max_length=60)
    unit: MaterialUnit = MaterialUnit.GRAM
    # The price in cents per kilogram (unit "gram") or per one of its unit, for every category
    # without a price of its own (MaterialPrice).
    cents_per_price_unit: int = 0
    # A filament's diameter and density turn the length OctoPrint reports into grams.
    diameter_mm: float | None = None
    density_g_cm3: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MaterialPrice(SQLModel, table=True):
    """A material's price for one member category, where the lab wants it to differ."""

    __tablename__ = "material_price"
    __table_args__ = (UniqueConstraint("material_id", "category"),)
    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(foreign_key="material.id", index=True)
    category: str = Field(max_length=20)
    cents_per_price_unit: int


class Spool(SQLModel, table=True):
    """A spool (or roll) of a material: its NFC tag or printed code, what is left, where it is."""

    __tablename__ = "spool"
    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(foreign_key="material.id", index=True)
    code: str = Field(unique=True, index=True, max_length=limits.SLUG_MAX_CHARS)
    tag: str | None = Field(default=None, unique=True, max_length=limits.BADGE_MAX_CHARS)
    initial_g: float
    remaining_g: float
    location: str = Field(default="", max_length=200)
    # Shown on the maintenance board once remaining_g is below it.
    low_g: float = 100.0
    retired: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MaterialUse(SQLModel, table=True):
    """Material a session used: grams of a spool counted from a print, sheets recorded at the
    machine or on the web. `quantity` is in the material's unit; `cents` what it was priced
    at the close (None until then)."""

    __tablename__ = "material_use"
    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True, max_length=limits.SESSION_ID_MAX_CHARS)
    material_id: int = Field(foreign_key="material.id", index=True)
    spool_id: int | None = Field(default=None, foreign_key="spool.id", index=True)
    quantity: float
    source: str = Field(max_length=20)  # octoprint, machine, web, cli
    job_id: str | None = Field(default=None, max_length=limits.JOB_ID_MAX_CHARS)
    recorded_by: str = Field(default="", max_length=100)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
