"""Server-rendered pages (Jinja2); assets are served by the hub, never from a CDN.

The pages sign in with the same tokens as the API: a login sets an HttpOnly, SameSite=Lax
cookie holding a `web` token, and logging out revokes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import select

from hub.api.accounts import client_address, failure_window, set_session_cookie
from hub.api.deps import SESSION_COOKIE, SessionDep
from hub.api.machines import machines_public
from hub.auth import LoginRefused, hash_token, login, revoke_token, user_for_token
from hub.models import ApiToken, User

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

STATE_LABELS = {
    "offline": "Offline",
    "idle": "Free",
    "in_use": "In use",
    "busy": "Working",
    "printing": "Printing",
    "locked": "Locked out",
}


def _signed_in(request: Request, session: SessionDep) -> User | None:
    header = request.headers.get("authorization", "")
    raw = (
        header[7:] if header.lower().startswith("bearer ") else request.cookies.get(SESSION_COOKIE)
    )
    return user_for_token(session, raw) if raw else None


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep) -> Response:
    user = _signed_in(request, session)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return templates.TemplateResponse(
        request,
        "index.html",
        {"machines": machines_public(session), "labels": STATE_LABELS, "user": user},
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": None, "username": ""})


@router.post("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=80)],
    password: Annotated[str, Form(max_length=200)],
) -> Response:
    try:
        result = login(
            session,
            username=username,
            password=password,
            client=client_address(request),
            window=failure_window(request),
        )
    except LoginRefused as exc:
        status = 429 if exc.retry_after else 401
        return templates.TemplateResponse(
            request,
            "login.html",
            {"error": str(exc), "username": username},
            status_code=status,
        )
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(request, response, result.token)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        token = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(raw))).first()
        if token is not None:
            revoke_token(session, token)
            session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
