"""The screens each role works in: members, trainings, machines, maintenance and a member's own
page (statistics: hub/web/stats_screens.py).

Every screen calls the API's own functions (or the services they call), so a rule lives in
one place: a grant here goes through `hub.api.trainings.grant`, a revocation through
hub/services/badges.py, both re-publishing the allow-lists as the API does. Each route names
the same role sets as the API route it mirrors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from hub.api import machines as machines_api
from hub.api import maintenance as maintenance_api
from hub.api import members as members_api
from hub.api.changes import get_member
from hub.api.sessions import list_events, list_sessions
from hub.category_history import history as category_history
from hub.core.deps import (
    EVERYONE,
    MAINTAINERS,
    MANAGE,
    MAX_ID,
    STAFF,
    TRAINERS,
    SessionDep,
    actor,
    republish,
)
from hub.core.errors import HubError
from hub.maintenance_service import interlock_faults, task_states
from hub.maintenance_store import IncidentClose, IncidentCreate
from hub.models import (
    Machine,
    MachineType,
    Member,
    MemberCategory,
    PrintJob,
    Training,
    TrainingLevel,
    User,
)
from hub.services import badges as badges_service
from hub.services import trainings as trainings_service
from hub.services.billing import member_billing
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.render import PROBLEMS, Page, PageError, error_message, may, render

router = APIRouter(prefix="/web", include_in_schema=False)
EXPIRING_DAYS = 30
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _stored_id(value: int, unknown: str) -> int:
    """An id from the URL, if a database can hold it; else the answer to an unknown id (404).

    PostgreSQL's ids are 32-bit: a larger one must not reach the driver (a 500)."""
    if not 1 <= value <= MAX_ID:
        raise HTTPException(status_code=404, detail=unknown)
    return value


# --- members ------------------------------------------------------------------------------
@router.get("/members", response_class=HTMLResponse)
def members_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(STAFF)],
    q: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    chosen = category if category in {c.value for c in MemberCategory} else None
    rows = members_api.list_members(
        session,
        q=q or None,
        category=MemberCategory(chosen) if chosen else None,
        status=None,
        limit=200,
        offset=0,
    )
    return render(
        request,
        "members.html",
        {"members": rows, "q": q or "", "category": chosen, "categories": list(MemberCategory)},
        user=user,
    )


def _existing_member(session: Session, member_id: int) -> Member:
    try:
        return get_member(session, _stored_id(member_id, f"no member with id {member_id}"))
    except HTTPException as exc:
        raise PageError(exc.status_code, str(exc.detail)) from None


