"""Materials, spools and what sessions used of them, for the CLI, the ingest and the close.

A material has a price per kilogram (counted in grams), metre, sheet or unit, and may have its
own price per member category. A spool has an NFC tag (tapped at the machine after the badge)
or a printed code, and what is left on it; every use of it is a `material_use` row, which is
also its history. Grams counted from a print come off the spool as they are recorded.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, InvalidValue, NotFound
from hub.domain.materials import filament_grams, material_charge
from hub.models import (
    Badge,
    MachineSession,
    Material,
    MaterialPrice,
    MaterialUnit,
    MaterialUse,
    Member,
    MemberCategory,
    Spool,
)
from protocol import limits
from protocol.badges import normalise_uid

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
MAX_QUANTITY = 1_000_000.0  # a tonne of filament, a million sheets: past it, a typing mistake


def _code(field: str, code: str) -> str:
    code = code.strip()
    if not _SLUG.fullmatch(code) or len(code) > limits.SLUG_MAX_CHARS:
        raise InvalidValue("material.code", field=field, params={"value": code[:80]})
    return code


def _number(field: str, value: float | str | None, least: float, most: float) -> float:
    try:
        number = float(str(value).replace(",", ".")) if value is not None else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not least <= number <= most:
        raise InvalidValue(
            "material.number",
            field=field,
            params={"value": str(value)[:40], "least": f"{least:g}", "most": f"{most:g}"},
        )
    return number


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or "\x00" in name:
        raise InvalidValue("material.name", field="name")
    return name


def known_material(session: Session, code: str, field: str = "material") -> Material:
    found = session.exec(select(Material).where(Material.code == code)).first()
    if found is None:
        known = ", ".join(session.exec(select(Material.code).order_by(col(Material.code))).all())
        raise NotFound(
            "material.unknown", field=field, params={"material": code[:80], "known": known or "-"}
        )
    return found


def add_material(
    session: Session,
    *,
    code: str,
    name: str,
    unit: str,
    cents_per_price_unit: float | str,
    kind: str = "",
    diameter_mm: float | str | None = None,
    density_g_cm3: float | str | None = None,
    actor: str,
) -> Material:
    """A material of the catalogue; the caller commits. A filament (unit gram) with a diameter
    and a density has its prints' length counted in grams."""
    code = _code("code", code)
    units = [u.value for u in MaterialUnit]
    if unit not in units:
        raise InvalidValue(
            "material.unit", field="unit", params={"unit": unit[:40], "units": ", ".join(units)}
        )
    if session.exec(select(Material).where(Material.code == code)).first() is not None:
        raise Conflict("material.exists", field="code", params={"material": code})
    material = Material(
        code=code,
        name=_name(name),
        kind=kind.strip()[:60],
        unit=MaterialUnit(unit),
        cents_per_price_unit=int(_number("cents_per_price_unit", cents_per_price_unit, 0, 10**8)),
        diameter_mm=_number("diameter_mm", diameter_mm, 0.1, 10) if diameter_mm else None,
        density_g_cm3=_number("density_g_cm3", density_g_cm3, 0.1, 25) if density_g_cm3 else None,
    )
    session.add(material)
    session.flush()
    record(session, actor=actor, action="material.add", entity="material", entity_id=code)
    return material


def set_material_price(
    session: Session, *, material: str, category: str, cents_per_price_unit: float | str, actor: str
) -> None:
    """The material's price for one member category (replacing the one it had)."""
    found = known_material(session, material)
    categories = [c.value for c in MemberCategory]
    if category not in categories:
        raise InvalidValue(
            "rate.category",
            field="category",
            params={"category": category[:40], "categories": ", ".join(categories)},
        )
    cents = int(_number("cents_per_price_unit", cents_per_price_unit, 0, 10**8))
    row = session.exec(
        select(MaterialPrice).where(
            MaterialPrice.material_id == found.id, MaterialPrice.category == category
        )
    ).first() or MaterialPrice(material_id=found.id or 0, category=category, cents_per_price_unit=0)
    row.cents_per_price_unit = cents
    session.add(row)
    record(
        session,
        actor=actor,
        action="material.price",
        entity="material",
        entity_id=found.code,
        category=category,
        cents=cents,
    )


