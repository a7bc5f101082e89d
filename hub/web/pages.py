"""Server-rendered pages (Jinja2 + htmx); assets are served by the hub, never from a CDN.

The pages sign in with the same tokens as the API: a login sets an HttpOnly, SameSite=Lax
cookie holding a `web` token, and logging out revokes it. Every form posts a CSRF token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from sqlmodel import Session, col, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.core.deps import (
    SESSION_COOKIE,
    STAFF,
    SessionDep,
    client_address,
    failure_window,
    set_session_cookie,
)
from hub.models import MachinePublic, MachineSession, User
from hub.services.accounts import LoginRefused, login, sign_out
from hub.services.machine_views import machines_public
from hub.services.maintenance.tasks import task_states
from hub.services.sessions import list_events
from hub.web.csrf import require_csrf
from hub.web.i18n import LANG_COOKIE, LANGUAGES, N_, language_of
from hub.web.render import (
    LIST_REFUSALS,
    STATE_LABELS,
    PageError,
    fragment,
    members_see_names,
    render,
    signed_in,
)

router = APIRouter(include_in_schema=False)

# The live stream: how often it looks, how long one connection lives (the browser's
# EventSource reconnects by itself), and how many may be open at once.
STREAM_TICK_S = 1.0
STREAM_LIFETIME_S = 300.0
STREAM_MAX = 50
MAINTENANCE_EVERY_S = 30.0
HEARTBEAT_TICKS = 3
_streams = {"open": 0}
STATIC = Path(__file__).resolve().parent / "static"
NOT_FOUND = N_("There is no page at this address: the link may be old, or mistyped.")


def _safe_next(target: str) -> str:
    # Only a path on this hub: never an open redirect to another site.
    return target if target.startswith("/") and not target.startswith("//") else "/"


# --- sign in and out, language ------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return render(request, "login.html", {"error": None, "username": ""})


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
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
        return render(
            request, "login.html", {"error": str(exc), "username": username}, status_code=status
        )
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(request, response, result.token)
    return response


@router.post("/logout", dependencies=[Depends(require_csrf)])
def logout(request: Request, session: SessionDep) -> Response:
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        sign_out(session, raw=raw)
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.post("/web/lang", dependencies=[Depends(require_csrf)])
def switch_language(
    lang: Annotated[str, Form(max_length=5)], next: Annotated[str, Form(max_length=500)] = "/"
) -> Response:
    response = RedirectResponse(_safe_next(next), status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


# --- the dashboard ------------------------------------------------------------------------
def maintenance_due(session: Session) -> dict[str, list[str]]:
    """Per machine, the titles of tasks due or overdue now (the same rule as the board)."""
    out: dict[str, list[str]] = {}
    for due in task_states(session, now=datetime.now(UTC)):
        if due.state.status.value in ("due", "overdue"):
            out.setdefault(due.machine.code, []).append(due.task.title)
    return out


def today_usage(session: Session, tz: ZoneInfo) -> dict[str, Any]:
    """Sessions started since midnight (lab time), per machine, open ones counted to now.

    No API function gives today's figures (the statistics leave open sessions out), so the
    query lives here."""
    now = datetime.now(UTC)
    midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = session.exec(
        select(MachineSession).where(col(MachineSession.started_at) >= midnight.astimezone(UTC))
    ).all()
    per_machine: dict[str, dict[str, float]] = {}
    members: set[str] = set()
    for row in rows:
        seconds = row.duration_s
        if seconds is None and row.started_at is not None and row.ended_at is None:
            seconds = (now - row.started_at).total_seconds()
        figures = per_machine.setdefault(row.machine, {"sessions": 0, "hours": 0.0})
        figures["sessions"] += 1
        figures["hours"] += (seconds or 0.0) / 3600
        members.add(row.member_ref)
    return {
        "sessions": len(rows),
        "hours": sum(f["hours"] for f in per_machine.values()),
        "members": len(members),
        "per_machine": dict(sorted(per_machine.items())),
    }


def recent_events(session: Session, limit: int = 8) -> list[Any]:
    return list_events(session, limit=limit)


def card_context(machine: MachinePublic, due: list[str]) -> dict[str, Any]:
    telemetry = machine.telemetry or {}
    temperatures = []
    for key, label in (("tool0", "Nozzle"), ("bed", "Bed"), ("chamber", "Chamber")):
        actual = telemetry.get(f"{key}_actual")
        if isinstance(actual, int | float):
            target = telemetry.get(f"{key}_target")
            temperatures.append(
                (label, actual, target if isinstance(target, int | float) else None)
            )
    left = telemetry.get("print_time_left_s") if machine.state == "printing" else None
    return {
        "m": machine,
        "label": STATE_LABELS.get(machine.state, machine.state),
        "temperatures": temperatures,
        "minutes_left": int(left // 60) if isinstance(left, int | float) else None,
        "due": due,
        "acl_refused": LIST_REFUSALS.get(machine.acl_refused or "", machine.acl_refused),
    }


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep) -> Response:
    user = signed_in(request, session)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    tz = ZoneInfo(request.app.state.settings.timezone)
    due = maintenance_due(session)
    machines = machines_public(session, viewer=user, members_see_names=members_see_names(request))
    cards = [card_context(m, due.get(m.code, [])) for m in machines]
    return render(
        request,
        "index.html",
        {
            "cards": cards,
            "today": today_usage(session, tz),
            "events": recent_events(session) if user.role in STAFF else None,
        },
        user=user,
    )


@router.get("/web/stream")
async def stream(request: Request) -> Response:
    """Server-sent events: each machine card that changed, as HTML for htmx to swap in.

    One connection lives five minutes at most and ends when the browser goes away."""
    engine = request.app.state.engine

    def who() -> User | None:
        # A session of its own, closed at once: the stream must not hold one for minutes.
        with Session(engine) as session:
            return signed_in(request, session)

    user = await run_in_threadpool(who)
    if user is None:
        raise PageError(401, "sign in first")
    staff = user.role in STAFF
    see_names = members_see_names(request)
    if _streams["open"] >= STREAM_MAX:
        return Response("too many live dashboards open", status_code=503)
    lang = language_of(request)
    tz = ZoneInfo(request.app.state.settings.timezone)

    def snapshot(
        with_due: dict[str, list[str]] | None,
    ) -> tuple[dict[str, str], dict[str, list[str]]]:
        """Every piece of the dashboard as HTML, keyed by its SSE event name."""
        with Session(engine) as session:
            due = with_due if with_due is not None else maintenance_due(session)
            pieces = {
                f"card-{m.code}": fragment(
                    request, "_card.html", {"lang": lang, **card_context(m, due.get(m.code, []))}
                )
                for m in machines_public(session, viewer=user, members_see_names=see_names)
            }
            if staff:
                pieces["events"] = fragment(
                    request, "_events.html", {"lang": lang, "events": recent_events(session)}
                )
            pieces["today"] = fragment(
                request, "_today.html", {"lang": lang, "today": today_usage(session, tz)}
            )
            return pieces, due

    async def events() -> AsyncIterator[str]:
        _streams["open"] += 1
        try:
            sent: dict[str, str] = {}
            due: dict[str, list[str]] | None = None
            due_at = 0.0
            ends = time.monotonic() + STREAM_LIFETIME_S
            yield "retry: 2000\n\n"
            quiet = 0
            while time.monotonic() < ends:
                if time.monotonic() - due_at > MAINTENANCE_EVERY_S:
                    due, due_at = None, time.monotonic()
                pieces, due = await run_in_threadpool(snapshot, due)
                changed = False
                for name, piece in pieces.items():
                    if sent.get(name) != piece:
                        sent[name] = piece
                        changed = True
                        yield _sse(name, piece)
                quiet = 0 if changed else quiet + 1
                if quiet >= HEARTBEAT_TICKS:
                    # A comment the browser ignores: it keeps proxies from timing a quiet
                    # stream out, and a server that learns of a closed connection only when
                    # a write fails (ASGI 2.4) ends the stream on it.
                    quiet = 0
                    yield ": still here\n\n"
                await asyncio.sleep(STREAM_TICK_S)
        finally:
            _streams["open"] -= 1

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _sse(event: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


# --- wiring -------------------------------------------------------------------------------
def install(app: FastAPI) -> None:
    """Add the pages to the hub: routes, and refusals shown as pages."""
    from hub.web import (
        account_screens,
        admin_screens,
        billing_screens,
        booking_screens,
        enrol_screens,
        machine_admin_screens,
        machine_screens,
        machine_setup_screens,
        maintenance_task_screens,
        notification_screens,
        review_screens,
        screens,
        settings_screens,
        stats_screens,
        wall_screens,
    )

    app.include_router(router)
    app.include_router(enrol_screens.router)
    # First: its fixed paths (/web/members/new) must win over the screens' /web/members/{id}.
    app.include_router(admin_screens.router)
    app.include_router(machine_admin_screens.router)  # /web/machines/new, before {code}
    app.include_router(machine_setup_screens.router)  # /web/machines/add, before {code}
    app.include_router(maintenance_task_screens.router)  # /web/maintenance/tasks/new
    app.include_router(machine_screens.router)
    app.include_router(settings_screens.router)
    app.include_router(account_screens.router)
    app.include_router(billing_screens.router)
    app.include_router(screens.router)
    app.include_router(review_screens.router)  # /web/stats/review
    app.include_router(stats_screens.router)
    app.include_router(notification_screens.router)
    app.include_router(wall_screens.router)

    @app.exception_handler(StarletteHTTPException)
    async def not_found_page(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser that follows a stale link or mistypes an address gets a page in its
        # language, with its menu; the API and the static files keep their JSON/plain 404.
        path = request.url.path
        if exc.status_code != 404 or path.startswith(("/api/", "/static/")):
            return await http_exception_handler(request, exc)

        def who() -> User | None:
            with Session(request.app.state.engine) as session:
                user = signed_in(request, session)
                if user is not None:
                    session.expunge(user)
                return user

        return render(
            request,
            "error.html",
            {"message": NOT_FOUND, "status": 404},
            user=await run_in_threadpool(who),
            status_code=404,
        )

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        # Browsers ask for /favicon.ico whatever the pages say: the same drawing as theirs.
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.include_router(booking_screens.router)

    @app.exception_handler(PageError)
    async def page_refused(request: Request, exc: PageError) -> Response:
        if exc.status == 401:
            if request.headers.get("hx-request"):
                return Response(status_code=204, headers={"HX-Redirect": "/login"})
            return RedirectResponse("/login", status_code=303)
        return render(
            request,
            "error.html",
            {"message": exc.message, "status": exc.status},
            user=getattr(request.state, "user", None),
            status_code=exc.status,
        )
