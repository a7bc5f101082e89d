"""A member's data rights: export everything held about them, or erase what identifies them.

Erasure keeps the history (sessions, events, trainings) under the member's pseudonymous
reference, so billing totals and statistics stay correct, but removes the name, the email and
the card UIDs, which are what link that reference back to a person.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from hub.models import (
    Badge,
    Event,
    MachineSession,
    MachineType,
    Member,
    MemberCategoryChange,
    MemberStatus,
    Training,
)

ERASED_NAME = "(erased)"
# Events whose data may carry the member's card UID.
BADGE_EVENT_TYPES = ("badge.granted", "badge.denied", "session.started")


def find_member(session: Session, email: str) -> Member:
    member = session.exec(select(Member).where(Member.email == email.lower())).first()
    if member is None:
        raise LookupError(f"no member with email {email}")
    return member


def export_member(session: Session, member: Member) -> dict[str, Any]:
    types = {t.id: t.code for t in session.exec(select(MachineType))}
    badges = session.exec(select(Badge).where(Badge.member_id == member.id)).all()
    trainings = session.exec(select(Training).where(Training.member_id == member.id)).all()
    categories = session.exec(
        select(MemberCategoryChange)
        .where(MemberCategoryChange.member_id == member.id)
        .order_by(MemberCategoryChange.effective_from, MemberCategoryChange.id)  # type: ignore[arg-type]
    ).all()
    sessions = session.exec(
        select(MachineSession)
        .where(MachineSession.member_ref == member.ref)
        .order_by(col(MachineSession.started_at))
    ).all()

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "exported_at": datetime.now(UTC).isoformat(),
        "member": {
            "ref": member.ref,
            "name": member.name,
            "email": member.email,
            "category": member.category.value,
            "status": member.status.value,
            "created_at": iso(member.created_at),
        },
        # What billing priced them as, and from when (hub/category_history.py).
        "category_changes": [
            {
                "from": c.previous_category,
                "to": c.category,
                "effective_from": c.effective_from.isoformat(),
                "recorded_at": iso(c.recorded_at),
            }
            for c in categories
        ],
        "badges": [
            {"uid": b.uid, "enrolled_at": iso(b.enrolled_at), "revoked_at": iso(b.revoked_at)}
            for b in badges
        ],
        "trainings": [
            {
                "machine_type": types.get(t.machine_type_id),
                "level": t.level.value,
                "granted_at": iso(t.granted_at),
                "expires_at": iso(t.expires_at),
                "supervised_only": t.supervised_only,
            }
            for t in trainings
        ],
        "sessions": [
            {
                "machine": s.machine,
                "started_at": iso(s.started_at),
                "ended_at": iso(s.ended_at),
                "duration_s": s.duration_s,
                "busy_s": s.busy_s,
                "end_reason": s.end_reason,
                "mode": s.mode,
            }
            for s in sessions
        ],
    }


def erase_member(session: Session, member: Member) -> dict[str, int]:
    """Remove what identifies the member; keep the history under their reference."""
    now = datetime.now(UTC)
    badges = session.exec(select(Badge).where(Badge.member_id == member.id)).all()
    uids = {b.uid for b in badges}
    for badge in badges:
        badge.revoked_at = badge.revoked_at or now
        badge.uid = "ERASED"
        session.add(badge)
    sessions = session.exec(
        select(MachineSession).where(MachineSession.member_ref == member.ref)
    ).all()
    for row in sessions:
        row.badge = ""
        session.add(row)
    scrubbed = 0
    for event in session.exec(select(Event).where(Event.type.in_(BADGE_EVENT_TYPES))):  # type: ignore[attr-defined]
        if event.data.get("member") == member.ref or event.data.get("badge") in uids:
            event.data = {k: v for k, v in event.data.items() if k != "badge"}
            session.add(event)
            scrubbed += 1
    member.name = ERASED_NAME
    member.email = None
    member.status = MemberStatus.LEFT
    session.add(member)
    return {"badges": len(badges), "sessions": len(sessions), "events": scrubbed}
