"""Maintenance due rules: counters, calendar, lockouts, sign-off and the iCalendar feed."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from hub.domain.maintenance import (
    Baseline,
    DueStatus,
    MaintenanceTask,
    ical_feed,
    lockouts,
    sign_off,
    task_state,
)

LENS = MaintenanceTask("lens", "Clean lens", machine_type="laser", every_busy_hours=20)
TUBE = MaintenanceTask(
    "tube", "Replace laser tube", machine_type="laser", every_busy_hours=1500, critical=True
)
BELT = MaintenanceTask("belt", "Belt check", machine="printer-1", every_days=90)
NOZZLE = MaintenanceTask(
    "nozzle", "Nozzle", machine_type="printer", every_busy_hours=300, every_days=365
)


def base(task: str, machine: str, hours: float = 0.0, on: date = date(2026, 1, 1)) -> Baseline:
    return Baseline(task, machine, hours, on)


def test_busy_hour_statuses() -> None:
    b = base("lens", "laser-1", hours=100)
    at = {
        h: task_state(LENS, b, current_busy_hours=h, today=date(2026, 2, 1))
        for h in (110, 118, 120, 120.5)
    }
    assert at[110].status is DueStatus.OK and at[110].busy_hours_left == 10
    assert at[118].status is DueStatus.DUE_SOON  # within 10% (2 h) of 20 h
    assert at[120].status is DueStatus.DUE
    assert at[120.5].status is DueStatus.OVERDUE and at[120.5].busy_hours_left == -0.5


def test_calendar_statuses_and_configurable_margin() -> None:
    b = base("belt", "printer-1", on=date(2026, 1, 1))
    due = date(2026, 4, 1)
    assert task_state(BELT, b, current_busy_hours=0, today=date(2026, 3, 1)).status is DueStatus.OK
    assert (
        task_state(BELT, b, current_busy_hours=0, today=date(2026, 3, 25)).status
        is DueStatus.DUE_SOON
    )
    s = task_state(BELT, b, current_busy_hours=0, today=due)
    assert (s.status, s.days_left, s.due_on) == (DueStatus.DUE, 0, due)
    assert (
        task_state(BELT, b, current_busy_hours=0, today=date(2026, 4, 2)).status
        is DueStatus.OVERDUE
    )
    wide = task_state(BELT, b, current_busy_hours=0, today=date(2026, 3, 1), margin=0.5)
    assert wide.status is DueStatus.DUE_SOON


def test_worst_of_hours_and_days_wins() -> None:
    b = base("nozzle", "printer-2", hours=0, on=date(2026, 1, 1))
    by_hours = task_state(NOZZLE, b, current_busy_hours=301, today=date(2026, 2, 1))
    by_days = task_state(NOZZLE, b, current_busy_hours=10, today=date(2027, 1, 2))
    assert by_hours.status is DueStatus.OVERDUE and by_days.status is DueStatus.OVERDUE


def test_only_critical_overdue_tasks_lock_the_machine() -> None:
    states = [
        task_state(TUBE, base("tube", "laser-1"), current_busy_hours=1501, today=date(2026, 5, 1)),
        task_state(TUBE, base("tube", "laser-2"), current_busy_hours=1500, today=date(2026, 5, 1)),
        task_state(LENS, base("lens", "laser-3"), current_busy_hours=999, today=date(2026, 5, 1)),
    ]
    assert lockouts([TUBE, LENS], states) == {"laser-1"}


def test_sign_off_resets_the_counter_and_returns_a_new_baseline() -> None:
    old = base("tube", "laser-1")
    new = sign_off(
        old, current_busy_hours=1501, today=date(2026, 5, 2), maintainer="max", note="new tube"
    )
    assert old.busy_hours_at_sign_off == 0  # history is the caller's, untouched
    assert (new.busy_hours_at_sign_off, new.signed_off_on, new.note) == (
        1501,
        date(2026, 5, 2),
        "new tube",
    )
    state = task_state(TUBE, new, current_busy_hours=1501, today=date(2026, 5, 2))
    assert state.status is DueStatus.OK and lockouts([TUBE], [state]) == set()
    with pytest.raises(ValueError, match="maintainer"):
        sign_off(old, current_busy_hours=1, today=date(2026, 5, 2), maintainer="", note="")
    with pytest.raises(ValueError, match="counter"):
        sign_off(new, current_busy_hours=3, today=date(2026, 5, 2), maintainer="max", note="")


def test_task_scope_and_intervals_are_checked() -> None:
    assert LENS.applies_to("laser-9", "laser") and not LENS.applies_to("printer-1", "printer")
    with pytest.raises(ValueError, match="machine or machine_type"):
        MaintenanceTask("x", "X", every_days=1)
    with pytest.raises(ValueError, match="every_busy_hours"):
        MaintenanceTask("x", "X", machine="m")
    with pytest.raises(ValueError, match="positive"):
        MaintenanceTask("x", "X", machine="m", every_days=0)


def test_ical_feed_is_rfc5545() -> None:
    long_title = MaintenanceTask(
        "long",
        "Nettoyer la lentille, le miroir; vérifier l'alignement " * 3,
        machine="laser-1",
        every_days=7,
    )
    feed = ical_feed(
        [(BELT, "printer-1", date(2026, 4, 1)), (long_title, "laser-1", date(2026, 3, 1))],
        site="demo-lab",
        generated_at=datetime(2026, 2, 1, 8, 0, tzinfo=UTC),
    )
    assert feed.startswith("BEGIN:VCALENDAR\r\n") and feed.endswith("END:VCALENDAR\r\n")
    assert "\n" not in feed.replace("\r\n", "")
    physical = feed.split("\r\n")[:-1]
    assert all(len(line.encode()) <= 75 for line in physical)
    unfolded = feed.replace("\r\n ", "")
    assert "SUMMARY:printer-1: Belt check\r\n" in unfolded
    assert "le miroir\\; vérifier" in unfolded and "lentille\\, le" in unfolded
    assert unfolded.count("BEGIN:VEVENT") == 2
    assert unfolded.index("laser-1") < unfolded.index("printer-1")  # ordered by due date
    assert "DTSTART;VALUE=DATE:20260401\r\nDTEND;VALUE=DATE:20260402" in unfolded
    again = ical_feed(
        [(BELT, "printer-1", date(2026, 4, 1))],
        site="demo-lab",
        generated_at=datetime(2026, 3, 1, tzinfo=UTC),
    )
    uid = [ln for ln in unfolded.split("\r\n") if ln.startswith("UID:")]
    assert [ln for ln in again.split("\r\n") if ln.startswith("UID:")][0] in uid
