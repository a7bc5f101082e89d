"""Machine sessions and raw events as the machines sent them, newest first, for the API and
the machine pages: members see their own sessions only; events are for staff."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from hub.core.errors import Forbidden
from hub.models import Event, EventPublic, MachineSession, Member, Role, User
from hub.services.machine_views import json_safe


def list_sessions(
    session: Session,
    *,
    viewer: User,
    machine: str | None = None,
    member: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    open_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[MachineSession]:
    """Newest first; `since`/`until` bound the start time. A member sees their own sessions
    only: asking for anyone else's (or having no member record) is Forbidden."""
    if viewer.role is Role.MEMBER:
        own = session.get(Member, viewer.member_id) if viewer.member_id else None
        if own is None or member not in (None, own.ref):
            raise Forbidden("session.not_own", field="member")
        member = own.ref
    query = select(MachineSession)
    if machine:
        query = query.where(MachineSession.machine == machine)
    if member:
        query = query.where(MachineSession.member_ref == member)
    if since:
        query = query.where(col(MachineSession.started_at) >= since)
    if until:
        query = query.where(col(MachineSession.started_at) < until)
    if open_only:
        query = query.where(col(MachineSession.ended_at).is_(None))
    query = query.order_by(col(MachineSession.started_at).desc(), col(MachineSession.id))
    return list(session.exec(query.offset(offset).limit(limit)).all())


def list_events(
    session: Session,
    *,
    machine: str | None = None,
    type: str | None = None,  # noqa: A002 - the API's query parameter
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[EventPublic]:
    """Events as the machines sent them, newest first; `since`/`until` bound the event time."""
    query = select(Event)
    if machine:
        query = query.where(Event.machine == machine)
    if type:
        query = query.where(Event.type == type)
    if since:
        query = query.where(col(Event.ts) >= since)
    if until:
        query = query.where(col(Event.ts) < until)
    query = query.order_by(col(Event.ts).desc(), col(Event.id)).offset(offset).limit(limit)
    return [
        EventPublic(
            id=str(e.id),
            site=e.site,
            machine=e.machine,
            seq=e.seq,
            ts=e.ts,
            type=e.type,
            data=data if isinstance(data := json_safe(e.data), dict) else {},
            received_at=e.received_at,
        )
        for e in session.exec(query)
    ]
