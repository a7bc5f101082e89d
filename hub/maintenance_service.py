"""Maintenance at work: due dates from the metered hours, the lockout check, sign-offs, the feed
(the watch that runs the check is hub/maintenance_watch.py).

The hub's database holds the truth about a lockout (`Machine.locked`); every allow-list
carries it, so a machine that misses one publication gets it at the next.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, Forbidden, InvalidValue, NotFound
from hub.domain.maintenance import (
    Baseline,
    DueStatus,
    MaintenanceTask,
    TaskState,
    ical_feed,
    lockouts,
    sign_off,
    task_state,
)
from hub.maintenance_store import (
    Downtime,
    DowntimeCause,
    MaintenanceCounter,
    MaintenanceSignOff,
    MaintenanceTaskRow,
    member_by_email,
    open_downtime,
)
from hub.models import (
    BusyPeriod,
    Event,
    Machine,
    MachineSession,
    MachineType,
    Member,
    MemberStatus,
    PrintJob,
    Training,
    TrainingLevel,
    User,
)
from protocol.envelope import EventType

log = logging.getLogger(__name__)

CHECK_ACTOR = "hub:maintenance-check"
LOCK_PREFIX = "maintenance overdue: "
# Longer intervals are typing mistakes; far beyond them a due date no longer fits in a date.
MAX_EVERY_HOURS = 100_000.0
MAX_EVERY_DAYS = 36_500
RATE_WINDOW = timedelta(days=28)  # recent use, to turn hours left into a date for the calendar


# --- counters -----------------------------------------------------------------------------
def metered_hours(
    session: Session, *, since: datetime | None = None
) -> dict[str, dict[MaintenanceCounter, float]]:
    """Per machine code, the hours of each counter (ended sessions, periods and jobs only)."""
    sources: list[tuple[MaintenanceCounter, Any, Any, Any]] = [
        (
            MaintenanceCounter.SESSION,
            MachineSession.machine,
            MachineSession.duration_s,
            MachineSession,
        ),
        (MaintenanceCounter.BUSY, BusyPeriod.machine, BusyPeriod.busy_s, BusyPeriod),
        (MaintenanceCounter.PRINT, PrintJob.machine, PrintJob.duration_s, PrintJob),
    ]
    out: dict[str, dict[MaintenanceCounter, float]] = {}
    for counter, machine_col, seconds_col, table in sources:
        query = select(machine_col, func.sum(seconds_col)).where(col(seconds_col).is_not(None))
        if since is not None:
            query = query.where(col(table.started_at) >= since)
        for machine, seconds in session.exec(query.group_by(machine_col)).all():
            out.setdefault(machine, {})[counter] = float(seconds or 0) / 3600
    return out


# --- task states --------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskDue:
    """One task on one machine: where its counter stands and what that means."""

    task: MaintenanceTaskRow
    machine: Machine
    counter_hours: float
    state: TaskState
    last_sign_off: MaintenanceSignOff | None
    due_on: date | None  # the date itself for calendar tasks, an estimate for metered ones


def domain_task(row: MaintenanceTaskRow, machine_code: str) -> MaintenanceTask:
    """The pure rule's view of a task, bound to the machine it is evaluated on."""
    return MaintenanceTask(
        id=str(row.id),
        title=row.title,
        machine=machine_code,
        every_busy_hours=row.every_hours,
        every_days=row.every_days,
        critical=row.critical,
    )


