"""The screens that change the lab's records: members, machines and their types, users and
tokens, retention settings and billing actions.

Each form calls the API's own function (`hub.api.members.create_member`,
`hub.api.accounts.update_user`...) or, for billing, the store functions the CLI calls, so the
rules, the audit rows and the allow-list re-publication stay in one place. Each route names
the same role sets as the API route it mirrors. A refusal is shown in the form, next to the
field it is about.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import or_
from sqlmodel import Session, col, select

from hub.api import accounts as accounts_api
from hub.api import members as members_api
from hub.api.changes import audit, get_member, invalid, republish
from hub.api.deps import ADMIN, EVERYONE, MANAGE, MAX_ID, SessionDep
from hub.models import (
    ApiToken,
    Member,
    MemberCategory,
    MemberStatus,
    Role,
    User,
)
from hub.web.csrf import Checked
from hub.web.i18n import N_
from hub.web.render import PROBLEMS, Page, PageError, error_message, member_key, render

router = APIRouter(prefix="/web", include_in_schema=False)
RATE_CSV_MAX = 1_000_000

# Words shown from code, for the catalogue.
WORDS = [
    N_("machine type created"),
    N_("machine type saved"),
    N_("user saved"),
    N_("password changed: every session and token of this user is revoked"),
    N_("token revoked"),
    N_("rate saved"),
    N_("rate replaced"),
    N_("Users"),
    N_("Settings"),
    N_("laser"),
    N_("printer"),
    N_("cnc"),
    N_("other"),
]


def field_errors(exc: Exception, fields: list[str]) -> dict[str, str]:
    """What went wrong, keyed by the form field it is about ("" when it names none)."""
    if isinstance(exc, RequestValidationError | ValidationError):
        out: dict[str, str] = {}
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
            name = next((x for x in loc if x in fields), "")
            message = str(err.get("msg", "")).removeprefix("Value error, ")
            if not name and loc:
                message = " ".join(loc) + ": " + message
            out[name] = (out[name] + "; " if name in out else "") + message
        return out
    message = error_message(exc)
    lowered = message.lower()
    for name in sorted(fields, key=len, reverse=True):  # category_from before category
        if lowered.startswith(name) or f" {name} " in lowered or f"{name}:" in lowered:
            return {name: message}
    return {"": message}


def _text(value: str) -> str | None:
    return value.strip() or None


def _id(value: str, field: str) -> int | None:
    """An id from a select ('' = none): a wrong one is a mistake in that field."""
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_ID:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", field), "msg": "pick one from the list"}]
        )
    return int(value)


PAYER_SUGGESTIONS = 500


def _payer_suggestions(session: Session, member: Member | None) -> list[tuple[str, str]]:
    """(what to type, name) for the payer field's suggestions: members in category company
    (the companies and schools that pay for their people) and those paying for someone
    already; any other member is found by email or number. Never the whole member table."""
    payers = select(Member.payer_id).where(col(Member.payer_id).is_not(None))
    rows = session.exec(
        select(Member)
        .where(or_(col(Member.category) == MemberCategory.COMPANY, col(Member.id).in_(payers)))
        .order_by(col(Member.name))
        .limit(PAYER_SUGGESTIONS)
    ).all()
    return [(member_key(m), m.name) for m in rows if member is None or m.id != member.id]


def _payer(session: Session, member: Member) -> Member | None:
    return session.get(Member, member.payer_id) if member.payer_id else None


def _payer_id(session: Session, value: str) -> int | None:
    """The payer field: empty (they pay themselves), a member number, or an email."""
    return _member_by_text(session, value, "payer_id", "leave empty when they pay for themselves")


def _member_by_text(session: Session, value: str, field: str, hint: str) -> int | None:
    """A member typed into a form: their number or their email (or their pseudonymous ref);
    None when empty. An unknown one is a mistake in `field`."""
    value = value.strip()
    if not value or value.isdigit():
        return _id(value, field)
    found = session.exec(select(Member.id).where(Member.email == value.lower())).first()
    if found is None:
        found = session.exec(select(Member.id).where(Member.ref == value)).first()
    if found is None:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", field),
                    "msg": f"no member with email or number {value!r}; {hint}",
                }
            ]
        )
    return int(found)


# --- members ------------------------------------------------------------------------------
MEMBER_FIELDS = ["name", "email", "category", "category_from", "status", "payer_id"]


def _member_form(
    request: Request,
    session: Session,
    user: User,
    values: dict[str, Any],
    *,
    member: Member | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    return render(
        request,
        "member_form.html",
        {
            "member": member,
            "v": values,
            "errors": errors,
            "problem": errors.get(""),
            "categories": list(MemberCategory),
            "statuses": list(MemberStatus),
            "payers": _payer_suggestions(session, member),
        },
        user=user,
        status_code=status_code,
    )


def _member_values(
    name: str, email: str, category: str, status: str, payer_id: str, category_from: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "email": email,
        "category": category,
        "category_from": category_from,
        "status": status,
        "payer_id": payer_id,
    }


@router.get("/members/new", response_class=HTMLResponse)
def new_member_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(MANAGE)]
) -> Response:
    return _member_form(request, session, user, _member_values("", "", "individual", "active", ""))


@router.post("/members/new", response_class=HTMLResponse, dependencies=[Checked])
def create_member(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    name: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    category: Annotated[str, Form(max_length=20)] = "individual",
    status: Annotated[str, Form(max_length=20)] = "active",
    payer_id: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    values = _member_values(name, email, category, status, payer_id)
    try:
        if not name.strip():
            raise invalid("name", "give the member's name")
        member = members_api.create_member(
            members_api.MemberCreate.model_validate(
                {
                    "name": name.strip(),
                    "email": _text(email),
                    "category": category,
                    "status": status,
                    "payer_id": _payer_id(session, payer_id),
                }
            ),
            session,
            user,
        )
    except PROBLEMS as exc:
        session.rollback()
        errors = field_errors(exc, MEMBER_FIELDS)
        return _member_form(request, session, user, values, errors=errors, status_code=422)
    return RedirectResponse(f"/web/members/{member.id}", status_code=303)


def _existing_member(session: Session, member_id: int) -> Member:
    if not 1 <= member_id <= MAX_ID:  # beyond a database's ids: unknown, not a driver error
        raise PageError(404, f"no member with id {member_id}")
    try:
        return get_member(session, member_id)
    except HTTPException as exc:
        raise PageError(exc.status_code, str(exc.detail)) from None


@router.get("/members/{member_id}/edit", response_class=HTMLResponse)
def edit_member_page(
    request: Request, member_id: int, session: SessionDep, user: Annotated[User, Page(MANAGE)]
) -> Response:
    member = _existing_member(session, member_id)
    values = _member_values(
        member.name,
        member.email or "",
        member.category.value,
        member.status.value,
        member_key(payer) if (payer := _payer(session, member)) else "",
    )
    return _member_form(request, session, user, values, member=member)


@router.post("/members/{member_id}/edit", response_class=HTMLResponse, dependencies=[Checked])
def update_member(
    request: Request,
    member_id: int,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    name: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    category: Annotated[str, Form(max_length=20)] = "individual",
    category_from: Annotated[str, Form(max_length=10)] = "",
    status: Annotated[str, Form(max_length=20)] = "active",
    payer_id: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    member = _existing_member(session, member_id)
    values = _member_values(name, email, category, status, payer_id, category_from)
    try:
        if not name.strip():
            raise invalid("name", "give the member's name")
        changes: dict[str, Any] = {
            "name": name.strip(),
            "email": _text(email),
            "category": category,
            "status": status,
            "payer_id": _payer_id(session, payer_id),
        }
        if category_from.strip():  # empty: a new category takes effect today
            changes["category_from"] = category_from.strip()
        members_api.update_member(
            member_id,
            members_api.MemberUpdate.model_validate(changes),
            session,
            user,
            request,
            background,
        )
    except PROBLEMS as exc:
        session.rollback()
        errors = field_errors(exc, MEMBER_FIELDS)
        return _member_form(
            request, session, user, values, member=member, errors=errors, status_code=422
        )
    return RedirectResponse(f"/web/members/{member_id}", status_code=303)


# --- users --------------------------------------------------------------------------------
USER_FIELDS = ["username", "password", "role", "member_id", "active"]


def _users_page(
    request: Request,
    session: Session,
    user: User,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    users = accounts_api.list_users(session, limit=1000, offset=0)
    linked = members_api.members_by_id(session, {u.member_id for u in users if u.member_id})
    names = {member_id: m.name for member_id, m in linked.items()}
    return render(
        request,
        "users.html",
        {
            "users": users,
            "names": names,  # only the members linked to a login
            "roles": list(Role),
            "v": values or {"username": "", "role": "member", "member_id": ""},
            "errors": errors,
            "problem": errors.get(""),
        },
        user=user,
        status_code=status_code,
    )


@router.get("/users", response_class=HTMLResponse)
def users_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    return _users_page(request, session, user)


@router.post("/users", response_class=HTMLResponse, dependencies=[Checked])
def create_user(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    username: Annotated[str, Form(max_length=80)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "member",
    member_id: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    values = {"username": username, "role": role, "member_id": member_id}
    try:
        created = accounts_api.create_user(
            accounts_api.UserCreate.model_validate(
                {
                    "username": username.strip(),
                    "password": password,
                    "role": role,
                    "member_id": _member_by_text(session, member_id, "member_id", LINKED_HINT),
                }
            ),
            session,
            user,
        )
    except PROBLEMS as exc:
        session.rollback()
        errors = field_errors(exc, USER_FIELDS)
        return _users_page(request, session, user, values=values, errors=errors, status_code=422)
    return RedirectResponse(f"/web/users/{created.id}", status_code=303)


def _user_page(
    request: Request,
    session: Session,
    user: User,
    target: User,
    *,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    return render(
        request,
        "user.html",
        {
            "target": target,
            "v": {"member_id": _linked_key(session, target)},
            "roles": list(Role),
            "tokens": accounts_api.list_tokens(session, user, target.id),
            "errors": errors,
            "problem": errors.get(""),
            "notice": notice,
        },
        user=user,
        status_code=status_code,
    )


def _linked_key(session: Session, target: User) -> str:
    member = session.get(Member, target.member_id) if target.member_id else None
    return member_key(member) if member else ""


LINKED_HINT = "leave empty for a login without a member"


def _existing_user(session: Session, user_id: int) -> User:
    target = session.get(User, user_id) if 1 <= user_id <= MAX_ID else None
    if target is None:
        raise PageError(404, f"no user with id {user_id}")
    return target


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user_page(
    request: Request, user_id: int, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    return _user_page(request, session, user, _existing_user(session, user_id))


def _change_user(
    request: Request,
    session: Session,
    user: User,
    user_id: int,
    body: dict[str, Any],
    notice: str,
) -> Response:
    target = _existing_user(session, user_id)
    try:
        accounts_api.update_user(user_id, accounts_api.UserUpdate(**body), session, user)
    except PROBLEMS as exc:
        session.rollback()
        target = _existing_user(session, user_id)
        errors = field_errors(exc, USER_FIELDS)
        return _user_page(request, session, user, target, errors=errors, status_code=422)
    session.refresh(target)
    return _user_page(request, session, user, target, notice=notice)


@router.post("/users/{user_id}", response_class=HTMLResponse, dependencies=[Checked])
def update_user(
    request: Request,
    user_id: int,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    role: Annotated[str, Form(max_length=20)] = "member",
    member_id: Annotated[str, Form(max_length=320)] = "",
    active: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    try:
        body = {
            "role": role,
            "member_id": _member_by_text(session, member_id, "member_id", LINKED_HINT),
            "active": bool(active),
        }
    except RequestValidationError as exc:
        target = _existing_user(session, user_id)
        errors = field_errors(exc, USER_FIELDS)
        return _user_page(request, session, user, target, errors=errors, status_code=422)
    return _change_user(request, session, user, user_id, body, "user saved")


@router.post("/users/{user_id}/password", response_class=HTMLResponse, dependencies=[Checked])
def reset_password(
    request: Request,
    user_id: int,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    return _change_user(
        request,
        session,
        user,
        user_id,
        {"password": password},
        "password changed: every session and token of this user is revoked",
    )


# --- one's own API tokens -----------------------------------------------------------------
def _account_page(
    request: Request,
    session: Session,
    user: User,
    *,
    secret: str | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    tokens = [t for t in accounts_api.list_tokens(session, user, None) if t.kind == "api"]
    return render(
        request,
        "account.html",
        {
            "tokens": tokens,
            "secret": secret,
            "errors": errors,
            "problem": errors.get(""),
            "notice": notice,
            "member": session.get(Member, user.member_id) if user.member_id else None,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/account", response_class=HTMLResponse)
def account_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(EVERYONE)]
) -> Response:
    return _account_page(request, session, user)


@router.post("/account/tokens", response_class=HTMLResponse, dependencies=[Checked])
def create_token(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(EVERYONE)],
    name: Annotated[str, Form(max_length=100)] = "",
    expires_in_days: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    try:
        days = expires_in_days.strip()
        if days and not days.isdigit():
            raise invalid("expires_in_days", "a whole number of days, or leave empty")
        created = accounts_api.create_token(
            accounts_api.TokenCreate(name=name, expires_in_days=int(days) if days else None),
            session,
            user,
        )
    except PROBLEMS as exc:
        session.rollback()
        errors = field_errors(exc, ["name", "expires_in_days"])
        return _account_page(request, session, user, errors=errors, status_code=422)
    # The secret is in this answer only: the hub keeps its hash.
    return _account_page(request, session, user, secret=created.token)


@router.post(
    "/account/tokens/{token_id}/revoke", response_class=HTMLResponse, dependencies=[Checked]
)
def revoke_token(
    request: Request,
    token_id: int,
    session: SessionDep,
    user: Annotated[User, Page(EVERYONE)],
) -> Response:
    if not 1 <= token_id <= MAX_ID:
        raise PageError(404, f"no token with id {token_id}")
    token = session.get(ApiToken, token_id)
    try:
        accounts_api.delete_token(token_id, session, user)
    except HTTPException as exc:
        raise PageError(exc.status_code, str(exc.detail)) from None
    if token is not None and token.user_id != user.id:  # an admin on another user's page
        return _user_page(
            request, session, user, _existing_user(session, token.user_id), notice="token revoked"
        )
    return _account_page(request, session, user, notice="token revoked")


# --- billing actions ----------------------------------------------------------------------
# Billing has no API routes: these call the store functions `atelier hub billing` calls,
# with the same audit rows, and re-publish the lists when a balance or plan changes.
def _billing_member(session: Session, member_id: str) -> Member:
    hint = "give the member by email or number"
    chosen = _member_by_text(session, member_id, "member_id", hint)
    member = session.get(Member, chosen) if chosen else None
    if member is None:
        raise invalid("member_id", hint)
    return member


def _billing_answer(
    request: Request,
    session: Session,
    user: User,
    *,
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    from hub.web.screens import billing_view

    return billing_view(
        request,
        session,
        user,
        month=None,
        notice=notice,
        errors=errors or {},
        values=values or {},
        status_code=422 if errors else 200,
    )


@router.post("/billing/topup", response_class=HTMLResponse, dependencies=[Checked])
def top_up(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    member_id: Annotated[str, Form(max_length=320)] = "",
    amount: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    from hub.api.changes import actor
    from hub.billing_store import euros, parse_euros
    from hub.billing_store import top_up as store

    values = {"topup_member_id": member_id, "topup_amount": amount, "topup_note": note}
    try:
        member = _billing_member(session, member_id)
        cents = parse_euros(amount, field="amount")
        account = store(session, member, cents, actor=actor(user), note=note.strip())
        audit(session, user, "billing.topup", "member", member.ref, cents=cents)
        session.commit()
    except PROBLEMS as exc:
        session.rollback()
        errors = {f"topup_{k}" if k else "": v for k, v in _money_errors(exc).items()}
        return _billing_answer(request, session, user, errors=errors, values=values)
    republish(request, background)  # an empty balance may have been refusing the member
    text = f"{member.name}: +{euros(cents)} €, {euros(account.balance_cents)} €"
    return _billing_answer(request, session, user, notice=text)


def _money_errors(exc: Exception) -> dict[str, str]:
    errors = field_errors(exc, ["member_id", "amount", "note"])
    if "" in errors and errors[""].startswith("AMOUNT"):
        errors["amount"] = errors.pop("").replace("AMOUNT", "amount", 1)
    return errors


@router.post("/billing/plan", response_class=HTMLResponse, dependencies=[Checked])
def set_plan(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    member_id: Annotated[str, Form(max_length=320)] = "",
    plan: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    from hub.billing_store import set_plan as store

    values = {"plan_member_id": member_id, "plan": plan}
    try:
        member = _billing_member(session, member_id)
        if plan not in ("prepaid", "later"):
            raise invalid("plan", "prepaid only or pay later")
        store(session, member, prepaid_only=plan == "prepaid")
        audit(session, user, "billing.plan", "member", member.ref, prepaid_only=plan == "prepaid")
        session.commit()
    except PROBLEMS as exc:
        session.rollback()
        errors = {
            f"plan_{k}" if k else "": v for k, v in field_errors(exc, ["member_id", "plan"]).items()
        }
        return _billing_answer(request, session, user, errors=errors, values=values)
    republish(request, background)
    return _billing_answer(request, session, user, notice=f"{member.name}: plan saved")


def _rate_fields() -> list[str]:
    from hub.billing_store import RATE_FIELDS

    return RATE_FIELDS


@router.post("/billing/rates", response_class=HTMLResponse, dependencies=[Checked])
def set_rate(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    machine_type: Annotated[str, Form(max_length=63)] = "",
    category: Annotated[str, Form(max_length=20)] = "",
    effective_from: Annotated[str, Form(max_length=20)] = "",
    cents_per_hour: Annotated[str, Form(max_length=12)] = "",
    basis: Annotated[str, Form(max_length=10)] = "session",
    start_fee_cents: Annotated[str, Form(max_length=12)] = "",
    minimum_cents: Annotated[str, Form(max_length=12)] = "",
    rounding_minutes: Annotated[str, Form(max_length=12)] = "",
    daily_cap_cents: Annotated[str, Form(max_length=12)] = "",
    included_minutes_per_month: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    values = {
        "machine_type": machine_type,
        "category": category,
        "effective_from": effective_from,
        "cents_per_hour": cents_per_hour,
        "basis": basis,
        "start_fee_cents": start_fee_cents,
        "minimum_cents": minimum_cents,
        "rounding_minutes": rounding_minutes,
        "daily_cap_cents": daily_cap_cents,
        "included_minutes_per_month": included_minutes_per_month,
    }
    return _rates(request, session, user, "rate", values)


@router.post("/billing/rates/import", response_class=HTMLResponse, dependencies=[Checked])
def import_rates(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    file: UploadFile | None = None,
) -> Response:
    if file is None or not file.filename:
        errors = {"import_file": "choose the CSV file to import"}
        return _billing_answer(request, session, user, errors=errors)
    raw = file.file.read(RATE_CSV_MAX + 1)
    return _rates(request, session, user, "import", {"file": file.filename, "raw": raw})


def _rates(
    request: Request, session: Session, user: User, what: str, values: dict[str, Any]
) -> Response:
    from hub.billing_store import BillingError, check_rate
    from hub.billing_store import import_rates as run_import
    from hub.billing_store import set_rate as store

    if what == "rate":
        try:
            rate = check_rate(session, values)
            added = store(session, rate)
            audit(
                session,
                user,
                "billing.rate_set",
                "billing_rate",
                f"{rate.machine_type}/{rate.category}/{rate.effective_from}",
                **{k: v for k, v in values.items() if v},
            )
            session.commit()
        except PROBLEMS as exc:
            session.rollback()
            errors = field_errors(exc, _rate_fields())
            shown = {f"rate_{k}": v for k, v in values.items()}
            errors = {f"rate_{k}" if k else "": v for k, v in errors.items()}
            return _billing_answer(request, session, user, errors=errors, values=shown)
        notice = "rate saved" if added else "rate replaced"
        return _billing_answer(request, session, user, notice=notice)
    raw: bytes = values["raw"]
    try:
        if len(raw) > RATE_CSV_MAX:
            raise BillingError("the file is larger than 1 MB; split it")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BillingError("the file is not UTF-8 text; save the sheet as CSV UTF-8") from None
        count, replaced = run_import(session, text)
        audit(
            session,
            user,
            "billing.rates_import",
            "billing_rate",
            values["file"],
            added=count,
            replaced=replaced,
        )
        session.commit()
    except PROBLEMS as exc:
        session.rollback()
        message = f"{values['file']}: {error_message(exc)}; nothing was imported"
        return _billing_answer(request, session, user, errors={"import_file": message})
    notice = f"rates imported: {count} added, {replaced} replaced"
    return _billing_answer(request, session, user, notice=notice)
