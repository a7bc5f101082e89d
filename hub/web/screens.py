"""The screens each role works in: members, trainings, statistics and a member's own page
(machines and maintenance: hub/web/machine_screens.py).

Every screen calls the API's own functions (or the services they call), so a rule lives in
one place: a grant here goes through `hub.api.trainings.grant`, a revocation through
`hub.api.badges.revoke`, both re-publishing the allow-lists as the API does. Each route names
the same role sets as the API route it mirrors.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from hub.api import badges as badges_api
from hub.api import members as members_api
from hub.api import trainings as trainings_api
from hub.api.changes import get_member
from hub.api.deps import (
    EVERYONE,
    MANAGE,
    MAX_ID,
    STAFF,
    TRAINERS,
    QueryDay,
    SessionDep,
)
from hub.category_history import history as category_history
from hub.imports import _is_trainer
from hub.models import (
    MachineType,
    Member,
    MemberCategory,
    PrintJob,
    Training,
    TrainingLevel,
    User,
)
from hub.services.sessions import list_sessions
from hub.usage_export import ExportInputError, usage_report
from hub.web.csrf import Checked
from hub.web.render import (
    PROBLEMS,
    Page,
    PageError,
    error_message,
    may,
    member_key,
    render,
)

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
    badges = (
        badges_api.badges(session, member_id=member_id, uid=None, active=None, limit=100, offset=0)
        if may(user, MANAGE)
        else None
    )
    trainings = trainings_api.list_trainings(
        session, user, member_id=member_id, machine_type=None, limit=100, offset=0
    )
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
        badge = badges_api.enrol(
            badges_api.BadgeCreate(uid=uid, member_id=member_id),
            session,
            user,
            request,
            background,
        )
    except PROBLEMS as exc:
        session.rollback()
        return _member_page(
            request, session, user, member_id, problem=error_message(exc), status_code=422
        )
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
        badge_id = _stored_id(badge_id, f"no badge with id {badge_id}")
        badge = badges_api.revoke(badge_id, session, user, request, background)
    except HTTPException as exc:
        raise PageError(exc.status_code, str(exc.detail)) from None
    return _member_page(request, session, user, badge.member_id, notice=f"card {badge.uid} revoked")


# --- trainings ----------------------------------------------------------------------------
def _types_i_train(session: Session, user: User) -> list[MachineType]:
    """The machine types this login may certify on: the API's own trainer rule."""
    if user.member_id is None:
        return []
    now = datetime.now(UTC)
    return [
        t
        for t in session.exec(select(MachineType).order_by(MachineType.code))
        if _is_trainer(session, user.member_id, t.id or 0, now)
    ]


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
        trainings_api.list_trainings(
            session, user, member_id=member_id, machine_type=None, limit=100, offset=0
        )
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
    """Grant (or renew) a user-level training through the API's own rule."""
    expires = datetime.now(UTC) + timedelta(days=round(months * 30.44)) if months else None
    try:
        training = trainings_api.grant(
            trainings_api.TrainingCreate(
                member_id=member_id,
                machine_type=machine_type,
                level=TrainingLevel.USER,
                expires_at=expires,
            ),
            session,
            user,
            request,
            background,
        )
    except PROBLEMS as exc:
        session.rollback()
        return _trainings_page(
            request,
            session,
            user,
            member_id=member_id,
            problem=error_message(exc),
            status_code=403 if isinstance(exc, HTTPException) else 422,
        )
    member = session.get(Member, member_id)
    return _trainings_page(
        request,
        session,
        user,
        member_id=member_id,
        notice=f"{member.name if member else member_id}: {training.machine_type} ✓",
    )


# --- statistics ---------------------------------------------------------------------------
def _months(start: date, end: date) -> list[tuple[date, date]]:
    out = []
    first = start.replace(day=1)
    while first < end:
        nxt = (first + timedelta(days=32)).replace(day=1)
        out.append((max(first, start), min(nxt, end)))
        first = nxt
    return out[-24:]


