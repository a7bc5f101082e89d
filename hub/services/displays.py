"""Wall displays: their read-only tokens, and the board a kiosk screen shows.

A display token opens the live board (`/wall/<secret>`) and nothing else: no user stands
behind it, it never expires, an admin revokes it (web, `atelier hub display`). Only its
SHA-256 is kept; the secret is shown once, in the kiosk URL. The web and the CLI call these;
refusals are HubErrors; the caller commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import InvalidValue, NotFound
from hub.models import DISPLAY_NAME_MAX, DisplayToken, MachinePublic, MachineType, Role, User
from hub.services.machine_views import finite, machines_public
from protocol.limits import INT32_MAX

DISPLAY_PREFIX = "atd_"
# A secret is the prefix and 43 URL-safe characters; anything much longer is not one.
SECRET_MAX_CHARS = 80
# Writing last_used_at on every look would turn the kiosk's every second into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# How the board groups its cards: by the machines' location (room or area), by machine type,
# or one block.
GROUPINGS = ("location", "type", "none")
FILE_NAME_MAX_CHARS = 120

# The summary line's counts, by the state each machine's card shows.
SUMMARY_OF_STATE = {
    "idle": "free",
    "in_use": "in_use",
    "busy": "in_use",
    "printing": "printing",
    "locked": "locked",
    "offline": "offline",
}
SUMMARY_KEYS = ("free", "in_use", "printing", "locked", "offline")
# States where someone holds the machine: the card says since when.
HELD = frozenset({"in_use", "busy", "printing"})


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.replace("\x00", " ").split())
    if not cleaned:
        raise InvalidValue("display.name_empty", field="name")
    if len(cleaned) > DISPLAY_NAME_MAX:
        raise InvalidValue("display.name_too_long", field="name", params={"max": DISPLAY_NAME_MAX})
    return cleaned


def create_display(
    session: Session, *, name: str, actor: str, now: datetime | None = None
) -> tuple[str, DisplayToken]:
    """A new display token: (the secret, shown once; its row)."""
    cleaned = _clean_name(name)
    raw = DISPLAY_PREFIX + secrets.token_urlsafe(32)
    display = DisplayToken(
        name=cleaned,
        token_hash=_hash(raw),
        prefix=raw[:12],
        created_by=actor[:100],
        created_at=now or datetime.now(UTC),
    )
    session.add(display)
    session.flush()
    record(
        session,
        actor=actor,
        action="display.create",
        entity="display",
        entity_id=display.prefix,
        name=cleaned,
    )
    return raw, display


def list_displays(session: Session) -> list[DisplayToken]:
    """Every display token, live ones first, newest first within each."""
    rows = session.exec(select(DisplayToken).order_by(col(DisplayToken.id).desc())).all()
    return sorted(rows, key=lambda d: d.revoked_at is not None)


def _find(session: Session, key: str) -> DisplayToken:
    """The display named by its number or by the first characters of its secret."""
    key = key.strip()
    found: list[DisplayToken] = []
    if "\x00" in key:  # no secret holds one, and PostgreSQL refuses it in a query
        raise NotFound("display.unknown", field="display", params={"display": key[:40]})
    if key.isascii() and key.isdigit() and 1 <= int(key) <= INT32_MAX:
        row = session.get(DisplayToken, int(key))
        found = [row] if row else []
    elif key.startswith(DISPLAY_PREFIX) and len(key) <= SECRET_MAX_CHARS:
        found = list(session.exec(select(DisplayToken).where(DisplayToken.prefix == key[:12])))
    if len(found) != 1:
        raise NotFound("display.unknown", field="display", params={"display": key[:40]})
    return found[0]


def revoke_display(
    session: Session, *, display: str, actor: str, now: datetime | None = None
) -> DisplayToken:
    """Revoke a display token (by number or prefix): its screen is refused within seconds.
    Revoking one already revoked keeps its first time."""
    row = _find(session, display)
    if row.revoked_at is None:
        row.revoked_at = now or datetime.now(UTC)
        session.add(row)
        record(
            session,
            actor=actor,
            action="display.revoke",
            entity="display",
            entity_id=row.prefix,
            name=row.name,
        )
    return row


def display_for(session: Session, raw: str, *, now: datetime | None = None) -> DisplayToken | None:
    """The live display token whose secret this is, or None (unknown, malformed, revoked).
    Notes when the screen was last seen, once a minute at most; commits that note."""
    if not raw.startswith(DISPLAY_PREFIX) or len(raw) > SECRET_MAX_CHARS:
        return None
    display = session.exec(
        select(DisplayToken).where(DisplayToken.token_hash == _hash(raw))
    ).first()
    if display is None or display.revoked_at is not None:
        return None
    now = now or datetime.now(UTC)
    if display.last_used_at is None or now - display.last_used_at > LAST_USED_RESOLUTION:
        display.last_used_at = now
        session.add(display)
        session.commit()
    return display


# --- the board ----------------------------------------------------------------------------
@dataclass
class WallCard:
    machine: MachinePublic
    summary: str  # free, in_use, printing, locked, offline
    since: datetime | None = None  # held: when the session started
    file: str | None = None  # printing: the file the printer reports
    minutes_left: int | None = None  # printing: the printer's estimate


@dataclass
class WallGroup:
    title: str  # a location, a machine type's name, or "" (no location / one block)
    cards: list[WallCard] = field(default_factory=list)


@dataclass
class WallBoard:
    grouping: str
    machine_type: str | None  # the type shown alone, or None for all
    type_name: str | None
    summary: dict[str, int]
    groups: list[WallGroup]

    @property
    def count(self) -> int:
        return sum(len(g.cards) for g in self.groups)


def wall_options(session: Session, *, grouping: str, machine_type: str) -> tuple[str, str | None]:
    """A board's grouping and type filter as a kiosk URL gives them, checked."""
    grouping = grouping.strip().lower() or "location"
    if grouping not in GROUPINGS:
        raise InvalidValue(
            "display.grouping_unknown",
            field="group",
            params={"group": grouping[:40], "known": ", ".join(GROUPINGS)},
        )
    code = machine_type.strip()
    if not code:
        return grouping, None
    types = session.exec(select(MachineType.code).order_by(MachineType.code)).all()
    if code not in types:
        raise NotFound(
            "machine_type.unknown",
            field="type",
            params={"machine_type": code[:40], "known": ", ".join(types) or "-"},
        )
    return grouping, code


