"""Logins and tokens: sign in, sign out, who am I, the users (admin) and their API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlmodel import SQLModel

from hub.api.deps import (
    ADMIN,
    SESSION_COOKIE,
    Allow,
    CurrentUser,
    PathId,
    QueryId,
    SessionDep,
    actor,
    client_address,
    failure_window,
    request_token,
    set_session_cookie,
)
from hub.models import (
    ApiToken,
    TokenCreate,
    TokenPublic,
    User,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from hub.services import accounts
from hub.services.accounts import LoginRefused, login

router = APIRouter(prefix="/api/v1", tags=["accounts"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found"}}


class LoginRequest(SQLModel):
    username: str
    password: str


class LoginAnswer(SQLModel):
    token: str
    expires_at: datetime | None
    user: UserPublic


class TokenCreated(SQLModel):
    token: str
    info: TokenPublic


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


@router.post("/auth/logout", status_code=204)
def sign_out(request: Request, response: Response, session: SessionDep, user: CurrentUser) -> None:
    """Revokes the token this request was made with."""
    accounts.sign_out(session, raw=request_token(request))
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
    return accounts.list_users(session, limit=limit, offset=offset)


@router.post(
    "/users",
    response_model=UserPublic,
    status_code=201,
    dependencies=[Allow(ADMIN)],
    responses={409: {"description": "The username is taken"}},
)
def create_user(body: UserCreate, session: SessionDep, user: CurrentUser) -> User:
    member = (
        accounts.linked_member(session, member_id=body.member_id)
        if body.member_id is not None
        else None
    )
    created = accounts.add_user(
        session,
        username=body.username,
        password=body.password,
        role=body.role,
        actor=actor(user),
        member=member,
    )
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
    changes = body.model_dump(exclude_unset=True)
    if "member_id" in changes:
        changes["member_id"] = changes["member_id"] or None
    target = accounts.update_user(
        session,
        user_id=user_id,
        actor=actor(user),
        role=changes.get("role"),
        active=changes.get("active"),
        password=changes.get("password"),
        **({"member_id": changes["member_id"]} if "member_id" in changes else {}),
    )
    session.commit()
    session.refresh(target)
    return target


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, user: CurrentUser, user_id: QueryId = None) -> list[ApiToken]:
    """Your own tokens; an admin may name another user."""
    return accounts.tokens_of(session, viewer=user, user_id=user_id)


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(body: TokenCreate, session: SessionDep, user: CurrentUser) -> TokenCreated:
    """A new API token for yourself; the secret is in this answer only."""
    raw, token = accounts.create_api_token(
        session, user=user, name=body.name, expires_in_days=body.expires_in_days, actor=actor(user)
    )
    session.commit()
    session.refresh(token)
    return TokenCreated(token=raw, info=TokenPublic.model_validate(token))


@router.delete("/tokens/{token_id}", status_code=204, responses=NOT_FOUND)
def delete_token(token_id: PathId, session: SessionDep, user: CurrentUser) -> None:
    """Revoke a token: yours, or anyone's for an admin. It stops working at once."""
    accounts.revoke_token_by_id(session, token_id=token_id, by=user, actor=actor(user))
    session.commit()
