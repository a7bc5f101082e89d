"""Members, as the API, the web and the CLI look them up."""

from __future__ import annotations

from sqlmodel import Session

from hub.core.errors import NotFound
from hub.models import Member
from protocol.limits import INT32_MAX


def member_by_id(session: Session, *, member_id: int, field: str = "member_id") -> Member:
    """The member with this id, or NotFound naming `field`. Ids are 32-bit on PostgreSQL: a
    larger one names no member (never the driver's overflow)."""
    member = session.get(Member, member_id) if 1 <= member_id <= INT32_MAX else None
    if member is None:
        raise NotFound("member.unknown_id", field=field, params={"member": member_id})
    return member
