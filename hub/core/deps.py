"""The HTTP dependencies both front ends share: the database session, the signed-in user, roles.

The API's routers and the web's pages only declare them: `user: CurrentUser`, or
`dependencies=[Allow(*MANAGE)]`. They live in core, not in `hub.api`, because the web may not
import the API (docs/decisions.md); `hub.api.deps` re-exports them for the routers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, HTTPException, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from sqlmodel import Session

from hub.models import MAX_ID as MAX_ID  # the pages and routers check ids against it
from hub.models import Id as Id  # the row id a body names, for the routers (hub.api.deps)
from hub.models import Role, User
from hub.services.accounts import FailureWindow, user_for_token

log = logging.getLogger(__name__)

SESSION_COOKIE = "atelier_session"

# Who does what, in the lab's words. Each route names one of these.
EVERYONE = frozenset(Role)
STAFF = frozenset({Role.TRAINER, Role.MAINTAINER, Role.MANAGER, Role.ADMIN})
TRAINERS = frozenset({Role.TRAINER, Role.MANAGER, Role.ADMIN})
MAINTAINERS = frozenset({Role.MAINTAINER, Role.MANAGER, Role.ADMIN})
MANAGE = frozenset({Role.MANAGER, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})


# Row ids as the databases store them (32-bit on PostgreSQL): anything larger is a 422, not
# an overflow in the driver.
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]

# Days and times a query may name: the window the usage exports take (hub/usage_export.py).
# Far outside it, arithmetic on the value (a year back, a time zone) overflows Python's
# datetime and the database's types: a 422 naming the parameter, never a 500.
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(3000, 1, 1)
WINDOW = f"give a day from {EARLIEST_DAY} to {LATEST_DAY}"


def _day_in_window(value: date) -> date:
    if not EARLIEST_DAY <= value <= LATEST_DAY:
        raise ValueError(f"{value.isoformat()} is out of range: {WINDOW}")
    return value


def _moment_in_window(value: datetime) -> datetime:
    """In the window, as UTC; a time without a zone is taken as UTC."""
    if not EARLIEST_DAY <= value.date() <= LATEST_DAY:
        raise ValueError(f"{value.isoformat()} is out of range: {WINDOW}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


QueryDay = Annotated[date, AfterValidator(_day_in_window)]
QueryMoment = Annotated[datetime, AfterValidator(_moment_in_window)]


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="an API token: `atelier hub user token`")


def request_token(request: Request) -> str | None:
    """The token a request carries: `Authorization: Bearer …`, else the web session cookie."""
    header = request.headers.get("authorization", "")
    return (
        header[7:] if header.lower().startswith("bearer ") else request.cookies.get(SESSION_COOKIE)
    )


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def refuse_cross_site(request: Request) -> None:
    """A change signed in by the web cookie must come from the hub's own pages.

    The cookie is SameSite=Lax, so browsers already keep it off cross-site POSTs; this is the
    second lock (OWASP's check of the standard headers): a browser says where a request comes
    from (`Sec-Fetch-Site`, `Origin`), and one from another site is refused. Scripts and tools
    send neither header and sign in with a bearer token anyway."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise HTTPException(status_code=403, detail="cross-site request refused")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = origin.split("://", 1)[-1].rstrip("/").lower()
        if host != request.headers.get("host", "").lower():
            raise HTTPException(
                status_code=403,
                detail="cross-site request refused: the Origin is not this hub "
                "(behind a proxy, pass the Host header on: proxy_set_header Host $host)",
            )
    elif origin == "null":
        raise HTTPException(status_code=403, detail="cross-site request refused")


def get_current_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    raw = credentials.credentials if credentials else request.cookies.get(SESSION_COOKIE)
    if raw and credentials is None and request.method not in SAFE_METHODS:
        refuse_cross_site(request)
    user = user_for_token(session, raw) if raw else None
    if user is None:
        raise HTTPException(
            status_code=401,
            detail="sign in: send `Authorization: Bearer <token>` or log in on the web page",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def Allow(*role_sets: frozenset[Role]) -> Any:  # noqa: N802  (reads as a declaration)
    """A dependency refusing, with 403, anyone whose role is in none of these sets."""
    allowed = frozenset().union(*role_sets)

    def check(user: CurrentUser) -> User:
        if user.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(status_code=403, detail=f"this needs one of the roles: {names}")
        return user

    return Depends(check)


def role_guard(*role_sets: frozenset[Role]) -> Callable[..., User]:
    """The same check as a plain function, for routes that need the user object too."""
    return Allow(*role_sets).dependency  # type: ignore[no-any-return]


def is_staff(user: User) -> bool:
    return user.role in STAFF


def actor(user: User) -> str:
    """Who made a change, as the audit log names a signed-in user."""
    return f"user:{user.username}"


def republish(
    request: Request, background: BackgroundTasks, machine_codes: list[str] | None = None
) -> None:
    """After the response: sign and publish these machines' lists (all when None), so a
    revocation reaches the machines within seconds."""
    publisher = getattr(request.app.state, "publisher", None)
    if publisher is None:
        return

    def publish() -> None:
        try:
            publisher.publish(machine_codes)
        except Exception:  # the scheduled publication will catch up
            log.exception("publishing allow-lists after a change failed")

    background.add_task(publish)


def failure_window(request: Request) -> FailureWindow:
    """The app's count of failed logins per client address (hub/services/accounts.py)."""
    window: FailureWindow | None = getattr(request.app.state, "login_failures", None)
    if window is None:
        window = request.app.state.login_failures = FailureWindow()
    return window


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """A web login's token in an HttpOnly, SameSite=Lax cookie (Secure over HTTPS)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=12 * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
