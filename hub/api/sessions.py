"""Badge sessions: who used which machine, when, for how long."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from hub.api.deps import SessionDep
from hub.models import MachineSession, SessionPublic

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])


@router.get("", response_model=list[SessionPublic])
def list_sessions(
    session: SessionDep,
    machine: str | None = None,
    member: Annotated[str | None, Query(description="member reference, e.g. m-3fa2c1d0")] = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    open_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[MachineSession]:
    """Newest first; `from`/`to` bound the start time."""
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
