"""Machines as people watch them: live state, who is on what, metered counters, telemetry.

The API's machine routes, the dashboard and the machine pages all read these. What the ingest
stores is validated (protocol/limits.py), but rows written before those checks, by hand or by
an older hub, may hold anything: everything here is read defensively, so a hostile row shows as
"unknown", never as an error page.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.allowlist_watch import list_state
from hub.core.errors import NotFound
from hub.models import (
    BusyPeriod,
    Machine,
    MachineCounters,
    MachinePublic,
    MachineSession,
    MachineType,
    Member,
    PrintJob,
    Role,
    TelemetryPoint,
    TelemetrySample,
    User,
)
from hub.services.machine_checks import kind_conflict
from protocol import limits


def known_machine(session: Session, code: str) -> Machine:
    """The machine with this code, or NotFound naming the codes there are."""
    # PostgreSQL refuses a NUL in a text parameter outright: no machine has one anyway.
    machine = (
        session.exec(select(Machine).where(Machine.code == code)).first()
        if "\x00" not in code
        else None
    )
    if machine is None:
        known = ", ".join(session.exec(select(Machine.code).order_by(Machine.code)).all())
        raise NotFound(
            "machine.unknown",
            field="machine",
            params={"machine": code[:100], "known": known or "-"},
        )
    return machine


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
    return user.role is not Role.MEMBER or members_see_names


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


def sees_admin_fields(user: User) -> bool:
    """Who gets agent_id and plug_topic in machine answers: those who may change them."""
    return user.role is Role.ADMIN


def machine_counters(session: Session, *, code: str) -> MachineCounters:
    """Metered use since the start: what maintenance and billing read."""
    known_machine(session, code)
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


def machine_telemetry(
    session: Session,
    *,
    code: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[TelemetryPoint]:
    """Samples oldest first: raw for the last day, one per minute before that."""
    known_machine(session, code)
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