def _member_page(
    request: Request,
    session: Session,
    user: User,
    member_id: int,
    *,
    notice: str | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    member = _existing_member(session, member_id)
    badges = badges_service.list_badges(session, member_id=member_id) if may(user, MANAGE) else None
    trainings = trainings_service.trainings_held(session, viewer=user, member_id=member_id)
    return render(
        request,
        "member.html",
        {
            "member": member,
            "badges": badges,
            "trainings": trainings,
            # What billing priced them as, and from when (the members API's own list).
            "categories": category_history(session, member_id) if may(user, MANAGE) else [],
            "notice": notice,
            "problem": problem,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/members/{member_id}", response_class=HTMLResponse)
def member_page(
    request: Request, member_id: int, session: SessionDep, user: Annotated[User, Page(STAFF)]
) -> Response:
    return _member_page(request, session, user, member_id)


@router.post(
    "/members/{member_id}/categories/undo", response_class=HTMLResponse, dependencies=[Checked]
)
def undo_category_change(
    request: Request,
    member_id: int,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
) -> Response:
    """The member page's "take back the latest change": the API's own rule and audit."""
    _existing_member(session, member_id)
    try:
        undone = members_api.undo_category_change(member_id, session, user)
    except PROBLEMS as exc:
        session.rollback()
        return _member_page(
            request, session, user, member_id, problem=error_message(exc), status_code=409
        )
    return _member_page(
        request,
        session,
        user,
        member_id,
        notice=f"category change taken back: {undone.previous_category.value} again",
    )


@router.post("/members/{member_id}/badges", response_class=HTMLResponse, dependencies=[Checked])
def enrol_badge(
    request: Request,
    member_id: int,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    uid: Annotated[str, Form(max_length=40)],
) -> Response:
    # An unknown member is the page's 404, before anything is tried (and rolled back).
    _existing_member(session, member_id)
    try:
        badge = badges_service.enrol_badge(session, uid=uid, member_id=member_id, actor=actor(user))
        session.commit()
    except HubError as exc:
        session.rollback()
        _, problem = field_errors(request, exc, {})
        return _member_page(request, session, user, member_id, problem=problem, status_code=422)
    republish(request, background)
    return _member_page(request, session, user, member_id, notice=f"card {badge.uid} enrolled")


@router.post("/badges/{badge_id}/revoke", response_class=HTMLResponse, dependencies=[Checked])
def revoke_badge(
    request: Request,
    badge_id: int,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
) -> Response:
    try:
        badge, revoked = badges_service.revoke_badge(session, badge_id=badge_id, actor=actor(user))
    except HubError as exc:
        _, problem = field_errors(request, exc, {})
        raise PageError(exc.status, problem or str(exc)) from None
    if revoked:
        session.commit()
        session.refresh(badge)
        republish(request, background)
    return _member_page(request, session, user, badge.member_id, notice=f"card {badge.uid} revoked")


# --- trainings ----------------------------------------------------------------------------
def _types_i_train(session: Session, user: User) -> list[MachineType]:
    """The machine types this login may certify on: the services' own trainer rule."""
    return trainings_service.types_trained_by(session, user=user, now=datetime.now(UTC))


def _trainings_page(
    request: Request,
    session: Session,
    user: User,
    *,
    q: str | None = None,
    member_id: int | None = None,
    notice: str | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    now = datetime.now(UTC)
    types = {t.id: t for t in session.exec(select(MachineType))}
    # No API call lists trainings by expiry date; this query is the page's own.
    expiring = session.exec(
        select(Training)
        .where(
            col(Training.expires_at).is_not(None),
            col(Training.expires_at) > now - timedelta(days=EXPIRING_DAYS),
            col(Training.expires_at) <= now + timedelta(days=EXPIRING_DAYS),
        )
        .order_by(col(Training.expires_at))
        .limit(200)
    ).all()
    found = (
        members_api.list_members(session, q=q, category=None, status=None, limit=20, offset=0)
        if q
        else []
    )
    # Only the members this page names: never the whole member table.
    names = members_api.members_by_id(session, {t.member_id for t in expiring} | {member_id or 0})
    chosen = names.get(member_id) if member_id else None
    held = (
        trainings_service.trainings_held(session, viewer=user, member_id=member_id or 0)
        if chosen
        else []
    )
    return render(
        request,
        "trainings.html",
        {
            "now": now,
            "q": q or "",
            "found": found,
            "chosen": chosen,
            "held": held,
            "my_types": _types_i_train(session, user) if may(user, TRAINERS) else [],
            "expiring": [
                (t, names.get(t.member_id), types.get(t.machine_type_id)) for t in expiring
            ],
            "notice": notice,
            "problem": problem,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/trainings", response_class=HTMLResponse)
def trainings_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(STAFF)],
    q: Annotated[str | None, Query(max_length=100)] = None,
    member: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    return _trainings_page(request, session, user, q=q, member_id=member)


@router.post("/trainings", response_class=HTMLResponse, dependencies=[Checked])
def certify(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(TRAINERS)],
    member_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    machine_type: Annotated[str, Form(max_length=63)],
    months: Annotated[int, Form(ge=0, le=120)] = 24,
) -> Response:
    """Grant (or renew) a user-level training: hub/services/trainings.py, as the API."""
    expires = datetime.now(UTC) + timedelta(days=round(months * 30.44)) if months else None
    try:
        granted = trainings_service.grant_training(
            session,
            user=user,
            actor=actor(user),
            member_id=member_id,
            machine_type=machine_type,
            level=TrainingLevel.USER,
            expires_at=expires,
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        _, problem = field_errors(request, exc, {})
        return _trainings_page(
            request, session, user, member_id=member_id, problem=problem, status_code=exc.status
        )
    republish(request, background, granted.machines)
    member = session.get(Member, member_id)
    return _trainings_page(
        request,
        session,
        user,
        member_id=member_id,
        notice=f"{member.name if member else member_id}: {machine_type} ✓",
    )


# --- machines -----------------------------------------------------------------------------
@router.get("/machines", response_class=HTMLResponse)
def machines_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(EVERYONE)]
) -> Response:
    machines = machines_api.machines_public(
        session, viewer=user, members_see_names=machines_api.members_see_names(request)
    )
    counters = {m.code: machines_api.machine_counters(m.code, session) for m in machines}
    return render(request, "machines.html", {"machines": machines, "counters": counters}, user=user)


def _machine_page(
    request: Request,
    session: Session,
    user: User,
    code: str,
    *,
    notice: str | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    machines = machines_api.machines_public(
        session, viewer=user, members_see_names=machines_api.members_see_names(request)
    )
    machine = next((m for m in machines if m.code == code), None)
    if machine is None:
        raise PageError(404, f"no machine {code!r}")
    try:
        history = list_sessions(
            session,
            user,
            machine=code,
            member=None,
            since=None,
            until=None,
            open_only=False,
            limit=30,
            offset=0,
        )
    except HTTPException:
        history = []  # a member login without a member record has no sessions to see
    names = (
        machines_api.member_names(session, {s.member_ref for s in history})
        if may(user, STAFF)
        else {}
    )
    events = (
        list_events(session, machine=code, type=None, since=None, until=None, limit=30)
        if may(user, STAFF)
        else None
    )
    return render(
        request,
        "machine.html",
        {
            "m": machine,
            "counters": machines_api.machine_counters(code, session),
            "history": history,
            "names": names,
            "events": events,
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
        machines_api.lock(
            code, machines_api.LockRequest(reason=reason), session, user, request, background
        )
    except PROBLEMS as exc:
        session.rollback()
        return _machine_page(
            request, session, user, code, problem=error_message(exc), status_code=422
        )
    return _machine_page(request, session, user, code, notice="locked out")


@router.post("/machines/{code}/unlock", response_class=HTMLResponse, dependencies=[Checked])
def unlock_machine(
    request: Request,
    code: str,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MAINTAINERS)],
) -> Response:
    try:
        machines_api.unlock(code, session, user, request, background)
    except HTTPException as exc:
        raise PageError(exc.status_code, str(exc.detail)) from None
    return _machine_page(request, session, user, code, notice="unlocked")


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
    incidents = maintenance_api.list_incidents(session, include_closed=False)
    return render(
        request,
        "maintenance.html",
        {
            "states": states,
            "incidents": incidents,
            "interlock_faults": interlock_faults(session, now=datetime.now(UTC)),
            "machines": session.exec(select(Machine).order_by(Machine.code)).all(),
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
        result = maintenance_api.sign_off(
            _stored_id(task_id, f"no maintenance task {task_id}"),
            maintenance_api.SignOffCreate(machine=machine, note=note),
            session,
            user,
            request,
            background,
        )
    except HubError as exc:
        return _maintenance_refused(
            request, session, user, exc, {"note": f"note-{task_id}-{machine}"}
        )
    except PROBLEMS as exc:
        session.rollback()
        return _maintenance_page(
            request, session, user, problem=error_message(exc), status_code=_problem(exc)
        )
    text = f"{result.machine}: signed off"
    if result.unlocked:
        text += ", unlocked"
    return _maintenance_page(request, session, user, notice=text)


@router.post("/maintenance/incidents", response_class=HTMLResponse, dependencies=[Checked])
def report_incident(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(STAFF)],
    machine: Annotated[str, Form(max_length=63)],
    text: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        maintenance_api.report_incident(
            IncidentCreate(machine=machine, text=text or " ", reported_by=user.username), session
        )
    except HubError as exc:
        return _maintenance_refused(
            request, session, user, exc, {"machine": "inc-machine", "text": "inc-text"}
        )
    except PROBLEMS as exc:
        session.rollback()
        return _maintenance_page(
            request, session, user, problem=error_message(exc), status_code=422
        )
    return _maintenance_page(request, session, user, notice="incident opened")


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
        maintenance_api.resolve_incident(
            _stored_id(incident_id, f"no incident {incident_id}"),
            IncidentClose(note=resolution),
            session,
            user,
        )
    except HubError as exc:
        return _maintenance_refused(request, session, user, exc, {"note": f"res-{incident_id}"})
    except PROBLEMS as exc:
        session.rollback()
        return _maintenance_page(
            request, session, user, problem=error_message(exc), status_code=_problem(exc)
        )
    return _maintenance_page(request, session, user, notice="incident closed")


# --- a member's own page ------------------------------------------------------------------
@router.get("/me", response_class=HTMLResponse)
def my_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(EVERYONE)]
) -> Response:
    member = session.get(Member, user.member_id) if user.member_id else None
    if member is None:
        raise PageError(404, "This login is not linked to a member.")
    sessions = list_sessions(
        session,
        user,
        machine=None,
        member=member.ref,
        since=None,
        until=None,
        open_only=False,
        limit=50,
        offset=0,
    )
    # No API route lists a member's jobs; the page reads them by its member reference.
    jobs = session.exec(
        select(PrintJob)
        .where(PrintJob.member_ref == member.ref)
        .order_by(col(PrintJob.started_at).desc())
        .limit(50)
    ).all()
    trainings = trainings_service.trainings_held(session, viewer=user, member_id=member.id or 0)
    billing = member_billing(session, member=member)  # read only: no account is created
    balance = _balance(billing.account)
    return render(
        request,
        "me.html",
        {
            "member": member,
            "sessions": sessions,
            "jobs": jobs,
            "trainings": trainings,
            "balance": balance,
            "movements": billing.movements,
            "statements": billing.statements,
            "now": datetime.now(UTC),
        },
        user=user,
    )


def _balance(account: Any) -> dict[str, Any] | None:
    """The prepaid balance as billing keeps it (None: the member has no account)."""
    if account is None:
        return None
    return {"cents": account.balance_cents, "prepaid_only": account.prepaid_only}
