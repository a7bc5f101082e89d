"""The maintenance lockout check: an overdue critical task locks its machine out, a sign-off
releases it, and the downtime is tracked (the watch that runs it is hub/maintenance_watch.py).

The hub's database holds the truth about a lockout (`Machine.locked`); every allow-list
carries it, so a machine that misses one publication gets it at the next.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from hub.audit import record
from hub.domain.maintenance import (
    DueStatus,
    lockouts,
)
from hub.models import (
    Downtime,
    DowntimeCause,
    Machine,
)
from hub.services.maintenance.records import open_downtime
from hub.services.maintenance.tasks import domain_task, task_states

CHECK_ACTOR = "hub:maintenance-check"
LOCK_PREFIX = "maintenance overdue: "


# --- the lockout check --------------------------------------------------------------------
@dataclass
class CheckResult:
    locked: list[str]
    released: list[str]
    overdue_critical: dict[str, list[str]]  # machine -> titles of the overdue critical tasks

    @property
    def changed(self) -> list[str]:
        return sorted(set(self.locked) | set(self.released))


def _maintenance_locked(machine: Machine) -> bool:
    return machine.locked and (machine.lock_reason or "").startswith(LOCK_PREFIX)


def check_lockouts(
    session: Session, *, now: datetime, actor: str, machine_codes: Iterable[str] | None = None
) -> CheckResult:
    """Lock every machine with an overdue critical task; release the machines this check
    locked once nothing critical is overdue. A lock put by a person is never touched.

    The caller commits, then publishes the allow-lists of `result.changed`.
    """
    states = task_states(session, now=now, machine_codes=machine_codes)
    must_lock = lockouts(
        [domain_task(s.task, s.machine.code) for s in states], [s.state for s in states]
    )
    overdue: dict[str, list[str]] = {}
    for s in states:
        if s.machine.code in must_lock and s.task.critical and s.state.status is DueStatus.OVERDUE:
            overdue.setdefault(s.machine.code, []).append(f"#{s.task.id} {s.task.title}")
    result = CheckResult(locked=[], released=[], overdue_critical=overdue)
    query = select(Machine).order_by(Machine.code)
    if machine_codes is not None:
        query = query.where(col(Machine.code).in_(list(machine_codes)))
    for machine in session.exec(query):
        assert machine.id is not None
        _track_manual_lock(session, machine, now)
        if machine.code in must_lock:
            reason = LOCK_PREFIX + ", ".join(overdue[machine.code])
            if not machine.locked or (
                _maintenance_locked(machine) and machine.lock_reason != reason
            ):
                first = not machine.locked
                machine.locked, machine.lock_reason = True, reason[:500]
                session.add(machine)
                if first:
                    result.locked.append(machine.code)
                    record(
                        session,
                        actor=actor,
                        action="machine.lock",
                        entity="machine",
                        entity_id=machine.code,
                        reason=reason,
                    )
            if _maintenance_locked(machine) and (
                open_downtime(session, machine_id=machine.id, cause=DowntimeCause.MAINTENANCE)
                is None
            ):
                session.add(
                    Downtime(
                        machine_id=machine.id,
                        started_at=now,
                        cause=DowntimeCause.MAINTENANCE,
                        reason=reason[:500],
                    )
                )
            continue
        if _maintenance_locked(machine):
            machine.locked, machine.lock_reason = False, None
            session.add(machine)
            result.released.append(machine.code)
            record(
                session,
                actor=actor,
                action="machine.unlock",
                entity="machine",
                entity_id=machine.code,
                reason="no critical maintenance overdue",
            )
        if not _maintenance_locked(machine):
            # Released here, or unlocked by a person: the maintenance downtime is over.
            downtime = open_downtime(
                session, machine_id=machine.id, cause=DowntimeCause.MAINTENANCE
            )
            if downtime is not None:
                downtime.ended_at = now
                session.add(downtime)
    return result


def _track_manual_lock(session: Session, machine: Machine, now: datetime) -> None:
    """Downtime of a lock put by a person, as seen by the check: to within its period."""
    assert machine.id is not None
    downtime = open_downtime(session, machine_id=machine.id, cause=DowntimeCause.MANUAL)
    if machine.locked and not _maintenance_locked(machine):
        if downtime is None:
            session.add(
                Downtime(
                    machine_id=machine.id,
                    started_at=now,
                    cause=DowntimeCause.MANUAL,
                    reason=(machine.lock_reason or "locked by hand")[:500],
                )
            )
    elif downtime is not None:
        downtime.ended_at = now
        session.add(downtime)
