"""Machines and their live state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from pydantic import field_validator
from sqlmodel import Field, Session, SQLModel, col, select

from hub.api.changes import actor, audit, get_machine, get_machine_type, invalid, republish
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
    BusyPeriod,
    Machine,
    MachineCounters,
    MachineKind,
    MachinePublic,
    MachineSession,
    MachineType,
    PrintJob,
    TelemetryPoint,
    User,
)
from hub.services import machine_views as views
from hub.services.broker_accounts import check_plug_topic
from hub.services.lockout import set_lock
from hub.services.machine_views import machines_public, sees_admin_fields
from protocol.topics import check_slug

router = APIRouter(prefix="/api/v1/machines", tags=["machines"])
types_router = APIRouter(prefix="/api/v1/machine-types", tags=["machines"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No machine with this code"}}
PLUG_TOPIC_HELP = (
    "The one topic a smart plug the agent reads publishes its power on, on this broker "
    "(`tele/<topic>/SENSOR` for Tasmota, `<topic>/status/switch:<channel>` for Shelly Gen2, "
    "`shellies/<topic>/relay/<channel>/power` for Gen1): `atelier hub mqtt-credentials` lets "
    "the machine's account read it and gives the plug an account, plug-<code>, that may "
    "publish it and nothing else."
)


class MachineCreate(SQLModel):
    code: str
    name: str
    site: str
    location: str = ""
    kind: MachineKind | None = Field(
        default=None, description="Left out: the kind of its machine type (printer, laser, ...)"
    )
    machine_type: str
    agent_id: str | None = None
    plug_topic: str | None = Field(default=None, description=PLUG_TOPIC_HELP)

    @field_validator("code", "site")
    @classmethod
    def _slug(cls, value: str) -> str:
        return check_slug(value, "code/site")

    @field_validator("plug_topic")
    @classmethod
    def _plug(cls, value: str | None) -> str | None:
        return None if value is None else check_plug_topic(value)


class MachineUpdate(SQLModel):
    name: str | None = None
    location: str | None = None
    kind: MachineKind | None = None
    machine_type: str | None = None
    agent_id: str | None = None
    plug_topic: str | None = Field(default=None, description=PLUG_TOPIC_HELP + " Null: none.")

    @field_validator("plug_topic")
    @classmethod
    def _plug(cls, value: str | None) -> str | None:
        return None if value is None else check_plug_topic(value)


class LockRequest(SQLModel):
    reason: str


class MachineTypeCreate(SQLModel):
    code: str
    name: str
    kind: MachineKind = MachineKind.OTHER

    @field_validator("code")
    @classmethod
    def _slug(cls, value: str) -> str:
        return check_slug(value, "code")


class MachineTypePublic(SQLModel):
    id: int
    code: str
    name: str
    kind: MachineKind


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
    for machine in machines_public(
        session,
        viewer=user,
        members_see_names=members_see_names(request),
        admin_fields=sees_admin_fields(user),
    ):
        if machine.code == code:
            return machine
    raise HTTPException(status_code=404, detail=f"no machine {code!r}")


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
    if session.exec(select(Machine).where(Machine.code == body.code)).first() is not None:
        raise HTTPException(status_code=409, detail=f"a machine {body.code!r} already exists")
    mtype = get_machine_type(session, body.machine_type)
    machine = Machine(
        code=body.code,
        name=body.name,
        site=body.site,
        location=body.location,
        kind=body.kind or MachineKind(mtype.kind),
        machine_type_id=mtype.id or 0,
        agent_id=body.agent_id,
        plug_topic=body.plug_topic,
    )
    session.add(machine)
    audit(session, user, "machine.create", "machine", body.code, machine_type=mtype.code)
    session.commit()
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
    machine = get_machine(session, code)
    changes = body.model_dump(exclude_unset=True)
    for field in ("name", "location", "kind", "machine_type"):
        if field in changes and changes[field] is None:
            raise invalid(f"{field}", "may not be null")
    if "machine_type" in changes:
        machine.machine_type_id = get_machine_type(session, changes.pop("machine_type")).id or 0
    machine.sqlmodel_update(changes)
    session.add(machine)
    audit(session, user, "machine.update", "machine", code, fields=sorted(body.model_fields_set))
    session.commit()
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
    machine = get_machine(session, code)
    used = (
        session.exec(select(MachineSession.id).where(MachineSession.machine == code)).first()
        or session.exec(select(BusyPeriod.id).where(BusyPeriod.machine == code)).first()
        or session.exec(select(PrintJob.id).where(PrintJob.machine == code)).first()
    )
    if used is not None:
        raise HTTPException(
            status_code=409,
            detail="this machine has recorded use; lock it out instead, the history stays",
        )
    audit(session, user, "machine.delete", "machine", code)
    session.delete(machine)
    session.commit()


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
    return list(session.exec(select(MachineType).order_by(col(MachineType.code))).all())


@types_router.post(
    "",
    response_model=MachineTypePublic,
    status_code=201,
    dependencies=[Allow(ADMIN)],
    responses={409: {"description": "The code is taken"}},
)
def create_type(body: MachineTypeCreate, session: SessionDep, user: CurrentUser) -> MachineType:
    if session.exec(select(MachineType).where(MachineType.code == body.code)).first():
        raise HTTPException(status_code=409, detail=f"a machine type {body.code!r} already exists")
    mtype = MachineType(code=body.code, name=body.name, kind=body.kind)
    session.add(mtype)
    audit(session, user, "machine_type.create", "machine_type", body.code)
    session.commit()
    session.refresh(mtype)
    return mtype