@router.get("/stats", response_class=HTMLResponse)
def stats_page(
    request: Request,
    user: Annotated[User, Page(MANAGE)],
    since: Annotated[QueryDay | None, Query(alias="from")] = None,
    until: Annotated[QueryDay | None, Query(alias="to")] = None,
) -> Response:
    tz = ZoneInfo(request.app.state.settings.timezone)
    today = datetime.now(tz).date()
    until = until or today + timedelta(days=1)
    since = since or (until - timedelta(days=365)).replace(day=1)
    engine = request.app.state.engine
    try:
        report = usage_report(engine, start=since, end=until, tz=tz, period="month")
        by_month = [
            (first, usage_report(engine, start=first, end=nxt, tz=tz).by_category)
            for first, nxt in _months(since, until)
        ]
    except ExportInputError as exc:
        raise PageError(422, str(exc)) from None
    categories = sorted({c for _, cats in by_month for c in cats})
    peak = max((v for row in report.hour_of_week for v in row), default=0.0) or 1.0
    query = f"from={since.isoformat()}&to={until.isoformat()}"
    return render(
        request,
        "stats.html",
        {
            "since": since,
            "until": until,
            "report": report,
            "days": DAYS,
            "peak": peak,
            "by_month": by_month,
            "categories": categories,
            "max_month": max(
                (sum(c["session_hours"] for c in cats.values()) for _, cats in by_month),
                default=0.0,
            )
            or 1.0,
            "max_util": max((r["utilisation"] for r in report.by_machine.values()), default=0.0)
            or 1.0,
            "csv": f"/api/v1/stats/usage?{query}&format=csv",
            "xlsx": f"/api/v1/stats/usage?{query}&format=xlsx",
        },
        user=user,
    )


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
    trainings = trainings_api.list_trainings(
        session, user, member_id=member.id, machine_type=None, limit=100, offset=0
    )
    balance = _balance(session, member)
    billing = _my_billing(session, member)
    return render(
        request,
        "me.html",
        {
            "member": member,
            "sessions": sessions,
            "jobs": jobs,
            "trainings": trainings,
            "balance": balance,
            "movements": billing["movements"],
            "statements": billing["statements"],
            "now": datetime.now(UTC),
        },
        user=user,
    )


def _balance(session: Session, member: Member) -> dict[str, Any] | None:
    """The prepaid balance as billing keeps it, read only (no account is created here)."""
    try:
        from hub.billing_store import BillingAccount
    except ImportError:  # billing not installed in this build
        return None
    account = session.get(BillingAccount, member.id)
    if account is None:
        return None
    return {"cents": account.balance_cents, "prepaid_only": account.prepaid_only}


# --- billing ------------------------------------------------------------------------------
# Billing has no API routes yet: this page reads its tables directly; its forms (top-up,
# plan, rates) are in hub/web/admin_screens.py, and closing a month stays in
# `atelier hub billing`.
@router.get("/billing", response_class=HTMLResponse)
def billing_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = None,
) -> Response:
    return billing_view(request, session, user, month=month)


def billing_view(
    request: Request,
    session: Session,
    user: User,
    *,
    month: str | None,
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    from hub.billing_store import BillingAccount, BillingMonth, BillingRate, Statement

    months = sorted(session.exec(select(BillingMonth.month)).all(), reverse=True)
    month = month or (months[0] if months else None)
    statements = (
        session.exec(
            select(Statement).where(Statement.month == month).order_by(col(Statement.number))
        ).all()
        if month
        else []
    )
    held = session.exec(select(BillingAccount).order_by(col(BillingAccount.balance_cents))).all()
    names = members_api.members_by_id(session, {a.member_id for a in held})
    accounts = [(names.get(a.member_id), a) for a in held]
    rates = session.exec(
        select(BillingRate).order_by(
            col(BillingRate.machine_type),
            col(BillingRate.category),
            col(BillingRate.effective_from),
        )
    ).all()
    return render(
        request,
        "billing.html",
        {
            "months": months,
            "month": month,
            "statements": statements,
            "accounts": accounts,
            "rates": rates,
            # Suggestions for the top-up and plan forms: the account holders; any other
            # member is typed by email or number (a lab's whole member table is not sent).
            "member_options": [
                (member_key(m), m.name) for m in sorted(names.values(), key=lambda m: m.name)
            ],
            "type_options": [
                (t.code, f"{t.name} ({t.code})")
                for t in session.exec(select(MachineType).order_by(col(MachineType.code)))
            ],
            "categories": list(MemberCategory),
            "notice": notice,
            "errors": errors or {},
            "problem": (errors or {}).get(""),
            "v": values or {},
        },
        user=user,
        status_code=status_code,
    )


def _my_billing(session: Session, member: Member) -> dict[str, Any]:
    from hub.billing_store import BalanceMovement, Statement

    moves = session.exec(
        select(BalanceMovement)
        .where(BalanceMovement.member_id == member.id)
        .order_by(col(BalanceMovement.at).desc())
        .limit(50)
    ).all()
    statements = session.exec(
        select(Statement)
        .where(Statement.payer_ref == member.ref)
        .order_by(col(Statement.month).desc(), col(Statement.number))
        .limit(24)
    ).all()
    return {"movements": moves, "statements": statements}
