"""Machines and their live state."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from pydantic import field_validator
from sqlalchemy import func
from sqlmodel import Field, Session, SQLModel, col, select

from hub.allowlist_watch import list_state
from hub.api.changes import audit, get_machine, get_machine_type, invalid, republish
from hub.api.deps import (
    ADMIN,
    EVERYONE,
    MAINTAINERS,
    STAFF,
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
    Member,
    PrintJob,
    TelemetryPoint,
    TelemetrySample,
    User,
)
from hub.mqtt_accounts import check_plug_topic
from hub.services.machine_checks import kind_conflict
from protocol import limits
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


def machine_state(machine: Machine) -> tuple[str, dict[str, Any] | None]:
    status = machine.last_status if isinstance(machine.last_status, dict) else {}
    session = live_session(status.get("session")) if machine.online else None
    if not machine.online:
        return "offline", None
    if machine.locked or status.get("locked") is True:
        return ("in_use" if session else "locked"), session
    working = "printing" if _printing(machine) else "busy"
    busy = status.get("busy") is True
    if session:
        return (working if busy else "in_use"), session
    return (working if busy else "idle"), None


def _printing(machine: Machine) -> bool:
    telemetry = machine.last_telemetry if isinstance(machine.last_telemetry, dict) else {}
    return machine.kind == "printer" and finite(telemetry.get("progress")) is not None


# What the ingest stores is validated (protocol/limits.py), but rows written before those checks,
# by hand or by an older hub may hold anything: what is shown is read defensively, so a
# hostile row shows as "unknown", never as an error page.
def finite(value: Any) -> float | None:
    """`value` as a finite float, or None (text, booleans, NaN, infinities, huge integers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` with what a JSON answer refuses (NaN, infinities) as null, nesting cut at the
    protocol's depth."""
    if depth > limits.JSON_DEPTH_MAX:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v, depth + 1) for v in value]
    return value


def live_session(value: Any) -> dict[str, Any] | None:
    """A status's `session`, if it names a session and a member as text."""
    if not isinstance(value, dict):
        return None
    if not isinstance(value.get("session_id"), str) or not isinstance(value.get("member"), str):
        return None
    return value


def _interlocks(machine: Machine) -> dict[str, bool] | None:
    """The safety inputs of the last status, when it holds them as names to booleans (a row
    written by hand or by an older hub may hold anything: the page shows none rather than fail)."""
    raw = json_safe(machine.last_status)
    found = raw.get("interlocks") if isinstance(raw, dict) else None
    if not isinstance(found, dict):
        return None
    return {str(k): v for k, v in found.items() if isinstance(v, bool)}


def _started_at(live: dict[str, Any]) -> datetime | None:
    raw = live.get("started_at")
    if not isinstance(raw, str):
        return None
    try:
        started = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return started if started.tzinfo else started.replace(tzinfo=UTC)


def member_names(session: Session, refs: set[str]) -> dict[str, str]:
    """The names of these members, by ref, in one query: never the whole member table."""
    if not refs:
        return {}
    rows = session.exec(select(Member.ref, Member.name).where(col(Member.ref).in_(sorted(refs))))
    return {ref: name for ref, name in rows}


def names_shown(user: User, members_see_names: bool) -> bool:
    """Whether `user` sees who is using a machine: staff always; members only when the lab
    says so (`members_see_who_uses_machines`), otherwise "in use" and their own name only."""
    return user.role in STAFF or members_see_names


def machines_public(
    session: Session, *, viewer: User, members_see_names: bool, admin_fields: bool = False
) -> list[MachinePublic]:
    """Every machine with its live state as `viewer` may see it; with `admin_fields`, its
    agent_id and plug_topic too.

    Without them those fields are left unset, and the routes (`response_model_exclude_unset`)
    leave unset fields out of the JSON: other roles get no key rather than a misleading null.
    `in_use_by` is the name of the member in session only when `names_shown`; otherwise it is
    null, except on the viewer's own session."""
    types = {t.id: t for t in session.exec(select(MachineType))}
    machines = [
        (machine, *machine_state(machine))
        for machine in session.exec(select(Machine).order_by(Machine.code))
    ]
    # Only the members in a session shown: the live dashboard calls this every second.
    in_session = {
        live["member"] for _, _, live in machines if live and isinstance(live.get("member"), str)
    }
    if not names_shown(viewer, members_see_names):
        own = session.get(Member, viewer.member_id) if viewer.member_id else None
        in_session &= {own.ref} if own else set()
    members = member_names(session, in_session)
    out = []
    for machine, state, live in machines:
        telemetry = json_safe(machine.last_telemetry)
        if not isinstance(telemetry, dict):
            telemetry = {}
        progress = finite(telemetry.get("progress"))
        held = list_state(machine)
        mtype = types.get(machine.machine_type_id)
        admin: dict[str, Any] = (
            {"agent_id": machine.agent_id, "plug_topic": machine.plug_topic} if admin_fields else {}
        )
        out.append(
            MachinePublic(
                **admin,
                id=machine.id or 0,
                code=machine.code,
                name=machine.name,
                site=machine.site,
                location=machine.location,
                kind=machine.kind,
                machine_type=mtype.code if mtype else "?",
                kind_from_type=mtype is None or machine.kind == mtype.kind,
                kind_conflict=kind_conflict(machine),
                locked=machine.locked,
                lock_reason=machine.lock_reason,
                online=machine.online,
                last_seen=machine.last_seen,
                state=state,
                in_use_by=_in_use_by(live, members, names_shown(viewer, members_see_names)),
                session_id=live.get("session_id") if live else None,
                session_started_at=_started_at(live) if live else None,
                progress=min(max(progress, 0.0), 100.0)
                if state == "printing" and progress is not None
                else None,
                telemetry=telemetry if machine.online and telemetry else None,
                acl_version=machine.acl_version,
                agent_acl_version=held.held if held else None,
                acl_current=held.is_current if held else None,
                acl_refused=held.refused if held else None,
                interlocks=_interlocks(machine) if machine.online else None,
            )
        )
    return out


def _in_use_by(live: dict[str, Any] | None, names: dict[str, str], shown: bool) -> str | None:
    if not live:
        return None
    member = live.get("member")
    if isinstance(member, str) and member in names:
        return names[member]
    # A reference nobody is known by (yet): staff see it, members see "in use" only.
    return str(member) if shown and member is not None else None


def members_see_names(request: Request) -> bool:
    return bool(request.app.state.settings.members_see_who_uses_machines)


def sees_admin_fields(user: User) -> bool:
    """Who gets agent_id and plug_topic in machine answers: those who may change them."""
    return user.role in ADMIN


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
    if session.exec(select(Machine).where(Machine.code == code)).first() is None:
        raise HTTPException(status_code=404, detail=f"no machine {code!r}")
    count, seconds = session.exec(
        select(func.count(), func.coalesce(func.sum(MachineSession.duration_s), 0.0)).where(
            MachineSession.machine == code
        )
    ).one()
    busy = session.exec(
        select(func.coalesce(func.sum(BusyPeriod.busy_s), 0.0)).where(BusyPeriod.machine == code)
    ).one()
    jobs = session.exec(
        select(func.count()).select_from(PrintJob).where(PrintJob.machine == code)
    ).one()
    failed = session.exec(
        select(func.count())
        .select_from(PrintJob)
        .where(PrintJob.machine == code, PrintJob.state == "failed")
    ).one()
    return MachineCounters(
        machine=code,
        sessions=int(count),
        session_hours=round(float(seconds or 0) / 3600, 4),
        busy_hours=round(float(busy or 0) / 3600, 4),
        jobs=int(jobs),
        jobs_failed=int(failed),
    )


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
    if session.exec(select(Machine).where(Machine.code == code)).first() is None:
        raise HTTPException(status_code=404, detail=f"no machine {code!r}")
    query = select(TelemetrySample).where(TelemetrySample.machine == code)
    if since:
        query = query.where(col(TelemetrySample.ts) >= since)
    if until:
        query = query.where(col(TelemetrySample.ts) < until)
    rows = session.exec(query.order_by(col(TelemetrySample.ts)).limit(limit)).all()
    return [
        TelemetryPoint(
            ts=r.ts,
            resolution_s=r.resolution_s,
            values=values if isinstance(values := json_safe(r.values), dict) else {},
        )
        for r in rows
    ]


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
    machine = get_machine(session, code)
    machine.locked = locked
    machine.lock_reason = reason if locked else None
    session.add(machine)
    audit(
        session,
        user,
        "machine.lock" if locked else "machine.unlock",
        "machine",
        code,
        reason=reason or "",
    )
    session.commit()
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
    if not body.reason.strip():
        raise invalid("reason", "say why, members see it")
    return _set_lock(code, True, body.reason.strip(), session, user, request, background)


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
