"""The lab's name, address and opening hours: read by the review and the statistics, set
by a manager in the web. Absent a row, the hub's site name and the default opening hours."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

from sqlmodel import Session

from hub.audit import record
from hub.core.errors import InvalidValue
from hub.models import LabSettings
from hub.models.lab import ADDRESS_MAX, LAB_ROW, NAME_MAX, OPENING_MAX
from hub.reports.inputs import OPENING_HOURS_DEFAULT, parse_opening_hours


def current(session: Session, *, site: str) -> LabSettings:
    """The lab's settings as saved, or the defaults (not saved) when nobody set them yet."""
    row = session.get(LabSettings, LAB_ROW)
    if row is not None:
        return row
    return LabSettings(name=site, address="", opening_hours=OPENING_HOURS_DEFAULT)


def _text(value: str, *, field: str, most: int, lines: bool) -> str:
    """Trimmed; refused when too long or holding control characters (NUL, escapes) that
    would end up in a PDF or a spreadsheet cell."""
    text = value.strip()
    if len(text) > most:
        raise InvalidValue("lab.too_long", field=field, params={"max": most, "length": len(text)})
    allowed = {"\n", "\r"} if lines else set()
    bad = [c for c in text if unicodedata.category(c) in ("Cc", "Cs") and c not in allowed]
    if bad:
        code = f"U+{ord(bad[0]):04X}"
        raise InvalidValue("lab.control_character", field=field, params={"code": code})
    return text.replace("\r\n", "\n").replace("\r", "\n")


def change(
    session: Session,
    *,
    name: str,
    address: str,
    opening_hours: str,
    actor: str,
    now: datetime | None = None,
) -> LabSettings:
    """Save the lab's name, address and opening hours, audited as `actor`. The caller commits."""
    name = _text(name, field="name", most=NAME_MAX, lines=False)
    if not name:
        raise InvalidValue("lab.name_empty", field="name")
    address = _text(address, field="address", most=ADDRESS_MAX, lines=True)
    opening = _text(opening_hours, field="opening_hours", most=OPENING_MAX, lines=False)
    parse_opening_hours(opening)  # refuses an empty or unreadable week, naming the field
    row = session.get(LabSettings, LAB_ROW)
    if row is None:
        row = LabSettings(name=name, opening_hours=opening)
    row.name, row.address, row.opening_hours = name, address, opening
    row.changed_at = now or datetime.now(UTC)
    row.changed_by = actor[:100]
    session.add(row)
    record(
        session,
        actor=actor,
        action="lab.update",
        entity="lab_settings",
        entity_id=str(LAB_ROW),
        name=name,
        opening_hours=opening,
    )
    return row