def add_spool(
    session: Session,
    *,
    material: str,
    code: str,
    weight_g: float | str,
    tag: str | None = None,
    location: str = "",
    low_g: float | str = 100,
    actor: str,
) -> Spool:
    """A new spool; its tag must be nobody's badge (a tag is never taken for a badge at the
    machine, and a badge must never be taken for a spool). The caller commits."""
    found = known_material(session, material)
    code = _code("code", code)
    if session.exec(select(Spool).where(Spool.code == code)).first() is not None:
        raise Conflict("spool.exists", field="code", params={"spool": code})
    uid = None
    if tag:
        try:
            uid = normalise_uid(tag)
        except ValueError:
            raise InvalidValue("spool.tag_format", field="tag", params={"tag": tag[:40]}) from None
        if session.exec(select(Badge).where(Badge.uid == uid)).first() is not None:
            raise Conflict("spool.tag_is_badge", field="tag", params={"tag": uid})
        other = session.exec(select(Spool).where(Spool.tag == uid)).first()
        if other is not None:
            raise Conflict("spool.tag_taken", field="tag", params={"tag": uid, "spool": other.code})
    weight = _number("weight_g", weight_g, 0, MAX_QUANTITY)
    spool = Spool(
        material_id=found.id or 0,
        code=code,
        tag=uid,
        initial_g=weight,
        remaining_g=weight,
        location=location.strip()[:200],
        low_g=_number("low_g", low_g, 0, MAX_QUANTITY),
    )
    session.add(spool)
    session.flush()
    record(session, actor=actor, action="spool.add", entity="spool", entity_id=code, tag=uid)
    return spool


def spool_tags(session: Session) -> list[str]:
    """The tags of the spools in use, for the machines' allow-lists."""
    return list(
        session.exec(
            select(Spool.tag)
            .where(col(Spool.tag).is_not(None), col(Spool.retired).is_(False))
            .order_by(col(Spool.tag))
        ).all()  # type: ignore[arg-type]
    )


def attach_spool(session: Session, *, session_id: str, tag: str) -> Spool | None:
    """The spool tapped after the badge, on the session (the ingest, at `spool.attached`).
    None: no spool has that tag any more (retired, or its tag given to another)."""
    spool = session.exec(select(Spool).where(Spool.tag == tag)).first()
    row = session.get(MachineSession, session_id)
    if spool is None or row is None:
        return None
    row.spool_id = spool.id
    session.add(row)
    return spool


def count_filament(
    session: Session, *, session_id: str, job_id: str, length_mm: float, at: datetime
) -> MaterialUse | None:
    """A print's filament, in grams, on the spool of its session, and off the spool. None:
    the session had no spool, or its material has no diameter and density to weigh it by.
    A job counted once (its id), however many times its end is delivered."""
    row = session.get(MachineSession, session_id)
    if row is None or row.spool_id is None:
        return None
    spool = session.get(Spool, row.spool_id)
    if spool is None:
        return None
    material = session.get(Material, spool.material_id)
    if material is None or not material.diameter_mm or not material.density_g_cm3:
        return None
    already = session.exec(
        select(MaterialUse).where(
            MaterialUse.session_id == session_id, MaterialUse.job_id == job_id
        )
    ).first()
    if already is not None:
        return already
    grams = round(filament_grams(length_mm, material.diameter_mm, material.density_g_cm3), 1)
    use = MaterialUse(
        session_id=session_id,
        material_id=material.id or 0,
        spool_id=spool.id,
        quantity=grams,
        source="octoprint",
        job_id=job_id[: limits.JOB_ID_MAX_CHARS],
        recorded_by="machine",
        recorded_at=at,
    )
    spool.remaining_g = spool.remaining_g - grams
    session.add(spool)
    session.add(use)
    return use


def record_use(
    session: Session,
    *,
    session_id: str,
    material: str,
    quantity: float | str,
    spool: str | None = None,
    source: str = "web",
    actor: str,
) -> MaterialUse:
    """Material a session used, typed by a person (sheets on a laser, grams weighed): on the
    spool given (by code), whose remaining weight goes down. The caller commits."""
    row = session.get(MachineSession, session_id[: limits.SESSION_ID_MAX_CHARS])
    if row is None:
        raise NotFound("use.session_unknown", field="session", params={"session": session_id[:80]})
    found = known_material(session, material)
    amount = _number("quantity", quantity, 0, MAX_QUANTITY)
    if amount <= 0:
        raise InvalidValue(
            "material.number",
            field="quantity",
            params={
                "value": str(quantity)[:40],
                "least": "more than 0",
                "most": f"{MAX_QUANTITY:g}",
            },
        )
    spool_row = None
    if spool:
        spool_row = session.exec(select(Spool).where(Spool.code == spool)).first()
        if spool_row is None:
            raise NotFound("spool.unknown", field="spool", params={"spool": spool[:80]})
        if spool_row.material_id != found.id:
            raise InvalidValue(
                "spool.other_material",
                field="spool",
                params={"spool": spool_row.code, "material": found.code},
            )
        spool_row.remaining_g -= amount
        session.add(spool_row)
    use = MaterialUse(
        session_id=row.id,
        material_id=found.id or 0,
        spool_id=spool_row.id if spool_row else None,
        quantity=amount,
        source=source,
        recorded_by=actor[:100],
    )
    session.add(use)
    record(
        session,
        actor=actor,
        action="material.use",
        entity="session",
        entity_id=row.id,
        material=found.code,
        quantity=amount,
    )
    return use


