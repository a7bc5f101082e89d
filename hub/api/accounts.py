"""Logins and tokens: sign in, sign out, who am I, the users (admin) and their API tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlmodel import SQLModel, col, select

from hub.api.changes import audit, invalid, member_field
from hub.api.deps import (
    ADMIN,
    SESSION_COOKIE,
    Allow,
    CurrentUser,
    Id,
    PathId,
    QueryId,
    SessionDep,
    request_token,
)
from hub.auth import (
    AuthError,
    FailureWindow,
    LoginRefused,
    hash_token,
    issue_token,
    login,
    revoke_token,
    set_password,
)
from hub.auth import create_user as make_user
from hub.models import ApiToken, Role, TokenPublic, User, UserPublic

router = APIRouter(prefix="/api/v1", tags=["accounts"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found"}}


class LoginRequest(SQLModel):
    username: str
    password: str


class LoginAnswer(SQLModel):
    token: str
    expires_at: datetime | None
    user: UserPublic


class UserCreate(SQLModel):
    username: str
    password: str
    role: Role = Role.MEMBER
    member_id: Id | None = None


class UserUpdate(SQLModel):
    role: Role | None = None
    active: bool | None = None
    password: str | None = None
    member_id: Id | None = None


class TokenCreate(SQLModel):
    name: str
    expires_in_days: int | None = None


class TokenCreated(SQLModel):
    token: str
    info: TokenPublic


def failure_window(request: Request) -> FailureWindow:
    window: FailureWindow | None = getattr(request.app.state, "login_failures", None)
    if window is None:
        window = request.app.state.login_failures = FailureWindow()
    return window


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/auth/login",
    response_model=LoginAnswer,
    responses={401: {"description": "Wrong credentials"}, 429: {"description": "Too many"}},
)
def sign_in(body: LoginRequest, session: SessionDep, request: Request, response: Response) -> Any:
    """A web session token (12 h), also set as an HttpOnly cookie for the pages."""
    try:
        result = login(
            session,
            username=body.username,
            password=body.password,
            client=client_address(request),
            window=failure_window(request),
        )
    except LoginRefused as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        status = 429 if exc.retry_after else 401
        raise HTTPException(status_code=status, detail=str(exc), headers=headers) from None
    set_session_cookie(request, response, result.token)
    return LoginAnswer(
        token=result.token,
        expires_at=result.token_row.expires_at,
        user=UserPublic.model_validate(result.user),
    )


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=12 * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


@router.post("/auth/logout", status_code=204)
def sign_out(request: Request, response: Response, session: SessionDep, user: CurrentUser) -> None:
    """Revokes the token this request was made with."""
    raw = request_token(request)
    token = session.exec(
        select(ApiToken).where(ApiToken.token_hash == hash_token(raw or ""))
    ).first()
    if token is not None:
        revoke_token(session, token)
        session.commit()
    response.delete_cookie(SESSION_COOKIE)


@router.get("/users/me", response_model=UserPublic)
def me(user: CurrentUser) -> User:
    return user


@router.get("/users", response_model=list[UserPublic], dependencies=[Allow(ADMIN)])
def list_users(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.id)).offset(offset).limit(limit)).all())


@router.post(
    "/users",
    response_model=UserPublic,
    status_code=201,
    dependencies=[Allow(ADMIN)],
    responses={409: {"description": "The username is taken"}},
)
def create_user(body: UserCreate, session: SessionDep, user: CurrentUser) -> User:
    member = member_field(session, body.member_id) if body.member_id is not None else None
    try:
        created = make_user(
            session, username=body.username, password=body.password, role=body.role, member=member
        )
    except AuthError as exc:
        message = str(exc)
        if "already exists" in message:
            raise HTTPException(status_code=409, detail=message) from None
        field = next((f for f in ("password", "member") if f in message), "username")
        raise invalid("member_id" if field == "member" else field, message) from None
    audit(session, user, "user.create", "user", created.username, role=body.role.value)
    session.commit()
    session.refresh(created)
    return created


@router.patch(
    "/users/{user_id:int}",
    response_model=UserPublic,
    responses=NOT_FOUND,
    dependencies=[Allow(ADMIN)],
)
def update_user(user_id: PathId, body: UserUpdate, session: SessionDep, user: CurrentUser) -> User:
    target = session.get(User, user_id)
    if target is None:
        raise HTTPException(status_code=404, detail=f"no user with id {user_id}")
    changes = body.model_dump(exclude_unset=True)
    if changes.get("role") is not None:
        target.role = changes["role"]
    if changes.get("active") is not None:
        target.active = changes["active"]
    if "member_id" in changes:
        target.member_id = (
            member_field(session, changes["member_id"]).id if changes["member_id"] else None
        )
    if target.role is Role.MEMBER and target.member_id is None:
        raise invalid("member_id", "a `member` user needs a member")
    if changes.get("password") is not None:
        try:
            set_password(target, changes["password"])
        except AuthError as exc:
            raise invalid("password", f"{exc}") from None
    if changes.get("active") is False or changes.get("password") is not None:
        # A disabled account or a new password ends every session and token at once.
        for token in session.exec(select(ApiToken).where(ApiToken.user_id == target.id)):
            revoke_token(session, token)
    session.add(target)
    audit(session, user, "user.update", "user", target.username, fields=sorted(changes))
    session.commit()
    session.refresh(target)
    return target


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, user: CurrentUser, user_id: QueryId = None) -> list[ApiToken]:
    """Your own tokens; an admin may name another user."""
    if user_id is not None and user_id != user.id and user.role is not Role.ADMIN:
        raise HTTPException(status_code=403, detail="only an admin sees other users' tokens")
    owner = user_id if user_id is not None else user.id
    return list(
        session.exec(select(ApiToken).where(ApiToken.user_id == owner).order_by(col(ApiToken.id)))
    )


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(body: TokenCreate, session: SessionDep, user: CurrentUser) -> TokenCreated:
    """A new API token for yourself; the secret is in this answer only."""
    if not body.name.strip():
        raise invalid("name", "say what the token is for")
    if body.expires_in_days is not None and not 1 <= body.expires_in_days <= 3650:
        raise invalid("expires_in_days", "1 to 3650, or omit it")
    ttl = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    raw, token = issue_token(session, user, name=body.name.strip(), kind="api", ttl=ttl)
    audit(session, user, "token.create", "token", token.prefix, name=token.name)
    session.commit()
    session.refresh(token)
    return TokenCreated(token=raw, info=TokenPublic.model_validate(token))


@router.delete("/tokens/{token_id}", status_code=204, responses=NOT_FOUND)
def delete_token(token_id: PathId, session: SessionDep, user: CurrentUser) -> None:
    """Revoke a token: yours, or anyone's for an admin. It stops working at once."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise HTTPException(status_code=404, detail=f"no token with id {token_id}")
    if token.user_id != user.id and user.role is not Role.ADMIN:
        raise HTTPException(status_code=403, detail="only an admin revokes other users' tokens")
    revoke_token(session, token, now=datetime.now(UTC))
    audit(session, user, "token.revoke", "token", token.prefix)
    session.commit()
