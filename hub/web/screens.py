"""The screens each role works in: members, trainings, machines, maintenance and a member's own
page (statistics: hub/web/stats_screens.py).

Every screen calls the services the API calls, so a rule lives in one place: a grant goes
through hub/services/trainings.py, a member's change through hub/services/members.py, a
revocation through hub/services/badges.py, each re-publishing the allow-lists as the API does.
Each route names the same role sets as the API route it mirrors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from hub.category_history import history as category_history
from hub.core.deps import (
    EVERYONE,
    MANAGE,
    MAX_ID,
    STAFF,
    TRAINERS,
    SessionDep,
    actor,
    republish,
)
from hub.core.errors import HubError
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
from hub.services import members as members_service
from hub.services import trainings as trainings_service
from hub.services.billing import member_billing
from hub.services.billing.member_costs import session_costs
from hub.services.sessions import list_sessions
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.flash import done
from hub.web.i18n import N_
from hub.web.render import Page, PageError, may, render

router = APIRouter(prefix="/web", include_in_schema=False)
EXPIRING_DAYS = 30
RECENT_SESSIONS = 20
# Why a member can use no machine yet (members_service.why_no_machine), in words.
NO_MACHINE = {
    "not_active": N_("Their membership is not active (suspended or left)."),
    "no_badge": N_("They have no card: enrol one below."),
    "no_training": N_("They hold no valid training: a trainer certifies them in Trainings."),
    "balance_empty": N_("Their prepaid balance is empty and their plan is prepaid only."),
}
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _stored_id(value: int, unknown: str) -> int:
    """An id from the URL, if a database can hold it; else the answer to an unknown id (404).

    PostgreSQL's ids are 32-bit: a larger one must not reach the driver (a 500)."""
    if not 1 <= value <= MAX_ID:
        raise HTTPException(status_code=404, detail=unknown)
    return value


# --- members ------------------------------------------------------------------------------
MEMBERS_PER_PAGE = 50


@router.get("/members", response_class=HTMLResponse)
def members_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(STAFF)],
    q: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=20)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """Members by name, a page of MEMBERS_PER_PAGE at a time, with how many match."""
    chosen = category if category in {c.value for c in MemberCategory} else None
    filters: dict[str, Any] = {
        "q": q or None,
        "category": MemberCategory(chosen) if chosen else None,
        "status": None,
    }
    total = members_service.count_members(session, **filters)
    pages = max(1, -(-total // MEMBERS_PER_PAGE))
    page = min(page, pages)
    rows = members_service.list_members(
        session,
        **filters,
        limit=MEMBERS_PER_PAGE,
        offset=(page - 1) * MEMBERS_PER_PAGE,
        by_name=True,
    )
    query = "&".join(
        f"{k}={quote(v)}" for k, v in (("q", q or ""), ("category", chosen or "")) if v
    )
    return render(
        request,
        "members.html",
        {
            "members": rows,
            "q": q or "",
            "category": chosen,
            "categories": list(MemberCategory),
            "total": total,
            "page": page,
            "pages": pages,
            "first_shown": (page - 1) * MEMBERS_PER_PAGE + 1 if rows else 0,
            "last_shown": (page - 1) * MEMBERS_PER_PAGE + len(rows),
            "query": query,
        },
        user=user,
    )


def _existing_member(session: Session, member_id: int) -> Member:
    try:
        return members_service.member_by_id(session, member_id=member_id, field="member")
    except HubError as exc:
        raise PageError(exc.status, str(exc)) from None


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
    recent = list_sessions(session, viewer=user, member=member.ref, limit=RECENT_SESSIONS)
    manage = may(user, MANAGE)
    tz = ZoneInfo(request.app.state.settings.timezone)
    machines = {m.code: m.name for m in session.exec(select(Machine))}
    return render(
        request,
        "member.html",
        {
            "member": member,
            "badges": badges,
            "trainings": trainings,
            # What billing priced them as, and from when (the members API's own list).
            "categories": category_history(session, member_id) if may(user, MANAGE) else [],
            "sessions": recent,
            "machine_names": machines,
            # Money is billing's: managers only, as the billing page.
            "costs": session_costs(session, member=member, sessions=recent, tz=tz)
            if manage
            else {},
            "billing": member_billing(session, member=member) if manage else None,
            "payer": members_service.payer_of(session, member) if manage else None,
            "blocked": [
                NO_MACHINE[r]
                for r in members_service.why_no_machine(
                    session, member=member, now=datetime.now(UTC)
                )
            ],
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
        undone = members_service.undo_category_change(
            session, member_id=member_id, actor=actor(user)
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        return _member_page(
            request,
            session,
            user,
            member_id,
            problem=field_errors(request, exc, {})[1],
            status_code=exc.status,
        )
    return done(
        request,
        f"/web/members/{member_id}",
        CATEGORY_UNDONE[undone.previous_category]
        if undone.previous_category in CATEGORY_UNDONE
        else N_("The category change is taken back."),
    )


# Per category, so the category itself is translated with its sentence.
CATEGORY_UNDONE = {
    "individual": N_("Category change taken back: individual again."),
    "student": N_("Category change taken back: student again."),
    "professional": N_("Category change taken back: professional again."),
    "company": N_("Category change taken back: company again."),
    "staff": N_("Category change taken back: staff again."),
}


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
    return done(request, f"/web/members/{member_id}", CARD_ENROLLED, uid=badge.uid)


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
    return done(request, f"/web/members/{badge.member_id}", CARD_REVOKED, uid=badge.uid)


CARD_ENROLLED = N_("Card {uid} enrolled.")
CARD_REVOKED = N_("Card {uid} revoked: the machines refuse it within seconds.")


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
        members_service.list_members(session, q=q, category=None, status=None, limit=20, offset=0)
        if q
        else []
    )
    # Only the members this page names: never the whole member table.
    names = members_service.members_by_id(
        session, {t.member_id for t in expiring} | {member_id or 0}
    )
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
    level: Annotated[str, Form(max_length=20)] = TrainingLevel.USER.value,
) -> Response:
    """Grant (or renew) a training at the chosen level (user, trainer, maintainer):
    hub/services/trainings.py, as the API, with the API's rule on who may grant it."""
    chosen_level = TrainingLevel(level) if level in set(TrainingLevel) else TrainingLevel.USER
    expires = datetime.now(UTC) + timedelta(days=round(months * 30.44)) if months else None
    try:
        granted = trainings_service.grant_training(
            session,
            user=user,
            actor=actor(user),
            member_id=member_id,
            machine_type=machine_type,
            level=chosen_level,
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
    mtype = session.exec(select(MachineType).where(MachineType.code == machine_type)).first()
    return done(
        request,
        f"/web/trainings?member={member_id}",
        CERTIFIED[chosen_level],
        member=member.name if member else member_id,
        machine_type=mtype.name if mtype else machine_type,
    )


CERTIFIED = {
    TrainingLevel.USER: N_("{member} is certified to use the {machine_type}"),
    TrainingLevel.TRAINER: N_("{member} is now a trainer on the {machine_type}"),
    TrainingLevel.MAINTAINER: N_("{member} is now a maintainer of the {machine_type}"),
}


# --- a member's own page ------------------------------------------------------------------
@router.get("/me", response_class=HTMLResponse)
def my_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(EVERYONE)]
) -> Response:
    member = session.get(Member, user.member_id) if user.member_id else None
    if member is None:
        raise PageError(404, "This login is not linked to a member.")
    sessions = list_sessions(session, viewer=user, member=member.ref, limit=50)
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
