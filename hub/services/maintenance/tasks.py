"""Maintenance tasks: due dates from the metered hours, adding a task, the calendar feed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import InvalidValue, NotFound
from hub.domain.maintenance import (
    Baseline,
    MaintenanceTask,
    TaskState,
    ical_feed,
    task_state,
)
from hub.models import (
    BusyPeriod,
    Machine,
    MachineSession,
    MachineType,
    MaintenanceCounter,
    MaintenanceSignOff,
    MaintenanceTaskRow,
    Material,
    MaterialUnit,
    MaterialUse,
    PrintJob,
)

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
    for machine, amount in _grams_and_kwh(session, since):
        for counter, value in amount.items():
            out.setdefault(machine, {})[counter] = value
    return out


def _grams_and_kwh(
    session: Session, since: datetime | None
) -> list[tuple[str, dict[MaintenanceCounter, float]]]:
    """Per machine, the grams of material counted in grams used in its sessions, and the kWh
    its plug measured (sessions, their run-on, busy periods with no session)."""
    out: dict[str, dict[MaintenanceCounter, float]] = {}
    grams = (
        select(MachineSession.machine, func.sum(MaterialUse.quantity))
        .join(MachineSession, col(MachineSession.id) == col(MaterialUse.session_id))
        .join(Material, col(Material.id) == col(MaterialUse.material_id))
        .where(col(Material.unit) == MaterialUnit.GRAM)
    )
    if since is not None:
        grams = grams.where(col(MachineSession.started_at) >= since)
    for machine, total in session.exec(grams.group_by(MachineSession.machine)).all():
        out.setdefault(machine, {})[MaintenanceCounter.GRAMS] = float(total or 0)
    kwh_sources: list[tuple[Any, Any, Any]] = [
        (MachineSession.machine, MachineSession.energy_kwh, MachineSession),
        (BusyPeriod.machine, BusyPeriod.run_on_energy_kwh, BusyPeriod),
    ]
    for machine_col, kwh_col, table in kwh_sources:
        query = select(machine_col, func.sum(kwh_col)).where(col(kwh_col).is_not(None))
        if since is not None:
            query = query.where(col(table.started_at) >= since)
        for machine, total in session.exec(query.group_by(machine_col)).all():
            counters = out.setdefault(machine, {})
            counters[MaintenanceCounter.KWH] = counters.get(MaintenanceCounter.KWH, 0.0) + float(
                total or 0
            )
    outside = select(BusyPeriod.machine, func.sum(BusyPeriod.energy_kwh)).where(
        col(BusyPeriod.session_id).is_(None), col(BusyPeriod.energy_kwh).is_not(None)
    )
    if since is not None:
        outside = outside.where(col(BusyPeriod.started_at) >= since)
    for machine, unattended in session.exec(outside.group_by(BusyPeriod.machine)).all():
        counters = out.setdefault(machine, {})
        counters[MaintenanceCounter.KWH] = counters.get(MaintenanceCounter.KWH, 0.0) + float(
            unattended or 0
        )
    return list(out.items())


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
    _check_task(title=title, every_hours=every_hours, every_days=every_days)
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


def _check_task(*, title: str, every_hours: float | None, every_days: int | None) -> None:
    if not title.strip():
        raise InvalidValue("maintenance.title_empty", field="title")
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


def update_task(
    session: Session,
    *,
    task_id: int,
    title: str,
    actor: str,
    counter: MaintenanceCounter,
    every_hours: float | None,
    every_days: int | None,
    critical: bool,
    description: str = "",
    active: bool = True,
) -> MaintenanceTaskRow:
    """Change a task in place (its machine or type stays: a task for another machine is a new
    task). Its sign-offs stay; the new interval counts from the last one. The caller commits
    and runs the lockout check (a shorter interval may make a critical task overdue)."""
    row = session.get(MaintenanceTaskRow, task_id)
    if row is None:
        raise NotFound("maintenance.task_unknown", field="task_id", params={"task": task_id})
    _check_task(title=title, every_hours=every_hours, every_days=every_days)
    row.title = title.strip()[:200]
    row.description = description.strip()[:2000]
    row.counter = counter
    row.every_hours = every_hours
    row.every_days = every_days
    row.critical = critical
    row.active = active
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor,
        action="maintenance.task_update",
        entity="maintenance_task",
        entity_id=str(row.id),
        title=row.title,
        counter=counter.value,
        every_hours=every_hours,
        every_days=every_days,
        critical=critical,
        active=active,
    )
    return row


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
