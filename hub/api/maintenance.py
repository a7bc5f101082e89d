"""Maintenance over HTTP: what is due, sign-offs, the maintainers' calendar feed, incidents."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from sqlmodel import SQLModel

from hub.api.changes import actor, republish
from hub.api.deps import MAINTAINERS, Allow, CurrentUser, PathId, SessionDep
from hub.models import (
    IncidentClose,
    IncidentCreate,
    IncidentPublic,
    Machine,
    MaintenanceTaskRow,
    Member,
    SignOffCreate,
    SignOffPublic,
)
from hub.services import incidents
from hub.services.incidents import report_incident as report_incident_service
from hub.services.incidents import resolve_incident as resolve_incident_service
from hub.services.maintenance.interlocks import interlock_faults
from hub.services.maintenance.records import incident_public
from hub.services.maintenance.signoffs import sign_off_as
from hub.services.maintenance.tasks import task_states

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


class InterlockFaultsPublic(SQLModel):
    machine: str
    interlock: str
    kind: str  # extraction, chiller_flow, lid, fire_suppression, other
    count: int
    last_at: datetime


@router.get("/interlock-faults", response_model=list[InterlockFaultsPublic])
def list_interlock_faults(session: SessionDep) -> list[InterlockFaultsPublic]:
    """Interlock faults of the last 90 days per machine and interlock, most frequent first."""
    return [
        InterlockFaultsPublic(
            machine=f.machine, interlock=f.interlock, kind=f.kind, count=f.count, last_at=f.last_at
        )
        for f in interlock_faults(session, now=datetime.now(UTC))
    ]


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


@router.post(
    "/tasks/{task_id}/sign-off",
    response_model=SignOffPublic,
    status_code=201,
    dependencies=[Allow(MAINTAINERS)],
    responses={
        403: {"description": "This login's member is no maintainer of the machine's type"},
        404: {"description": "No active maintenance task with this id"},
        409: {"description": "The machine's counter is below the last sign-off"},
    },
)
def sign_off(
    task_id: PathId,
    body: SignOffCreate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> SignOffPublic:
    """Sign a task's work off as the member this login belongs to, who must hold a valid
    maintainer training for the machine's type: the task's counter on the machine starts
    again, and the machine is unlocked when its maintenance lockout came from this task and
    no other critical task is overdue (its allow-list is then re-published)."""
    # A HubError (a login without a member, unknown task, not a maintainer, which machine)
    # reaches hub/api/errors.py, which answers its status with its code and field; the
    # session rolls back as it closes.
    result = sign_off_as(
        session,
        user=user,
        task_id=task_id,
        note=body.note,
        now=datetime.now(UTC),
        actor=actor(user),
        machine=body.machine,
    )
    session.commit()
    if result.check.changed:
        republish(request, background, result.check.changed)
    row = result.sign_off
    signer = session.get(Member, user.member_id)
    assert signer is not None  # sign_off_as found it
    task = session.get(MaintenanceTaskRow, task_id)
    assert task is not None  # sign_off_task found it
    return SignOffPublic(
        id=row.id or 0,
        task_id=task_id,
        machine=result.machine,
        maintainer=signer.ref,
        signed_at=row.signed_at,
        counter=task.counter.value,
        counter_hours=round(row.counter_hours, 4),
        note=row.note,
        unlocked=result.unlocked,
        still_overdue=result.check.overdue_critical.get(result.machine, []),
    )


@router.get(
    "/calendar.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}, "description": "RFC 5545 calendar"}},
)
def calendar_feed(request: Request, session: SessionDep) -> Response:
    """Due dates as an iCalendar feed a maintainer's calendar subscribes to."""
    from hub.services.maintenance.tasks import calendar

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
    return incidents.list_incidents(session, include_closed=include_closed)


@router.post(
    "/incidents",
    response_model=IncidentPublic,
    status_code=201,
    responses={404: {"description": "No machine with this code"}},
)
def report_incident(body: IncidentCreate, session: SessionDep) -> IncidentPublic:
    """Report a problem on a machine from the web: opens a ticket."""
    incident, machine = report_incident_service(
        session, machine=body.machine, text=body.text, source="web", reported_by=body.reported_by
    )
    session.commit()
    session.refresh(incident)
    return incident_public(incident, machine.code)


@router.post(
    "/incidents/{incident_id}/close",
    response_model=IncidentPublic,
    dependencies=[Allow(MAINTAINERS)],
    responses={
        404: {"description": "No incident with this id"},
        409: {"description": "The incident is already closed"},
    },
)
def resolve_incident(
    incident_id: PathId, body: IncidentClose, session: SessionDep, user: CurrentUser
) -> IncidentPublic:
    """Close an incident with what was found and done (its resolution)."""
    incident = resolve_incident_service(
        session, incident_id=incident_id, by=actor(user), note=body.note
    )
    session.commit()
    session.refresh(incident)
    machine = session.get(Machine, incident.machine_id)
    return incident_public(incident, machine.code if machine else "?")