@dataclass(frozen=True)
class SpoolUseRow:
    session_id: str
    member_ref: str | None
    machine: str | None
    quantity: float
    source: str
    recorded_at: datetime


def spool_history(session: Session, code: str) -> tuple[Spool, list[SpoolUseRow]]:
    """A spool and every session that used it, oldest first."""
    spool = session.exec(select(Spool).where(Spool.code == code)).first()
    if spool is None:
        raise NotFound("spool.unknown", field="spool", params={"spool": code[:80]})
    rows = session.execute(
        sa.select(
            col(MaterialUse.session_id),
            col(MachineSession.member_ref),
            col(MachineSession.machine),
            col(MaterialUse.quantity),
            col(MaterialUse.source),
            col(MaterialUse.recorded_at),
        )
        .outerjoin(MachineSession, col(MachineSession.id) == col(MaterialUse.session_id))
        .where(col(MaterialUse.spool_id) == spool.id)
        .order_by(col(MaterialUse.recorded_at), col(MaterialUse.id))
    ).all()
    return spool, [SpoolUseRow(*r) for r in rows]


def low_spools(session: Session) -> list[tuple[Spool, Material]]:
    """Spools in use below their threshold, emptiest first: for the maintenance board."""
    return [
        (s, m)
        for s, m in session.exec(
            select(Spool, Material)
            .join(Material, col(Material.id) == col(Spool.material_id))
            .where(col(Spool.retired).is_(False), col(Spool.remaining_g) < col(Spool.low_g))
            .order_by(col(Spool.remaining_g))
        ).all()
    ]


@dataclass(frozen=True)
class SessionMaterialLine:
    session_id: str
    explanation: str
    cents: int
    quantity: float
    unit: str
    material: str
    kind: str


def session_material_lines(
    session: Session, session_ids: Collection[str], category_of: dict[str, str]
) -> list[SessionMaterialLine]:
    """What each session's material costs, one line per use, priced at the material's price
    for the session's member category (its own price where it has one). `category_of`: the
    category each session is billed in."""
    if not session_ids:
        return []
    ids = list(session_ids)
    prices = {
        (mid, cat): cents
        for mid, cat, cents in session.execute(
            sa.select(
                col(MaterialPrice.material_id),
                col(MaterialPrice.category),
                col(MaterialPrice.cents_per_price_unit),
            )
        )
    }
    lines = []
    for sid, quantity, mid, name, unit, base, kind in session.execute(
        sa.select(
            col(MaterialUse.session_id),
            col(MaterialUse.quantity),
            col(Material.id),
            col(Material.name),
            col(Material.unit),
            col(Material.cents_per_price_unit),
            col(Material.kind),
        )
        .join(Material, col(Material.id) == col(MaterialUse.material_id))
        .where(col(MaterialUse.session_id).in_(ids))
        .order_by(col(MaterialUse.session_id), col(MaterialUse.id))
    ):
        unit_value = unit.value if isinstance(unit, MaterialUnit) else MaterialUnit[unit].value
        price = prices.get((mid, category_of.get(sid, "")), base)
        charge = material_charge(name, quantity, unit_value, price)
        lines.append(
            SessionMaterialLine(
                sid, charge.explanation, charge.cents, quantity, unit_value, name, kind
            )
        )
    return lines


def material_by_type_and_public(
    session: Session, *, first: date, nxt: date, tz: ZoneInfo
) -> list[tuple[str, str, str, float]]:
    """(material type, member category, unit, quantity) used in sessions started in
    [first, nxt), lab days: the statistics' and the yearly review's material. The category is
    the member's current one, as the rest of the statistics (docs/statistics.md)."""
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(nxt, time(), tz).astimezone(UTC)
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    for kind, name, unit, category, quantity in session.execute(
        sa.select(
            col(Material.kind),
            col(Material.name),
            col(Material.unit),
            col(Member.category),
            col(MaterialUse.quantity),
        )
        .join(Material, col(Material.id) == col(MaterialUse.material_id))
        .join(MachineSession, col(MachineSession.id) == col(MaterialUse.session_id))
        .outerjoin(Member, col(Member.ref) == col(MachineSession.member_ref))
        .where(col(MachineSession.started_at) >= start, col(MachineSession.started_at) < end)
    ):
        unit_value = unit.value if isinstance(unit, MaterialUnit) else MaterialUnit[unit].value
        public = category.value if isinstance(category, MemberCategory) else str(category or "-")
        totals[kind or name, public, unit_value] += quantity
    return [(k, c, u, round(q, 3)) for (k, c, u), q in sorted(totals.items())]
