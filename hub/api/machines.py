"""Machines and their live state."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import Session, col, select

from hub.api.deps import SessionDep
from hub.models import (
    BusyPeriod,
    Machine,
    MachineCounters,
    MachinePublic,
    MachineSession,
    MachineType,
    Member,
    PrintJob,
    TelemetryPoint,
    TelemetrySample,
)

router = APIRouter(prefix="/api/v1/machines", tags=["machines"])


def machine_state(machine: Machine) -> tuple[str, dict[str, Any] | None]:
    status = machine.last_status or {}
    session = status.get("session") if machine.online else None
    if not machine.online:
        return "offline", None
    if machine.locked or status.get("locked"):
        return ("in_use" if session else "locked"), session
    working = "printing" if _printing(machine) else "busy"
    if session:
        return (working if status.get("busy") else "in_use"), session
    return (working if status.get("busy") else "idle"), None


def _printing(machine: Machine) -> bool:
    telemetry = machine.last_telemetry or {}
    return machine.kind == "printer" and telemetry.get("progress") is not None


def machines_public(session: Session) -> list[MachinePublic]:
    types = {t.id: t.code for t in session.exec(select(MachineType))}
    members = {m.ref: m.name for m in session.exec(select(Member))}
    out = []
    for machine in session.exec(select(Machine).order_by(Machine.code)):
        state, live = machine_state(machine)
        started = live.get("started_at") if live else None
        telemetry = machine.last_telemetry or {}
        out.append(
            MachinePublic(
                id=machine.id or 0,
                code=machine.code,
                name=machine.name,
                site=machine.site,
                location=machine.location,
                kind=machine.kind,
                machine_type=types.get(machine.machine_type_id, "?"),
                locked=machine.locked,
                lock_reason=machine.lock_reason,
                online=machine.online,
                last_seen=machine.last_seen,
                state=state,
                in_use_by=members.get(live["member"], live["member"]) if live else None,
                session_id=live.get("session_id") if live else None,
                session_started_at=datetime.fromisoformat(started) if started else None,
                progress=telemetry.get("progress") if state == "printing" else None,
                telemetry=telemetry if machine.online and telemetry else None,
            )
        )
    return out


@router.get("", response_model=list[MachinePublic])
def list_machines(session: SessionDep) -> list[MachinePublic]:
    """Every machine with its live state: offline, idle, in_use, busy or locked."""
    return machines_public(session)


@router.get(
    "/{code}/counters",
    response_model=MachineCounters,
    responses={404: {"description": "No machine with this code"}},
)
def machine_counters(code: str, session: SessionDep) -> MachineCounters:
    """Metered use since the start: what maintenance and billing read."""
    from fastapi import HTTPException
    from sqlalchemy import func

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
        session_hours=round(float(seconds) / 3600, 4),
        busy_hours=round(float(busy) / 3600, 4),
        jobs=int(jobs),
        jobs_failed=int(failed),
    )


@router.get(
    "/{code}/telemetry",
    response_model=list[TelemetryPoint],
    responses={404: {"description": "No machine with this code"}},
)
def machine_telemetry(
    code: str,
    session: SessionDep,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[TelemetryPoint]:
    """Samples oldest first: raw for the last day, one per minute before that."""
    from fastapi import HTTPException

    if session.exec(select(Machine).where(Machine.code == code)).first() is None:
        raise HTTPException(status_code=404, detail=f"no machine {code!r}")
    query = select(TelemetrySample).where(TelemetrySample.machine == code)
    if since:
        query = query.where(col(TelemetrySample.ts) >= since)
    if until:
        query = query.where(col(TelemetrySample.ts) < until)
    rows = session.exec(query.order_by(col(TelemetrySample.ts)).limit(limit)).all()
    return [TelemetryPoint(ts=r.ts, resolution_s=r.resolution_s, values=r.values) for r in rows]
