"""The screens of logins and tokens: an admin's users, and everyone's own API tokens.

Each form calls hub/services/accounts.py, as the API and `atelier hub user` do; a refusal
(a HubError) is shown translated under the field it names. Each route names the same role set
as the API route it mirrors.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from hub.core.deps import ADMIN, EVERYONE, SessionDep, actor
from hub.core.errors import HubError, InvalidValue, describe
from hub.models import ApiToken, Member, Role, User
from hub.services import accounts
from hub.services.members import member_by_text, members_by_id
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.i18n import language_of, translator
from hub.web.render import Page, PageError, member_key, render

router = APIRouter(prefix="/web", include_in_schema=False)

# A service's field -> the id of this page's input (the error shows under it).
USER_INPUTS = {f: f for f in ("username", "password", "role", "member_id", "active")}
TOKEN_INPUTS = {"name": "name", "expires_in_days": "expires_in_days"}


def _errors(request: Request, error: HubError, inputs: dict[str, str]) -> dict[str, str]:
    """The template's `errors`: by input id, the page's problem under "" (as before)."""
    errors, problem = field_errors(request, error, inputs)
    if problem:
        errors[""] = problem
    return errors


def _refused(request: Request, error: HubError) -> PageError:
    return PageError(error.status, describe(error, translator(language_of(request)).gettext))


def _role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InvalidValue("user.role_unknown", field="role", params={"role": value}) from None


def _linked(session: Session, value: str) -> Member | None:
    return member_by_text(session, value=value, field="member_id")


# --- users --------------------------------------------------------------------------------
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
    users = accounts.list_users(session, limit=1000, offset=0)
    linked = members_by_id(session, {u.member_id for u in users if u.member_id})
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
        created = accounts.add_user(
            session,
            username=username,
            password=password,
            role=_role(role),
            actor=actor(user),
            member=_linked(session, member_id),
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        errors = _errors(request, exc, USER_INPUTS)
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
            "tokens": accounts.tokens_of(session, viewer=user, user_id=target.id),
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


def _existing_user(request: Request, session: Session, user_id: int) -> User:
    try:
        return accounts.user_by_id(session, user_id=user_id)
    except HubError as exc:
        raise _refused(request, exc) from None


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user_page(
    request: Request, user_id: int, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    return _user_page(request, session, user, _existing_user(request, session, user_id))


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
    target = _existing_user(request, session, user_id)
    try:
        linked = _linked(session, member_id)
        accounts.update_user(
            session,
            user_id=user_id,
            actor=actor(user),
            role=_role(role),
            active=bool(active),
            member_id=linked.id if linked else None,
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        target = _existing_user(request, session, user_id)
        errors = _errors(request, exc, USER_INPUTS)
        return _user_page(request, session, user, target, errors=errors, status_code=422)
    session.refresh(target)
    return _user_page(request, session, user, target, notice="user saved")


@router.post("/users/{user_id}/password", response_class=HTMLResponse, dependencies=[Checked])
def reset_password(
    request: Request,
    user_id: int,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    target = _existing_user(request, session, user_id)
    try:
        accounts.update_user(session, user_id=user_id, actor=actor(user), password=password)
        session.commit()
    except HubError as exc:
        session.rollback()
        target = _existing_user(request, session, user_id)
        errors = _errors(request, exc, USER_INPUTS)
        return _user_page(request, session, user, target, errors=errors, status_code=422)
    session.refresh(target)
    return _user_page(
        request,
        session,
        user,
        target,
        notice="password changed: every session and token of this user is revoked",
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
    tokens = [t for t in accounts.tokens_of(session, viewer=user) if t.kind == "api"]
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
            raise InvalidValue(
                "token.days_out_of_range",
                field="expires_in_days",
                params={"max": accounts.TOKEN_MAX_DAYS},
            )
        raw, _ = accounts.create_api_token(
            session,
            user=user,
            name=name,
            expires_in_days=int(days) if days else None,
            actor=actor(user),
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        errors = _errors(request, exc, TOKEN_INPUTS)
        return _account_page(request, session, user, errors=errors, status_code=422)
    # The secret is in this answer only: the hub keeps its hash.
    return _account_page(request, session, user, secret=raw)


@router.post(
    "/account/tokens/{token_id}/revoke", response_class=HTMLResponse, dependencies=[Checked]
)
def revoke_token(
    request: Request,
    token_id: int,
    session: SessionDep,
    user: Annotated[User, Page(EVERYONE)],
) -> Response:
    try:
        token: ApiToken = accounts.revoke_token_by_id(
            session, token_id=token_id, by=user, actor=actor(user)
        )
        session.commit()
    except HubError as exc:
        # Refused before any change; no rollback, which would expire the signed-in user the
        # error page still shows.
        raise _refused(request, exc) from None
    if token.user_id != user.id:  # an admin on another user's page
        owner = _existing_user(request, session, token.user_id)
        return _user_page(request, session, user, owner, notice="token revoked")
    return _account_page(request, session, user, notice="token revoked")