def _card(machine: MachinePublic) -> WallCard:
    card = WallCard(machine=machine, summary=SUMMARY_OF_STATE.get(machine.state, "offline"))
    if machine.state in HELD:
        card.since = machine.session_started_at
    if machine.state == "printing":
        telemetry = machine.telemetry or {}
        name = telemetry.get("file")
        if isinstance(name, str) and name.strip():
            card.file = name.strip()[:FILE_NAME_MAX_CHARS]
        left = finite(telemetry.get("print_time_left_s"))
        if left is not None and 0 <= left < 366 * 86400:
            card.minutes_left = int(left // 60)
    return card


def wall_board(
    session: Session, *, show_names: bool, grouping: str, machine_type: str | None
) -> WallBoard:
    """What the kiosk shows: every machine (or one type's) with its live state, the counts
    for the summary line, in groups. Names of the members in session only when the lab lets
    members see who uses a machine (`members_see_who_uses_machines`): the wall is public."""
    # Nobody is signed in: the board sees what any member would, and never has "own" data.
    viewer = User(username="", password_hash="", role=Role.MEMBER, member_id=None)
    types = {t.code: t.name for t in session.exec(select(MachineType))}
    machines = [
        m
        for m in machines_public(session, viewer=viewer, members_see_names=show_names)
        if machine_type is None or m.machine_type == machine_type
    ]
    cards = [_card(m) for m in machines]
    summary = dict.fromkeys(SUMMARY_KEYS, 0)
    for card in cards:
        summary[card.summary] += 1
    groups: dict[str, WallGroup] = {}
    if grouping == "none":
        groups[""] = WallGroup(title="", cards=cards)
    else:
        for card in cards:
            m = card.machine
            title = (
                m.location.strip()
                if grouping == "location"
                else types.get(m.machine_type, m.machine_type)
            )
            groups.setdefault(title, WallGroup(title=title)).cards.append(card)
    # Named groups in alphabetical order, the one without a name last.
    ordered = sorted(groups.values(), key=lambda g: (g.title == "", g.title.casefold()))
    for group in ordered:
        group.cards.sort(key=lambda c: (c.machine.name.casefold(), c.machine.code))
    return WallBoard(
        grouping=grouping,
        machine_type=machine_type,
        type_name=types.get(machine_type) if machine_type else None,
        summary=summary,
        groups=ordered,
    )