def task_states(
    session: Session,
    *,
    now: datetime,
    machine_codes: Iterable[str] | None = None,
    with_estimates: bool = False,
) -> list[TaskDue]:
    """Every active task on every machine it applies to, with its status today."""
    machines = list(session.exec(select(Machine).order_by(Machine.code)))
    if machine_codes is not None:
        wanted = set(machine_codes)
        machines = [m for m in machines if m.code in wanted]
    tasks = list(
        session.exec(select(MaintenanceTaskRow).where(MaintenanceTaskRow.active == True))  # noqa: E712
    )
    if not machines or not tasks:
        return []
    hours = metered_hours(session)
    recent = metered_hours(session, since=now - RATE_WINDOW) if with_estimates else {}
    latest: dict[tuple[int, int], MaintenanceSignOff] = {}
    for row in session.exec(select(MaintenanceSignOff).order_by(col(MaintenanceSignOff.id))):
        latest[(row.task_id, row.machine_id)] = row  # ordered: the last one wins
    today = now.date()
    out = []
    for machine in machines:
        assert machine.id is not None
        for task in tasks:
            if task.machine_id != machine.id and task.machine_type_id != machine.machine_type_id:
                continue
            assert task.id is not None
            current = hours.get(machine.code, {}).get(task.counter, 0.0)
            last = latest.get((task.id, machine.id))
            # Never signed off: hours count from the machine's first metered use, days from
            # the task's creation.
            baseline = Baseline(
                task_id=str(task.id),
                machine=machine.code,
                busy_hours_at_sign_off=last.counter_hours if last else 0.0,
                signed_off_on=(last.signed_at if last else task.created_at).date(),
            )
            state = task_state(
                domain_task(task, machine.code), baseline, current_busy_hours=current, today=today
            )
            due_on = state.due_on
            if with_estimates and state.busy_hours_left is not None:
                rate = recent.get(machine.code, {}).get(task.counter, 0.0) / RATE_WINDOW.days
                estimate: date | None = None
                if state.busy_hours_left <= 0:
                    estimate = today
                elif rate > 0 and state.busy_hours_left / rate < MAX_EVERY_DAYS:
                    # (a machine barely used would otherwise be due past the last date there is)
                    estimate = today + timedelta(days=math.ceil(state.busy_hours_left / rate))
                if estimate is not None:
                    due_on = min(due_on, estimate) if due_on else estimate
            out.append(TaskDue(task, machine, current, state, last, due_on))
    return out


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


# --- tasks and sign-offs ------------------------------------------------------------------
def add_task(
    session: Session,
    *,
    title: str,
    actor: str,
    machine: str | None = None,
    machine_type: str | None = None,
    counter: MaintenanceCounter = MaintenanceCounter.BUSY,
    every_hours: float | None = None,
    every_days: int | None = None,
    critical: bool = False,
    description: str = "",
    created_at: datetime | None = None,
) -> MaintenanceTaskRow:
    """A new task; calendar intervals count from `created_at` (now) until the first sign-off."""
    if not title.strip():
        raise InvalidValue("maintenance.title_empty", field="title")
    if (machine is None) == (machine_type is None):
        raise InvalidValue("maintenance.scope", field="machine")
    if every_hours is None and every_days is None:
        raise InvalidValue("maintenance.interval_missing", field="every_hours")
    # `not x > 0` refuses NaN too, which every comparison would otherwise let through.
    if every_hours is not None and not every_hours > 0:
        raise InvalidValue("maintenance.interval_not_positive", field="every_hours")
    if every_hours is not None and every_hours > MAX_EVERY_HOURS:
        raise InvalidValue(
            "maintenance.interval_too_long", field="every_hours", params={"max": MAX_EVERY_HOURS}
        )
    if every_days is not None and not every_days > 0:
        raise InvalidValue("maintenance.interval_not_positive", field="every_days")
    if every_days is not None and every_days > MAX_EVERY_DAYS:
        raise InvalidValue(
            "maintenance.interval_too_long", field="every_days", params={"max": MAX_EVERY_DAYS}
        )
    row = MaintenanceTaskRow(
        title=title.strip()[:200],
        description=description[:2000],
        counter=counter,
        every_hours=every_hours,
        every_days=every_days,
        critical=critical,
        created_at=created_at or datetime.now(UTC),
    )
    if machine is not None:
        found = session.exec(select(Machine).where(Machine.code == machine)).first()
        if found is None:
            codes = ", ".join(m.code for m in session.exec(select(Machine).order_by(Machine.code)))
            raise NotFound(
                "machine.unknown", field="machine", params={"machine": machine, "known": codes}
            )
        row.machine_id = found.id
    else:
        mtype = session.exec(select(MachineType).where(MachineType.code == machine_type)).first()
        if mtype is None:
            codes = ", ".join(t.code for t in session.exec(select(MachineType)))
            raise NotFound(
                "machine_type.unknown",
                field="machine_type",
                params={"machine_type": machine_type, "known": codes},
            )
        row.machine_type_id = mtype.id
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor,
        action="maintenance.task_add",
        entity="maintenance_task",
        entity_id=str(row.id),
        title=row.title,
        machine=machine,
        machine_type=machine_type,
        counter=counter.value,
        every_hours=every_hours,
        every_days=every_days,
        critical=critical,
    )
    return row


