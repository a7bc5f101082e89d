"""The lab's name, address and opening hours: read by the review and the statistics, set
by a manager in the web. They are kept beside the lab's legal identity (hub/services/lab.py,
one `lab_setting` row per key), so the name a statement prints is the name the review shows.
Absent a value, the hub's site name and the default opening hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session

from hub.audit import record
from hub.core.errors import InvalidValue
from hub.models import LabSetting
from hub.reports.inputs import OPENING_HOURS_DEFAULT, parse_opening_hours
from hub.services.lab import check_identity

OPENING_MAX = 500


@dataclass(frozen=True)
class LabSettings:
    name: str
    address: str
    # The weekly opening hours, as the reports read them: "tue-fri 14:00-19:00; sat 10:00-18:00".
    opening_hours: str


def _value(session: Session, key: str) -> str:
    row = session.get(LabSetting, key)
    return row.value if row is not None else ""


def current(session: Session, *, site: str) -> LabSettings:
    """The lab's settings as saved, each unset one taking its default."""
    return LabSettings(
        name=_value(session, "name") or site,
        address=_value(session, "address"),
        opening_hours=_value(session, "opening_hours") or OPENING_HOURS_DEFAULT,
    )


def _opening(text: str) -> str:
    value = " ".join(text.split())
    if len(value) > OPENING_MAX:
        raise InvalidValue(
            "lab.too_long",
            field="opening_hours",
            params={"field": "opening_hours", "max": OPENING_MAX},
        )
    if any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in text if c not in "\r\n\t"):
        raise InvalidValue(
            "lab.control_character", field="opening_hours", params={"field": "opening_hours"}
        )
    parse_opening_hours(value)  # refuses an empty or unreadable week, naming the field
    return value


def change(
    session: Session,
    *,
    name: str,
    address: str,
    opening_hours: str,
    actor: str,
    now: datetime | None = None,
) -> LabSettings:
    """Save the lab's name, address and opening hours, all checked before any is written,
    audited as `actor`. The caller commits."""
    checked = check_identity({"name": name, "address": address})
    checked["opening_hours"] = _opening(opening_hours)
    when = now or datetime.now(UTC)
    for key, value in checked.items():
        row = session.get(LabSetting, key) or LabSetting(key=key)
        row.value, row.changed_at, row.changed_by = value, when, actor[:100]
        session.add(row)
    record(
        session,
        actor=actor,
        action="lab.update",
        entity="lab_setting",
        entity_id="settings",
        name=checked["name"],
        opening_hours=checked["opening_hours"],
    )
    session.flush()
    return LabSettings(checked["name"], checked["address"], checked["opening_hours"])
