"""Members, as the API, the web and the CLI look them up: by id, by what a person types."""

from __future__ import annotations

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import InvalidValue, NotFound
from hub.models import Member, MemberStatus
from protocol.limits import INT32_MAX


def member_by_id(session: Session, *, member_id: int, field: str = "member_id") -> Member:
    """The member with this id, or NotFound naming `field`. Ids are 32-bit on PostgreSQL: a
    larger one names no member (never the driver's overflow)."""
    member = session.get(Member, member_id) if 1 <= member_id <= INT32_MAX else None
    if member is None:
        raise NotFound("member.unknown_id", field=field, params={"member": member_id})
    return member


def members_by_id(session: Session, ids: set[int]) -> dict[int, Member]:
    """These members, by id, in one query: a page never loads the whole member table."""
    wanted = sorted(i for i in ids if 1 <= i <= INT32_MAX)
    if not wanted:
        return {}
    return {m.id: m for m in session.exec(select(Member).where(col(Member.id).in_(wanted))) if m.id}


def member_by_text(session: Session, *, value: str, field: str) -> Member | None:
    """A member as a person types one: their number, email or pseudonymous ref; None when
    empty. One that names nobody is a mistake in `field`."""
    value = value.strip()
    if not value:
        return None
    member: Member | None = None
    if value.isdigit():
        number = int(value)
        member = session.get(Member, number) if 1 <= number <= INT32_MAX else None
    else:
        member = session.exec(select(Member).where(Member.email == value.lower())).first()
        if member is None:
            member = session.exec(select(Member).where(Member.ref == value)).first()
    if member is None:
        raise InvalidValue("member.unknown_text", field=field, params={"value": value})
    return member


def set_member_status(session: Session, *, email: str, status: MemberStatus, actor: str) -> Member:
    """Suspend (every machine refuses their badges) or reactivate a member. The caller commits
    and re-publishes the allow-lists."""
    member = session.exec(select(Member).where(Member.email == email.lower())).first()
    if member is None:
        raise NotFound("member.unknown_email", field="email", params={"email": email})
    before = member.status.value
    member.status = status
    session.add(member)
    record(
        session,
        actor=actor,
        action=f"member.{status.value}",
        entity="member",
        entity_id=member.ref,
        before=before,
    )
    return member
