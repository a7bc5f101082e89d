"""Maintenance tasks made and changed in the web (what `atelier hub maintenance add` does):
a task on one machine or on every machine of a type, due every N metered hours and/or
every N days, critical or not. Open to the roles that sign work off (MAINTAINERS); each form
calls hub/services/maintenance/tasks.py, then the lockout check, and redirects to the
maintenance page with its message."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from hub.core.deps import MAINTAINERS, SessionDep, actor
from hub.core.errors import HubError, InvalidValue
from hub.models import Machine, MachineType, MaintenanceCounter, MaintenanceTaskRow, User
from hub.services.maintenance.lockout import check_lockouts
from hub.services.maintenance.tasks import add_task, update_task
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.flash import done
from hub.web.i18n import N_
from hub.web.render import Page, PageError, render
from hub.web.republish import republish
from hub.web.screens import _stored_id

router = APIRouter(prefix="/web", include_in_schema=False)
ADDED = N_("Task “{title}” added.")
CHANGED = N_("Task “{title}” saved.")
FIELDS = ("title", "description", "scope", "counter", "every_hours", "every_days")
COUNTERS = [
    (MaintenanceCounter.BUSY.value, N_("busy hours (beam on, printing, current drawn)")),
    (MaintenanceCounter.SESSION.value, N_("session hours (badged in)")),
    (MaintenanceCounter.PRINT.value, N_("print and cut job hours")),
]


def _hours(text: str) -> float | None:
    value = text.strip().replace(",", ".")
    if not value:
        return None
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours):  # words, NaN and infinity alike
        raise InvalidValue("maintenance.hours_format", field="every_hours", params={"value": text})
    return hours


def _days(text: str) -> int | None:
    value = text.strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 9:
        raise InvalidValue("maintenance.days_format", field="every_days", params={"value": text})
    return int(value)


def _counter(text: str) -> MaintenanceCounter:
    if text not in {c.value for c in MaintenanceCounter}:
        raise InvalidValue("maintenance.counter", field="counter", params={"value": text})
    return MaintenanceCounter(text)


def _scopes(session: Session) -> list[tuple[str, str]]:
    """What a task may apply to, by name: each machine type (all its machines), each machine."""
    types = session.exec(select(MachineType).order_by(col(MachineType.name))).all()
    machines = session.exec(select(Machine).order_by(col(Machine.name))).all()
    return [(f"type:{t.code}", t.name) for t in types] + [
        (f"machine:{m.code}", m.name) for m in machines
    ]


def _form(
    request: Request,
    session: Session,
    user: User,
    *,
    task: MaintenanceTaskRow | None,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "maintenance_task.html",
        {
            "task": task,
            "v": values,
            "errors": errors or {},
            "problem": (errors or {}).get(""),
            "scopes": _scopes(session),
            "counters": COUNTERS,
        },
        user=user,
        status_code=422 if errors else 200,
    )


def _refused(
    request: Request,
    session: Session,
    user: User,
    error: HubError,
    *,
    task: MaintenanceTaskRow | None,
    values: dict[str, str],
) -> Response:
    session.rollback()
    inputs = {f: f for f in FIELDS} | {"machine": "scope", "machine_type": "scope"}
    errors, problem = field_errors(request, error, inputs)
    if problem is not None:
        errors[""] = problem
    return _form(request, session, user, task=task, values=values, errors=errors)


def _task(session: Session, task_id: int) -> MaintenanceTaskRow:
    row = session.get(MaintenanceTaskRow, _stored_id(task_id, f"no maintenance task {task_id}"))
    if row is None:
        raise PageError(404, f"no maintenance task {task_id}")
    return row


def _values_of(task: MaintenanceTaskRow, session: Session) -> dict[str, str]:
    if task.machine_id is not None:
        machine = session.get(Machine, task.machine_id)
        scope = f"machine:{machine.code}" if machine else ""
    else:
        mtype = session.get(MachineType, task.machine_type_id)
        scope = f"type:{mtype.code}" if mtype else ""
    return {
        "title": task.title,
        "description": task.description,
        "scope": scope,
        "counter": task.counter.value,
        "every_hours": "" if task.every_hours is None else f"{task.every_hours:g}",
        "every_days": "" if task.every_days is None else str(task.every_days),
        "critical": "1" if task.critical else "",
        "active": "1" if task.active else "",
    }


def _check(request: Request, session: Session, user: User, background: BackgroundTasks) -> None:
    """A new or shorter interval may make a critical task overdue: lock (or release) now."""
    result = check_lockouts(session, now=datetime.now(UTC), actor=actor(user))
    session.commit()
    if result.changed:
        republish(request, background, result.changed)


@router.get("/maintenance/tasks/new", response_class=HTMLResponse)
def new_task_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(MAINTAINERS)]
) -> Response:
    values = {"counter": MaintenanceCounter.BUSY.value, "active": "1"}
    return _form(request, session, user, task=None, values=values)


@router.post("/maintenance/tasks/new", response_class=HTMLResponse, dependencies=[Checked])
def new_task(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MAINTAINERS)],
    title: Annotated[str, Form(max_length=1000)] = "",
    description: Annotated[str, Form(max_length=5000)] = "",
    scope: Annotated[str, Form(max_length=200)] = "",
    counter: Annotated[str, Form(max_length=20)] = "busy",
    every_hours: Annotated[str, Form(max_length=40)] = "",
    every_days: Annotated[str, Form(max_length=40)] = "",
    critical: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    values = {
        "title": title,
        "description": description,
        "scope": scope,
        "counter": counter,
        "every_hours": every_hours,
        "every_days": every_days,
        "critical": critical,
    }
    kind, _, code = scope.partition(":")
    try:
        if kind not in ("machine", "type") or not code:
            raise InvalidValue("maintenance.scope", field="scope")
        row = add_task(
            session,
            title=title,
            actor=actor(user),
            machine=code if kind == "machine" else None,
            machine_type=code if kind == "type" else None,
            counter=_counter(counter),
            every_hours=_hours(every_hours),
            every_days=_days(every_days),
            critical=bool(critical),
            description=description.strip(),
        )
        session.flush()
    except HubError as error:
        return _refused(request, session, user, error, task=None, values=values)
    _check(request, session, user, background)
    return done(request, "/web/maintenance", ADDED, title=row.title)


@router.get("/maintenance/tasks/{task_id}/edit", response_class=HTMLResponse)
def edit_task_page(
    request: Request, task_id: int, session: SessionDep, user: Annotated[User, Page(MAINTAINERS)]
) -> Response:
    task = _task(session, task_id)
    return _form(request, session, user, task=task, values=_values_of(task, session))


@router.post(
    "/maintenance/tasks/{task_id}/edit", response_class=HTMLResponse, dependencies=[Checked]
)
def edit_task(
    request: Request,
    task_id: int,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MAINTAINERS)],
    title: Annotated[str, Form(max_length=1000)] = "",
    description: Annotated[str, Form(max_length=5000)] = "",
    counter: Annotated[str, Form(max_length=20)] = "busy",
    every_hours: Annotated[str, Form(max_length=40)] = "",
    every_days: Annotated[str, Form(max_length=40)] = "",
    critical: Annotated[str, Form(max_length=5)] = "",
    active: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    task = _task(session, task_id)
    values = _values_of(task, session) | {
        "title": title,
        "description": description,
        "counter": counter,
        "every_hours": every_hours,
        "every_days": every_days,
        "critical": critical,
        "active": active,
    }
    try:
        row = update_task(
            session,
            task_id=task.id or 0,
            title=title,
            actor=actor(user),
            counter=_counter(counter),
            every_hours=_hours(every_hours),
            every_days=_days(every_days),
            critical=bool(critical),
            description=description,
            active=bool(active),
        )
    except HubError as error:
        return _refused(request, session, user, error, task=task, values=values)
    _check(request, session, user, background)
    return done(request, "/web/maintenance", CHANGED, title=row.title)
