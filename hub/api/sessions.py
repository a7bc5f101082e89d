"""Badge sessions: who used which machine, when, for how long."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import STAFF, Allow, CurrentUser, QueryMoment, SessionDep
from hub.models import EventPublic, MachineSession, SessionPublic
from hub.services import sessions

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
events_router = APIRouter(prefix="/api/v1/events", tags=["events"])


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
    return sessions.list_sessions(
        session,
        viewer=user,
        machine=machine,
        member=member,
        since=since,
        until=until,
        open_only=open_only,
        limit=limit,
        offset=offset,
    )


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
    return sessions.list_events(
        session, machine=machine, type=type, since=since, until=until, limit=limit, offset=offset
    )
