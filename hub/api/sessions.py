"""Badge sessions: who used which machine, when, for how long."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlmodel import SQLModel, col, select

from hub.api.deps import STAFF, Allow, CurrentUser, QueryMoment, SessionDep
from hub.api.machines import json_safe
from hub.models import Event, MachineSession, Member, SessionPublic

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
events_router = APIRouter(prefix="/api/v1/events", tags=["events"])


class EventPublic(SQLModel):
    id: str
    site: str
    machine: str
    seq: int
    ts: datetime
    type: str
    data: dict[str, Any]
    received_at: datetime


@router.get("", response_model=list[SessionPublic])
def list_sessions(
    session: SessionDep,
    user: CurrentUser,
    machine: str | None = None,
    member: Annotated[str | None, Query(description="member reference, e.g. m-3fa2c1d0")] = None,
    since: Annotated[QueryMoment | None, Query(alias="from")] = None,
    until: Annotated[QueryMoment | None, Query(alias="to")] = None,
    open_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[MachineSession]:
    """Newest first; `from`/`to` bound the start time. Members see their own sessions only."""
    if user.role not in STAFF:
        own = session.get(Member, user.member_id) if user.member_id else None
        if own is None or member not in (None, own.ref):
            raise HTTPException(status_code=403, detail="members may only see their own data")
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


@events_router.get("", response_model=list[EventPublic], dependencies=[Allow(STAFF)])
def list_events(
    session: SessionDep,
    machine: str | None = None,
    type: Annotated[str | None, Query(description="e.g. badge.denied")] = None,
    since: Annotated[QueryMoment | None, Query(alias="from")] = None,
    until: Annotated[QueryMoment | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[EventPublic]:
    """Events as the machines sent them, newest first; `from`/`to` bound the event time."""
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
