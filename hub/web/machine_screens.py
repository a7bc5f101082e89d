"""The machine and maintenance screens: the machines' live state and history, locking one
out, what maintenance is due, sign-offs and incidents.

Each calls the services the API calls (hub/services/machine_views.py, sessions.py,
lockout.py, incidents.py, hub/services/maintenance/), then re-publishes the allow-lists of
the machines a change concerns; each route names the same role sets as the API route it
mirrors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, select

from hub.core.deps import (
    EVERYONE,
    MAINTAINERS,
    STAFF,
    SessionDep,
)
from hub.core.errors import Forbidden, HubError, InvalidValue, NotFound, describe
from hub.models import (
    Machine,
    Material,
    User,
)
from hub.services import incidents as incident_service
from hub.services import machine_views
from hub.services.lockout import set_lock
from hub.services.maintenance.interlocks import interlock_faults
from hub.services.maintenance.signoffs import sign_off_as, types_signed_by
from hub.services.maintenance.tasks import task_states
from hub.services.materials import low_spools, record_use
from hub.services.sessions import list_events, list_sessions
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.flash import done
from hub.web.i18n import N_
from hub.web.render import (
    PROBLEMS,
    Page,
    PageError,
    error_message,
    may,
    members_see_names,
    render,
)
from hub.web.republish import republish
from hub.web.screens import _stored_id

router = APIRouter(prefix="/web", include_in_schema=False)


# --- machines -----------------------------------------------------------------------------
@router.get("/machines", response_class=HTMLResponse)
def machines_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(EVERYONE)]
) -> Response:
    machines = machine_views.machines_public(
        session, viewer=user, members_see_names=members_see_names(request)
    )
    counters = {m.code: machine_views.machine_counters(session, code=m.code) for m in machines}
    return render(request, "machines.html", {"machines": machines, "counters": counters}, user=user)


def _machine_page(
    request: Request,
    session: Session,
    user: User,
    code: str,
    *,
    notice: str | None = None,
    problem: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    machines = machine_views.machines_public(
        session, viewer=user, members_see_names=members_see_names(request)
    )
    machine = next((m for m in machines if m.code == code), None)
    if machine is None:
        raise PageError(404, f"no machine {code!r}")
    try:
        history = list_sessions(session, viewer=user, machine=code, limit=30)
    except Forbidden:
        history = []  # a member login without a member record has no sessions to see
    names = (
        machine_views.member_names(session, {s.member_ref for s in history})
        if may(user, STAFF)
        else {}
    )
    events = list_events(session, machine=code, limit=30) if may(user, STAFF) else None
    return render(
        request,
        "machine.html",
        {
            "m": machine,
            "counters": machine_views.machine_counters(session, code=code),
            "history": history,
            "names": names,
            "events": events,
            "materials": (
                session.exec(select(Material).order_by(Material.code)).all()
                if may(user, STAFF)
                else []
            ),
            "errors": errors or {},
            "notice": notice,
            "problem": problem,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/machines/{code}", response_class=HTMLResponse)
def machine_page(
    request: Request, code: str, session: SessionDep, user: Annotated[User, Page(EVERYONE)]
) -> Response:
    return _machine_page(request, session, user, code)


@router.post("/machines/{code}/lock", response_class=HTMLResponse, dependencies=[Checked])
def lock_machine(
    request: Request,
    code: str,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MAINTAINERS)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        set_lock(session, code=code, locked=True, reason=reason, actor=f"user:{user.username}")
    except InvalidValue as exc:
        session.rollback()
        _, problem = field_errors(request, exc, {})
        return _machine_page(request, session, user, code, problem=problem, status_code=422)
    except NotFound as exc:
        raise PageError(404, describe(exc)) from None
    republish(request, background, [code])
    return done(request, f"/web/machines/{code}", N_("locked out"))


@router.post("/machines/{code}/material", response_class=HTMLResponse, dependencies=[Checked])
def record_material(
    request: Request,
    code: str,
    session: SessionDep,
    user: Annotated[User, Page(STAFF)],
    session_id: Annotated[str, Form(max_length=64)],
    material: Annotated[str, Form(max_length=63)],
    quantity: Annotated[str, Form(max_length=40)],
    spool: Annotated[str, Form(max_length=63)] = "",
) -> Response:
    """Sheets cut on a laser or a CNC, or grams weighed by hand, on one of its sessions (the
    service the command line's `material use` calls)."""
    try:
        record_use(
            session,
            session_id=session_id,
            material=material,
            quantity=quantity,
            spool=spool or None,
            source="web",
            actor=f"user:{user.username}",
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        errors, problem = field_errors(
            request,
            exc,
            {
                "session": "use-session",
                "material": "use-material",
                "quantity": "use-quantity",
                "spool": "use-spool",
            },
        )
        return _machine_page(
            request, session, user, code, errors=errors, problem=problem, status_code=exc.status
        )
    return _machine_page(request, session, user, code, notice="material recorded")


@router.post("/machines/{code}/unlock", response_class=HTMLResponse, dependencies=[Checked])
def unlock_machine(
    request: Request,
    code: str,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MAINTAINERS)],
) -> Response:
    try:
        set_lock(session, code=code, locked=False, reason=None, actor=f"user:{user.username}")
    except NotFound as exc:
        raise PageError(404, describe(exc)) from None
    republish(request, background, [code])
    return done(request, f"/web/machines/{code}", N_("unlocked"))


