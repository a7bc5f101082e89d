"""Pure maintenance rules: when a task is due from metered busy hours and the calendar."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum


class DueStatus(StrEnum):
    OK = "ok"
    DUE_SOON = "due_soon"
    DUE = "due"
    OVERDUE = "overdue"


@dataclass(frozen=True)
class MaintenanceTask:
    """A recurring task on one machine, or on every machine of a type (exactly one scope)."""

    id: str
    title: str
    machine: str | None = None
    machine_type: str | None = None
    every_busy_hours: float | None = None
    every_days: int | None = None
    critical: bool = False

    def __post_init__(self) -> None:
        if (self.machine is None) == (self.machine_type is None):
            raise ValueError(f"task {self.id}: give either machine or machine_type, not both/none")
        if self.every_busy_hours is None and self.every_days is None:
            raise ValueError(f"task {self.id}: give every_busy_hours and/or every_days")
        if (self.every_busy_hours is not None and self.every_busy_hours <= 0) or (
            self.every_days is not None and self.every_days <= 0
        ):
            raise ValueError(f"task {self.id}: intervals must be positive")

    def applies_to(self, machine: str, machine_type: str) -> bool:
        return self.machine == machine or self.machine_type == machine_type


@dataclass(frozen=True)
class Baseline:
    """Where a task's counters stood at its last sign-off on one machine."""

    task_id: str
    machine: str
    busy_hours_at_sign_off: float
    signed_off_on: date
    signed_off_by: str = ""
    note: str = ""


@dataclass(frozen=True)
class TaskState:
    task_id: str
    machine: str
    status: DueStatus
    busy_hours_left: float | None
    days_left: int | None
    due_on: date | None
    critical: bool


def task_state(
    task: MaintenanceTask,
    baseline: Baseline,
    *,
    current_busy_hours: float,
    today: date,
    margin: float = 0.10,
) -> TaskState:
    """Status from the counters; the worst of the busy-hours and calendar measures wins.

    Due means the interval is used up today (0 left); overdue means past it. Due soon means
    within `margin` (10% by default) of the interval.
    """
    statuses: list[DueStatus] = []
    hours_left: float | None = None
    days_left: int | None = None
    due_on: date | None = None
    if task.every_busy_hours is not None:
        used = current_busy_hours - baseline.busy_hours_at_sign_off
        hours_left = task.every_busy_hours - used
        statuses.append(_status(hours_left, task.every_busy_hours * margin))
    if task.every_days is not None:
        due_on = baseline.signed_off_on + timedelta(days=task.every_days)
        days_left = (due_on - today).days
        statuses.append(_status(days_left, task.every_days * margin))
    order = list(DueStatus)
    worst = max(statuses, key=order.index)
    return TaskState(task.id, baseline.machine, worst, hours_left, days_left, due_on, task.critical)


def _status(left: float, margin: float) -> DueStatus:
    if left < 0:
        return DueStatus.OVERDUE
    if left == 0:
        return DueStatus.DUE
    if left <= margin:
        return DueStatus.DUE_SOON
    return DueStatus.OK


def lockouts(tasks: Iterable[MaintenanceTask], states: Iterable[TaskState]) -> set[str]:
    """Machines that must stay locked: a critical task on them is overdue."""
    critical = {t.id for t in tasks if t.critical}
    return {s.machine for s in states if s.task_id in critical and s.status is DueStatus.OVERDUE}


def sign_off(
    baseline: Baseline, *, current_busy_hours: float, today: date, maintainer: str, note: str
) -> Baseline:
    """A maintainer's sign-off: a new baseline; the caller keeps the old one as history."""
    if not maintainer:
        raise ValueError("sign_off needs the maintainer who did the work")
    if current_busy_hours < baseline.busy_hours_at_sign_off:
        raise ValueError("current_busy_hours is below the last sign-off; is the counter right?")
    return replace(
        baseline,
        busy_hours_at_sign_off=current_busy_hours,
        signed_off_on=today,
        signed_off_by=maintainer,
        note=note,
    )


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _fold(line: str) -> list[str]:
    """RFC 5545 3.1: lines longer than 75 octets continue on lines starting with a space."""
    out: list[str] = []
    current = b""
    for char in line:
        encoded = char.encode("utf-8")
        if len(current) + len(encoded) > 75:
            out.append(current.decode("utf-8"))
            current = b" "
        current += encoded
    out.append(current.decode("utf-8"))
    return out


# The two RFC 5545 helpers, for the other feeds (hub/domain/bookings.py).
ical_escape = _escape
ical_fold = _fold


def ical_feed(
    due: Iterable[tuple[MaintenanceTask, str, date]],
    *,
    site: str,
    generated_at: datetime,
    titles: Mapping[str, str] | None = None,
) -> str:
    """A VCALENDAR with one all-day VEVENT per (task, machine, due date).

    The UID hashes task, machine and due date so a calendar updates an event instead of
    duplicating it when the feed is fetched again.
    """
    stamp = generated_at.strftime("%Y%m%dT%H%M%SZ")
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Atelier//Maintenance//EN",
        "CALSCALE:GREGORIAN",
        f"X-WR-CALNAME:{_escape('Atelier maintenance ' + site)}",
    ]
    for task, machine, on in sorted(due, key=lambda d: (d[2], d[1], d[0].id)):
        digest = hashlib.sha256(f"{site}|{task.id}|{machine}|{on}".encode()).hexdigest()[:24]
        title = (titles or {}).get(task.id, task.title)
        summary = f"{machine}: {title}" + (" (critical)" if task.critical else "")
        lines += [
            "BEGIN:VEVENT",
            f"UID:{digest}@atelier.{site}",
            f"DTSTAMP:{stamp}",
            f"DTSTART;VALUE=DATE:{on.strftime('%Y%m%d')}",
            f"DTEND;VALUE=DATE:{(on + timedelta(days=1)).strftime('%Y%m%d')}",
            f"SUMMARY:{_escape(summary)}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(folded + "\r\n" for line in lines for folded in _fold(line))