def is_maintainer(session: Session, member_id: int, machine_type_id: int, now: datetime) -> bool:
    for training in session.exec(
        select(Training).where(
            Training.member_id == member_id,
            Training.machine_type_id == machine_type_id,
            Training.level == TrainingLevel.MAINTAINER,
        )
    ):
        if training.expires_at is None or training.expires_at > now:
            return True
    return False


@dataclass
class SignOffResult:
    sign_off: MaintenanceSignOff
    machine: str
    check: CheckResult

    @property
    def unlocked(self) -> bool:
        return self.machine in self.check.released


def sign_off_task(
    session: Session,
    *,
    task_id: int,
    by_email: str,
    note: str,
    now: datetime,
    actor: str,
    machine: str | None = None,
) -> SignOffResult:
    """Record the work (resetting the task's counter on the machine), then release the
    machine if this was its last overdue critical task. The caller commits and publishes."""
    task = session.get(MaintenanceTaskRow, task_id)
    if task is None or not task.active:
        raise NotFound("maintenance.task_unknown", field="task_id", params={"task": task_id})
    target = _sign_off_machine(session, task, machine)
    assert target.id is not None
    member = member_by_email(session, by_email)
    if member is None or member.id is None:
        raise NotFound("member.unknown_email", field="by", params={"email": by_email})
    if member.status is not MemberStatus.ACTIVE:
        raise Forbidden(
            "member.not_active",
            field="by",
            params={"email": by_email, "status": member.status.value},
        )
    mtype = session.get(MachineType, target.machine_type_id)
    if not is_maintainer(session, member.id, target.machine_type_id, now):
        raise Forbidden(
            "maintenance.not_maintainer",
            field="by",
            params={"email": by_email, "machine_type": mtype.code if mtype else "?"},
        )
    if not note.strip():
        raise InvalidValue("maintenance.note_empty", field="note")
    current = metered_hours(session).get(target.code, {}).get(task.counter, 0.0)
    last = session.exec(
        select(MaintenanceSignOff)
        .where(MaintenanceSignOff.task_id == task_id, MaintenanceSignOff.machine_id == target.id)
        .order_by(col(MaintenanceSignOff.id).desc())
    ).first()
    baseline = Baseline(
        task_id=str(task_id),
        machine=target.code,
        busy_hours_at_sign_off=last.counter_hours if last else 0.0,
        signed_off_on=(last.signed_at if last else task.created_at).date(),
    )
    if current < baseline.busy_hours_at_sign_off:  # the domain rule refuses it too
        raise Conflict(
            "maintenance.counter_went_back",
            params={
                "current": round(current, 2),
                "last": round(baseline.busy_hours_at_sign_off, 2),
            },
        )
    new = sign_off(
        baseline,
        current_busy_hours=current,
        today=now.date(),
        maintainer=member.ref,
        note=note,
    )
    row = MaintenanceSignOff(
        task_id=task_id,
        machine_id=target.id,
        member_id=member.id,
        signed_at=now,
        counter_hours=new.busy_hours_at_sign_off,
        note=note.strip()[:2000],
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor,
        action="maintenance.sign_off",
        entity="maintenance_task",
        entity_id=str(task_id),
        machine=target.code,
        maintainer=member.ref,
        counter=task.counter.value,
        counter_hours=round(row.counter_hours, 4),
        note=row.note,
    )
    check = check_lockouts(session, now=now, actor=actor, machine_codes=[target.code])
    return SignOffResult(row, target.code, check)


