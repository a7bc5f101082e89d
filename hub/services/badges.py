"""Badges, as the API, the web and the CLI enrol and revoke them, and enrolment by a tap.

A member may hold several badges; enrolling and revoking keep the history (a revoked badge
stays, with its `revoked_at`). Refusals are HubErrors; the caller commits and then re-publishes
the allow-lists, so a revoked card stops opening machines within seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, InvalidValue, NotFound
from hub.models import Badge, Event, Machine, Member, Spool
from protocol.badges import normalise_uid
from protocol.envelope import EventType
from protocol.limits import INT32_MAX

# How long a machine's reader waits for the card to enrol after the hub asks it.
ENROL_WINDOW = timedelta(seconds=60)


class CommandSender(Protocol):
    """What asking an agent for a card needs of the allow-list publisher."""

    def send_command(self, site: str, machine: str, name: str, args: dict[str, Any]) -> None: ...


def card_uid(uid: str, field: str = "uid") -> str:
    """The UID as the hub stores it (uppercase hex), or a refusal naming the field."""
    try:
        return normalise_uid(uid)
    except ValueError:
        raise InvalidValue("badge.uid_invalid", field=field, params={"uid": uid}) from None


def list_badges(
    session: Session,
    *,
    member_id: int | None = None,
    uid: str | None = None,
    active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Badge]:
    """Badges in enrolment order; `active` True keeps the unrevoked ones, False the revoked."""
    query = select(Badge)
    if member_id is not None:
        query = query.where(Badge.member_id == member_id)
    if uid:
        query = query.where(Badge.uid == card_uid(uid))
    if active is True:
        query = query.where(col(Badge.revoked_at).is_(None))
    elif active is False:
        query = query.where(col(Badge.revoked_at).is_not(None))
    return list(session.exec(query.order_by(col(Badge.id)).offset(offset).limit(limit)).all())


def enrol_badge(session: Session, *, uid: str, member_id: int, actor: str) -> Badge:
    """Give `member_id` the card `uid`; a card held by an unrevoked badge is refused."""
    uid = card_uid(uid)
    # Ids are 32-bit on PostgreSQL: a larger one names no member (never the driver's overflow).
    member = session.get(Member, member_id) if 1 <= member_id <= INT32_MAX else None
    if member is None:
        raise InvalidValue("member.unknown_id", field="member_id", params={"member": member_id})
    held = session.exec(
        select(Badge).where(Badge.uid == uid, col(Badge.revoked_at).is_(None))
    ).first()
    if held is not None:
        raise Conflict("badge.enrolled", field="uid", params={"uid": uid, "badge": held.id})
    if session.exec(select(Spool).where(Spool.tag == uid)).first() is not None:
        # At the machine a spool's tag is never a badge: as one it would open nothing.
        raise Conflict("badge.is_spool", field="uid", params={"uid": uid})
    badge = Badge(uid=uid, member_id=member_id)
    session.add(badge)
    session.flush()
    record(
        session, actor=actor, action="badge.enrol", entity="badge", entity_id=uid, member=member.ref
    )
    return badge


def revoke_badge(session: Session, *, badge_id: int, actor: str) -> tuple[Badge, bool]:
    """(the badge, whether it was revoked now): revoking a revoked badge changes nothing."""
    badge = session.get(Badge, badge_id) if 1 <= badge_id <= INT32_MAX else None
    if badge is None:
        raise NotFound("badge.unknown", field="badge_id", params={"badge": badge_id})
    if badge.revoked_at is not None:
        return badge, False
    badge.revoked_at = datetime.now(UTC)
    session.add(badge)
    record(session, actor=actor, action="badge.revoke", entity="badge", entity_id=badge.uid)
    return badge, True


@dataclass(frozen=True)
class ReadRequest:
    """A machine's reader asked to report the next card shown to it, until `expires_at`."""

    request_id: str
    machine: str
    expires_at: datetime


def ask_for_a_card(
    session: Session, *, machine: str, publisher: CommandSender | None, actor: str
) -> ReadRequest:
    """Ask `machine`'s agent to report the next card shown (within ENROL_WINDOW) instead of
    deciding on it; `card_read` then gives its UID. An offline machine is refused."""
    found = session.exec(select(Machine).where(Machine.code == machine)).first()
    if found is None:
        known = ", ".join(session.exec(select(Machine.code).order_by(col(Machine.code))).all())
        raise InvalidValue(
            "machine.unknown", field="machine", params={"machine": machine, "known": known}
        )
    if not found.online or publisher is None:
        raise Conflict("badge.reader_offline", field="machine", params={"machine": found.code})
    request_id = uuid.uuid4().hex
    publisher.send_command(
        found.site,
        found.code,
        "enrol",
        {"request_id": request_id, "window_s": ENROL_WINDOW.total_seconds()},
    )
    record(
        session,
        actor=actor,
        action="badge.read_request",
        entity="machine",
        entity_id=found.code,
        request_id=request_id,
    )
    return ReadRequest(
        request_id=request_id, machine=found.code, expires_at=datetime.now(UTC) + ENROL_WINDOW
    )


@dataclass(frozen=True)
class CardRead:
    """What the reader reported for a request: `badge` is None until the card is shown; a
    secure reader's `card` is "written", "already" or "refused" (then `card_refusal`)."""

    request_id: str
    machine: str
    badge: str | None = None
    card: str | None = None
    card_refusal: str | None = None


def card_read(session: Session, *, request_id: str, machine: str) -> CardRead:
    """The card read for this request, once the member has shown it."""
    since = datetime.now(UTC) - ENROL_WINDOW * 3
    events = session.exec(
        select(Event)
        .where(Event.machine == machine, Event.type == EventType.BADGE_READ.value)
        .where(col(Event.ts) >= since)
        .order_by(col(Event.ts).desc())
    ).all()
    data: Mapping[str, Any] = next(
        (e.data for e in events if e.data.get("request_id") == request_id), {}
    )
    return CardRead(
        request_id=request_id,
        machine=machine,
        badge=data.get("badge"),
        card=data.get("card"),
        card_refusal=data.get("card_refusal"),
    )


def revoke_card(session: Session, *, uid: str, actor: str) -> Badge:
    """Revoke the badge that holds this card now (lost, stolen, returned)."""
    uid = card_uid(uid)
    badge = session.exec(
        select(Badge).where(Badge.uid == uid, col(Badge.revoked_at).is_(None))
    ).first()
    if badge is None:
        raise NotFound("badge.not_active", field="uid", params={"uid": uid})
    badge.revoked_at = datetime.now(UTC)
    session.add(badge)
    record(
        session,
        actor=actor,
        action="badge.revoke",
        entity="badge",
        entity_id=uid,
        member_id=badge.member_id,
    )
    return badge
