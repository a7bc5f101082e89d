"""Machines and their live state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from sqlmodel import Session, SQLModel

from hub.api.changes import actor, republish
from hub.api.deps import (
    ADMIN,
    EVERYONE,
    MAINTAINERS,
    Allow,
    CurrentUser,
    QueryMoment,
    SessionDep,
)
from hub.models import (
    MachineCounters,
    MachineCreate,
    MachinePublic,
    MachineType,
    MachineTypeCreate,
    MachineTypePublic,
    MachineUpdate,
    TelemetryPoint,
    User,
)
from hub.services import machine_records as records
from hub.services import machine_views as views
from hub.services.lockout import set_lock
from hub.services.machine_views import machines_public, sees_admin_fields

router = APIRouter(prefix="/api/v1/machines", tags=["machines"])
types_router = APIRouter(prefix="/api/v1/machine-types", tags=["machines"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No machine with this code"}}


class LockRequest(SQLModel):
    reason: str


def members_see_names(request: Request) -> bool:
    return bool(request.app.state.settings.members_see_who_uses_machines)


@router.get(
    "",
    response_model=list[MachinePublic],
    dependencies=[Allow(EVERYONE)],
    response_model_exclude_unset=True,  # the admin fields, unset for others
)
def list_machines(session: SessionDep, user: CurrentUser, request: Request) -> list[MachinePublic]:
    """Every machine with its live state: offline, idle, in_use, busy or locked. Who is using
    it (`in_use_by`) only for staff, or for members when the lab's setting
    `members_see_who_uses_machines` is on."""
    return machines_public(
        session,
        viewer=user,
        members_see_names=members_see_names(request),
        admin_fields=sees_admin_fields(user),
    )


@router.get(
    "/{code}/counters",
    response_model=MachineCounters,
    responses=NOT_FOUND,
    dependencies=[Allow(EVERYONE)],
)
def machine_counters(code: str, session: SessionDep) -> MachineCounters:
    """Metered use since the start: what maintenance and billing read."""
    return views.machine_counters(session, code=code)


@router.get(
    "/{code}/telemetry",
    response_model=list[TelemetryPoint],
    responses=NOT_FOUND,
    dependencies=[Allow(EVERYONE)],
)
def machine_telemetry(
    code: str,
    session: SessionDep,
    since: Annotated[QueryMoment | None, Query(alias="from")] = None,
    until: Annotated[QueryMoment | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[TelemetryPoint]:
    """Samples oldest first: raw for the last day, one per minute before that."""
    return views.machine_telemetry(session, code=code, since=since, until=until, limit=limit)


def _one(session: Session, code: str, user: User, request: Request) -> MachinePublic:
    views.known_machine(session, code)  # NotFound (404) naming the codes there are
    return next(
        machine
        for machine in machines_public(
            session,
            viewer=user,
            members_see_names=members_see_names(request),
            admin_fields=sees_admin_fields(user),
        )
        if machine.code == code
    )


@router.get(
    "/{code}",
    response_model=MachinePublic,
    responses=NOT_FOUND,
    dependencies=[Allow(EVERYONE)],
    response_model_exclude_unset=True,  # the admin fields, unset for others
)
def read_machine(
    code: str, session: SessionDep, user: CurrentUser, request: Request
) -> MachinePublic:
    return _one(session, code, user, request)


@router.post(
    "",
    response_model=MachinePublic,
    status_code=201,
    dependencies=[Allow(ADMIN)],
    responses={409: {"description": "The code is taken"}},
    response_model_exclude_unset=True,  # the admin fields, unset for others
)
def create_machine(
    body: MachineCreate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> MachinePublic:
    records.create_machine(session, **body.model_dump(), actor=actor(user))
    republish(request, background, [body.code])
    return _one(session, body.code, user, request)


@router.patch(
    "/{code}",
    response_model=MachinePublic,
    responses=NOT_FOUND,
    dependencies=[Allow(ADMIN)],
    response_model_exclude_unset=True,  # the admin fields, unset for others
)
def update_machine(
    code: str,
    body: MachineUpdate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> MachinePublic:
    changes = body.model_dump(exclude_unset=True)
    records.update_machine(session, code=code, changes=changes, actor=actor(user))
    republish(request, background, [code])
    return _one(session, code, user, request)


@router.delete(
    "/{code}",
    status_code=204,
    dependencies=[Allow(ADMIN)],
    responses={**NOT_FOUND, 409: {"description": "The machine has history"}},
)
def delete_machine(code: str, session: SessionDep, user: CurrentUser) -> None:
    """Only a machine with no sessions or use recorded; retire others by locking them."""
    records.delete_machine(session, code=code, actor=actor(user))


def _set_lock(
    code: str,
    locked: bool,
    reason: str | None,
    session: Session,
    user: Any,
    request: Request,
    background: BackgroundTasks,
) -> MachinePublic:
    set_lock(session, code=code, locked=locked, reason=reason, actor=actor(user))
    republish(request, background, [code])
    return _one(session, code, user, request)


@router.post(
    "/{code}/lock",
    response_model=MachinePublic,
    responses=NOT_FOUND,
    dependencies=[Allow(MAINTAINERS)],
    response_model_exclude_unset=True,  # the admin fields, unset for others
)
def lock(
    code: str,
    body: LockRequest,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> MachinePublic:
    """Lock a machine out: only maintainers may use it until it is unlocked."""
    return _set_lock(code, True, body.reason, session, user, request, background)


@router.post(
    "/{code}/unlock",
    response_model=MachinePublic,
    responses=NOT_FOUND,
    dependencies=[Allow(MAINTAINERS)],
    response_model_exclude_unset=True,  # the admin fields, unset for others
)
def unlock(
    code: str,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> MachinePublic:
    return _set_lock(code, False, None, session, user, request, background)


@types_router.get("", response_model=list[MachineTypePublic], dependencies=[Allow(EVERYONE)])
def list_types(session: SessionDep) -> list[MachineType]:
    return records.list_types(session)


@types_router.post(
    "",
    response_model=MachineTypePublic,
    status_code=201,
    dependencies=[Allow(ADMIN)],
    responses={409: {"description": "The code is taken"}},
)
def create_type(body: MachineTypeCreate, session: SessionDep, user: CurrentUser) -> MachineType:
    return records.create_type(session, **body.model_dump(), actor=actor(user))
