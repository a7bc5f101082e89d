"""Machines and their live state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from sqlmodel import Session, select

from hub.api.deps import SessionDep
from hub.models import Machine, MachinePublic, MachineType, Member

router = APIRouter(prefix="/api/v1/machines", tags=["machines"])


def machine_state(machine: Machine) -> tuple[str, dict[str, Any] | None]:
    status = machine.last_status or {}
    session = status.get("session") if machine.online else None
    if not machine.online:
        return "offline", None
    if machine.locked or status.get("locked"):
        return ("in_use" if session else "locked"), session
    if session:
        return ("busy" if status.get("busy") else "in_use"), session
    return ("busy" if status.get("busy") else "idle"), None


def machines_public(session: Session) -> list[MachinePublic]:
    types = {t.id: t.code for t in session.exec(select(MachineType))}
    members = {m.ref: m.name for m in session.exec(select(Member))}
    out = []
    for machine in session.exec(select(Machine).order_by(Machine.code)):
        state, live = machine_state(machine)
        started = live.get("started_at") if live else None
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
            )
        )
    return out


@router.get("", response_model=list[MachinePublic])
def list_machines(session: SessionDep) -> list[MachinePublic]:
    """Every machine with its live state: offline, idle, in_use, busy or locked."""
    return machines_public(session)
