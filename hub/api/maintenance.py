"""Maintenance over HTTP: what is due, the maintainers' calendar feed, incidents from the web."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlmodel import SQLModel, col, select

from hub.api.deps import SessionDep
from hub.maintenance_service import task_states
from hub.maintenance_store import (
    Incident,
    IncidentCreate,
    IncidentPublic,
    incident_public,
    open_incident,
)
from hub.models import Machine

router = APIRouter(prefix="/api/v1/maintenance", tags=["maintenance"])


class TaskDuePublic(SQLModel):
    task_id: int
    title: str
    machine: str
    counter: str
    critical: bool
    every_hours: float | None
    every_days: int | None
    status: str  # ok, due_soon, due, overdue
    counter_hours: float
    hours_left: float | None
    days_left: int | None
    due_on: date | None  # a calendar date, or an estimate from the last 28 days of use
    last_signed_off_at: datetime | None


@router.get("/tasks", response_model=list[TaskDuePublic])
def list_tasks(
    session: SessionDep,
    machine: Annotated[str | None, Query(description="only this machine")] = None,
) -> list[TaskDuePublic]:
    """Every active task on every machine it applies to, with its status now."""
    states = task_states(
        session,
        now=datetime.now(UTC),
        machine_codes=[machine] if machine else None,
        with_estimates=True,
    )
    return [
        TaskDuePublic(
            task_id=s.task.id or 0,
            title=s.task.title,
            machine=s.machine.code,
            counter=s.task.counter.value,
            critical=s.task.critical,
            every_hours=s.task.every_hours,
            every_days=s.task.every_days,
            status=s.state.status.value,
            counter_hours=round(s.counter_hours, 4),
            hours_left=None
            if s.state.busy_hours_left is None
            else round(s.state.busy_hours_left, 4),
            days_left=s.state.days_left,
            due_on=s.due_on,
            last_signed_off_at=s.last_sign_off.signed_at if s.last_sign_off else None,
        )
        for s in states
    ]


@router.get(
    "/calendar.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}, "description": "RFC 5545 calendar"}},
)
def calendar_feed(request: Request, session: SessionDep) -> Response:
    """Due dates as an iCalendar feed a maintainer's calendar subscribes to."""
    from hub.maintenance_service import calendar

    site = request.app.state.settings.site
    body = calendar(session, now=datetime.now(UTC), site=site)
    return Response(
        content=body.encode("utf-8"),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="atelier-{site}-maintenance.ics"'},
    )


@router.get("/incidents", response_model=list[IncidentPublic])
def list_incidents(
    session: SessionDep,
    include_closed: Annotated[bool, Query(alias="all")] = False,
) -> list[IncidentPublic]:
    """Open incidents, newest first (`?all=true` adds the closed ones)."""
    machines = {m.id: m.code for m in session.exec(select(Machine))}
    query = select(Incident).order_by(col(Incident.opened_at).desc())
    if not include_closed:
        query = query.where(col(Incident.closed_at).is_(None))
    return [
        incident_public(i, machines.get(i.machine_id, "?")) for i in session.exec(query.limit(500))
    ]


@router.post(
    "/incidents",
    response_model=IncidentPublic,
    status_code=201,
    responses={404: {"description": "No machine with this code"}},
)
def report_incident(body: IncidentCreate, session: SessionDep) -> IncidentPublic:
    """Report a problem on a machine from the web: opens a ticket."""
    machine = session.exec(select(Machine).where(Machine.code == body.machine)).first()
    if machine is None:
        raise HTTPException(status_code=404, detail=f"no machine {body.machine!r}")
    if not body.text.strip():
        raise HTTPException(status_code=422, detail="text is empty: say what is wrong")
    incident = open_incident(
        session,
        machine=machine,
        source="web",
        text=body.text.strip(),
        reported_by=body.reported_by,
    )
    session.commit()
    session.refresh(incident)
    return incident_public(incident, machine.code)