# --- maintenance --------------------------------------------------------------------------
STATUS_ORDER = {"overdue": 0, "due": 1, "due_soon": 2, "ok": 3}


def _maintenance_page(
    request: Request,
    session: Session,
    user: User,
    *,
    notice: str | None = None,
    problem: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    states = task_states(session, now=datetime.now(UTC), with_estimates=True)
    states.sort(key=lambda s: (STATUS_ORDER.get(s.state.status.value, 9), s.machine.code))
    incidents = incident_service.list_incidents(session, include_closed=False)
    return render(
        request,
        "maintenance.html",
        {
            "states": states,
            "incidents": incidents,
            "interlock_faults": interlock_faults(session, now=datetime.now(UTC)),
            "low_spools": low_spools(session),
            "machines": session.exec(select(Machine).order_by(Machine.code)).all(),
            # The sign-off form only where this login may sign (sign_off_as's own rule).
            "signable": types_signed_by(session, user=user, now=datetime.now(UTC)),
            "notice": notice,
            "problem": problem,
            "errors": errors or {},
        },
        user=user,
        status_code=status_code,
    )


def _maintenance_refused(
    request: Request,
    session: Session,
    user: User,
    error: HubError,
    inputs: dict[str, str],
) -> Response:
    """The maintenance page again, the service's refusal under the input it names."""
    session.rollback()
    errors, problem = field_errors(request, error, inputs)
    return _maintenance_page(
        request, session, user, problem=problem, errors=errors, status_code=error.status
    )


@router.get("/maintenance", response_class=HTMLResponse)
def maintenance_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(STAFF)]
) -> Response:
    return _maintenance_page(request, session, user)


def _problem(exc: Exception) -> int:
    """The status of the page showing an API rule's refusal."""
    return exc.status_code if isinstance(exc, HTTPException) else 422


@router.post(
    "/maintenance/tasks/{task_id}/sign-off", response_class=HTMLResponse, dependencies=[Checked]
)
def sign_off(
    request: Request,
    task_id: int,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MAINTAINERS)],
    machine: Annotated[str, Form(max_length=63)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The API's sign-off, signed by the member this login belongs to."""
    try:
        result = sign_off_as(
            session,
            user=user,
            task_id=_stored_id(task_id, f"no maintenance task {task_id}"),
            note=note,
            now=datetime.now(UTC),
            actor=f"user:{user.username}",
            machine=machine,
        )
        session.commit()
    except HubError as exc:
        return _maintenance_refused(
            request, session, user, exc, {"note": f"note-{task_id}-{machine}"}
        )
    except PROBLEMS as exc:
        session.rollback()
        return _maintenance_page(
            request, session, user, problem=error_message(exc), status_code=_problem(exc)
        )
    if result.check.changed:
        republish(request, background, result.check.changed)
    signed = session.exec(select(Machine).where(Machine.code == result.machine)).first()
    name = signed.name if signed else result.machine
    return done(
        request, "/web/maintenance", SIGNED_UNLOCKED if result.unlocked else SIGNED, machine=name
    )


SIGNED = N_("{machine}: signed off")
SIGNED_UNLOCKED = N_("{machine}: signed off, and unlocked")


@router.post("/maintenance/incidents", response_class=HTMLResponse, dependencies=[Checked])
def report_incident(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(STAFF)],
    machine: Annotated[str, Form(max_length=63)],
    text: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        incident_service.report_incident(
            session, machine=machine, text=text, source="web", reported_by=user.username
        )
        session.commit()
    except HubError as exc:
        return _maintenance_refused(
            request, session, user, exc, {"machine": "inc-machine", "text": "inc-text"}
        )
    except PROBLEMS as exc:
        session.rollback()
        return _maintenance_page(
            request, session, user, problem=error_message(exc), status_code=422
        )
    return done(request, "/web/maintenance", N_("Incident reported; the maintainers see it here."))


@router.post(
    "/maintenance/incidents/{incident_id}/close",
    response_class=HTMLResponse,
    dependencies=[Checked],
)
def close(
    request: Request,
    incident_id: int,
    session: SessionDep,
    user: Annotated[User, Page(MAINTAINERS)],
    resolution: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        incident_service.resolve_incident(
            session,
            incident_id=_stored_id(incident_id, f"no incident {incident_id}"),
            by=f"user:{user.username}",
            note=resolution,
        )
        session.commit()
    except HubError as exc:
        return _maintenance_refused(request, session, user, exc, {"note": f"res-{incident_id}"})
    except PROBLEMS as exc:
        session.rollback()
        return _maintenance_page(
            request, session, user, problem=error_message(exc), status_code=_problem(exc)
        )
    return done(request, "/web/maintenance", N_("Incident closed."))