def sign_off_as(
    session: Session,
    *,
    user: User,
    task_id: int,
    note: str,
    now: datetime,
    actor: str,
    machine: str | None = None,
) -> SignOffResult:
    """`sign_off_task` signed by the member this login belongs to (the API and the web)."""
    member = session.get(Member, user.member_id) if user.member_id else None
    if member is None or not member.email:
        raise Forbidden("maintenance.login_without_member")
    return sign_off_task(
        session,
        task_id=task_id,
        by_email=member.email,
        note=note,
        now=now,
        actor=actor,
        machine=machine,
    )


def _sign_off_machine(session: Session, task: MaintenanceTaskRow, code: str | None) -> Machine:
    if task.machine_id is not None:
        machine = session.get(Machine, task.machine_id)
        assert machine is not None
        if code is not None and code != machine.code:
            raise InvalidValue(
                "maintenance.task_other_machine",
                field="machine",
                params={"task": task.id, "expected": machine.code, "machine": code},
            )
        return machine
    candidates = list(
        session.exec(
            select(Machine)
            .where(Machine.machine_type_id == task.machine_type_id)
            .order_by(Machine.code)
        )
    )
    if code is not None:
        for machine in candidates:
            if machine.code == code:
                return machine
        raise InvalidValue(
            "maintenance.task_not_for_machine",
            field="machine",
            params={"task": task.id, "machine": code},
        )
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(m.code for m in candidates) or "none yet"
    raise InvalidValue(
        "maintenance.machine_ambiguous",
        field="machine",
        params={"task": task.id, "machines": names},
    )


# --- the calendar -------------------------------------------------------------------------
def calendar(session: Session, *, now: datetime, site: str) -> str:
    """The iCalendar feed: one all-day event per task and machine on its (estimated) due date."""
    due = [
        (domain_task(s.task, s.machine.code), s.machine.code, s.due_on)
        for s in task_states(session, now=now, with_estimates=True)
        if s.due_on is not None
    ]
    return ical_feed(
        [(task, machine, on) for task, machine, on in due if on is not None],
        site=site,
        generated_at=now,
    )


INTERLOCK_WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class InterlockFaults:
    """How often one interlock of one machine went into fault in the window."""

    machine: str
    interlock: str
    kind: str
    count: int
    last_at: datetime


def interlock_faults(
    session: Session, *, now: datetime, window: timedelta = INTERLOCK_WINDOW
) -> list[InterlockFaults]:
    """The interlock.fault events of the window, counted per machine and interlock, most
    frequent first: a chiller that trips every week wants servicing before it fails a job."""
    rows = session.exec(
        select(Event.machine, Event.ts, Event.data)
        .where(Event.type == EventType.INTERLOCK_FAULT.value)
        .where(col(Event.ts) >= now - window)
    ).all()
    counted: dict[tuple[str, str], tuple[str, int, datetime]] = {}
    for machine, ts, data in rows:
        key = (machine, str(data.get("interlock", "?")))
        kind, count, last = counted.get(key, (str(data.get("kind", "?")), 0, ts))
        counted[key] = (kind, count + 1, max(last, ts))
    return sorted(
        (
            InterlockFaults(machine, name, kind, count, last)
            for (machine, name), (kind, count, last) in counted.items()
        ),
        key=lambda f: (-f.count, f.machine, f.interlock),
    )
