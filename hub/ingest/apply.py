"""What each stored event or status does to the hub's tables: sessions, busy periods, print
jobs and the machine's live state. Called by the ingest writer inside its batch transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from hub.models import BusyPeriod, Machine, MachineSession, PrintJob
from hub.services.materials import attach_spool, count_filament
from protocol import limits
from protocol.envelope import Envelope, EventType
from protocol.messages import Status


def apply_session(session: Session, site: str, env: Envelope) -> None:
    data = env.data
    if env.type is EventType.SESSION_STARTED:
        row = session.get(MachineSession, data["session_id"])
        if row is None:
            row = MachineSession(
                id=data["session_id"], site=site, machine=env.machine, member_ref=data["member"]
            )
        row.badge = data.get("badge", "")
        row.mode = data.get("mode") or "normal"
        row.supervisor_ref = data.get("supervisor")
        row.started_at = env.ts
        session.add(row)
    elif env.type is EventType.SESSION_ENDED:
        row = session.get(MachineSession, data["session_id"])
        duration = float(data.get("duration_s", 0))
        if row is None:
            # The end arrived first (replay order across a reconnect): keep what we know.
            row = MachineSession(
                id=data["session_id"],
                site=site,
                machine=env.machine,
                member_ref=data["member"],
                started_at=env.ts - timedelta(seconds=duration),
            )
        row.ended_at = env.ts
        row.end_reason = data.get("reason")
        row.duration_s = duration
        row.busy_s = float(data.get("busy_s", 0) or 0)
        row.energy_kwh = _kwh(data.get("energy_kwh"))
        session.add(row)


def _kwh(value: Any) -> float | None:
    # Checked by the envelope's model (finite, 0 to ENERGY_MAX_KWH); None: not metered.
    return float(value) if value is not None else None


def _member_of(session: Session, session_id: str | None) -> str | None:
    if not session_id:
        return None
    row = session.get(MachineSession, session_id)
    return row.member_ref if row else None


def apply_machine_use(session: Session, site: str, env: Envelope) -> None:
    """Busy periods and jobs, billed to the member of the session open when they began."""
    data = env.data
    if env.type is EventType.MACHINE_BUSY:
        session.add(
            BusyPeriod(
                site=site,
                machine=env.machine,
                source=data["source"],
                session_id=data.get("session_id"),
                member_ref=_member_of(session, data.get("session_id")),
                started_at=env.ts,
            )
        )
    elif env.type is EventType.MACHINE_IDLE:
        busy_s = float(data["busy_s"])
        session.flush()
        open_period = session.exec(
            select(BusyPeriod)
            .where(BusyPeriod.machine == env.machine, col(BusyPeriod.ended_at).is_(None))
            .order_by(col(BusyPeriod.started_at).desc())
        ).first()
        if open_period is None:  # the start was lost or is still on its way: keep what we know
            open_period = BusyPeriod(
                site=site,
                machine=env.machine,
                source=data["source"],
                session_id=data.get("session_id"),
                member_ref=_member_of(session, data.get("session_id")),
                started_at=env.ts - timedelta(seconds=busy_s),
            )
        open_period.ended_at = env.ts
        open_period.busy_s = busy_s
        open_period.energy_kwh = _kwh(data.get("energy_kwh"))
        open_period.run_on_energy_kwh = _kwh(data.get("run_on_energy_kwh"))
        session.add(open_period)
    elif env.type in (EventType.JOB_STARTED, EventType.JOB_FINISHED, EventType.JOB_FAILED):
        key = f"{env.machine}:{data['job_id']}"[:128]
        job = session.get(PrintJob, key) or PrintJob(
            id=key, site=site, machine=env.machine, job_id=str(data["job_id"])[:100]
        )
        job.session_id = data.get("session_id") or job.session_id
        job.member_ref = data.get("member") or job.member_ref or _member_of(session, job.session_id)
        if env.type is EventType.JOB_STARTED:
            job.file = str(data.get("file", ""))[:255]
            job.started_at = env.ts
        else:
            job.ended_at = env.ts
            job.duration_s = float(data["duration_s"])
            job.state = "finished" if env.type is EventType.JOB_FINISHED else "failed"
            job.error = str(data["error"])[:500] if data.get("error") else None
            reason = data.get("reason")
            job.end_reason = str(reason)[: limits.REASON_MAX_CHARS] if reason else None
            seen = data.get("printing_seen_s")
            job.printing_seen_s = min(float(seen), job.duration_s) if seen is not None else None
            if job.started_at is None:
                job.started_at = env.ts - timedelta(seconds=job.duration_s)
            filament = data.get("filament_mm")
            if filament and job.session_id:
                # Its grams on the session's spool, and off the spool (issue 21).
                count_filament(
                    session,
                    session_id=job.session_id,
                    job_id=job.id,
                    length_mm=float(filament),
                    at=env.ts,
                )
        session.add(job)
    elif env.type is EventType.SPOOL_ATTACHED:
        session.flush()
        attach_spool(session, session_id=data["session_id"], tag=data["spool"])


def apply_status(session: Session, machine: str, status: Status | None, now: datetime) -> None:
    values: dict[str, Any]
    if status is None:
        values = {"online": False, "last_status": None}
    else:
        values = {
            "online": status.state == "online",
            "last_status": status.model_dump(mode="json", exclude_none=True),
            "last_seen": now,
        }
    session.execute(update(Machine).where(Machine.code == machine).values(**values))  # type: ignore[arg-type]
