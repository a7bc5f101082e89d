"""The wall display: a kiosk's live board opened with a display token, and the admins' page
that makes and revokes those tokens.

`/wall/<secret>` needs no login, has no menu and never expires: the secret is a display token
(hub/services/displays.py), which opens this board and nothing else; revoking it refuses the
screen within a second. The board is kept current over server-sent events
(`/wall/<secret>/stream`), as the dashboard is; static/wall.js shows "connection lost, last
update hh:mm" when the stream drops, then reloads the page once the hub answers again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_time
from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlmodel import Session, select

from hub.core.deps import ADMIN, SessionDep, actor
from hub.core.errors import HubError, describe
from hub.models import MachineType, User
from hub.services import displays
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.i18n import LANGUAGES, N_, language_of, translator
from hub.web.render import STATE_LABELS, Page, fragment, members_see_names, render

router = APIRouter(include_in_schema=False)

# The stream: how often it looks, how long one connection lives (the page opens the next one
# when told "bye"), how often a quiet board says it is still there, how many may be open.
TICK_S = 1.0
LIFETIME_S = 300.0
ALIVE_TICKS = 3
WALLS_MAX = 20
_walls = {"open": 0}

SUMMARY_LABELS = {
    "free": N_("free"),
    "in_use": N_("in use"),
    "printing": N_("printing"),
    "locked": N_("locked"),
    "offline": N_("offline"),
}
GROUPING_LABELS = {
    "location": N_("By room or area"),
    "type": N_("By machine type"),
    "none": N_("No grouping"),
}
DISPLAY_INPUTS = {"name": "name", "group": "group", "type": "type", "display": "name"}


def _hhmm(value: datetime, tz: ZoneInfo, lang: str) -> str:
    """A time of day as a wall shows it, 24-hour in both languages: 14:05."""
    try:
        return format_time(value.astimezone(tz), "HH:mm", locale=lang)
    except (OverflowError, ValueError):
        # A session start stored by hand or by an older hub may sit at the calendar's ends.
        return "—"


def _lang(request: Request, chosen: str) -> str:
    # A kiosk has no language switch: its URL may say (?lang=fr), else its browser does.
    return chosen if chosen in LANGUAGES else language_of(request)


def _density(count: int) -> int:
    """How tightly the board sets its cards (wall.css): fewer machines, larger type."""
    for level, most in enumerate((6, 12, 20, 35, 60), start=1):
        if count <= most:
            return level
    return 6


# The root type size of each density, as a share of the screen's height (wall.css), and the
# heights in em the board's parts take (wall.css): the summary, a group's heading, a row.
DENSITY_TYPE = {1: 0.036, 2: 0.028, 3: 0.022, 4: 0.018, 5: 0.014, 6: 0.011}
TOP_EM, HEADING_EM, ROW_EM = 5.0, 2.6, 6.1
CARD_ASPECT = 2.0  # width over height a card reads best at
COLUMNS_MAX = 16
SCREEN_ASPECT = 16 / 9


def _layout(sizes: list[int], headed: bool) -> tuple[int, int]:
    """(density, columns) of a board with groups of these sizes on a 16:9 screen: the
    largest type at which every row fits the height, and the same number of columns in every
    group (so cards line up) whose cards come closest to CARD_ASPECT. When nothing fits, the
    smallest type and the most columns: the page then scrolls. A phone overrides the columns
    (one)."""
    if not sizes:
        return 1, 1
    widest = min(COLUMNS_MAX, max(sizes))
    for density in range(_density(sum(sizes)), 7):
        em = DENSITY_TYPE[density]
        fixed = em * (TOP_EM + (HEADING_EM * len(sizes) if headed else 0.0))
        best, best_score = 0, float("inf")
        for columns in range(1, widest + 1):
            rows = sum(-(-size // columns) for size in sizes)
            if fixed + em * ROW_EM * rows > 1.0:
                continue
            card_height = (1.0 - fixed) / rows
            score = abs(math.log((SCREEN_ASPECT / columns) / card_height / CARD_ASPECT))
            if score < best_score - 1e-9:
                best, best_score = columns, score
        if best:
            return density, best
    return 6, widest


def _board_context(board: displays.WallBoard, tz: ZoneInfo, lang: str) -> dict[str, Any]:
    groups: list[dict[str, Any]] = []
    for group in board.groups:
        cards: list[dict[str, Any]] = []
        for card in group.cards:
            m = card.machine
            cards.append(
                {
                    "m": m,
                    "summary": card.summary,
                    "label": STATE_LABELS.get(m.state, m.state),
                    "since": _hhmm(card.since, tz, lang) if card.since else None,
                    "file": card.file,
                    "minutes_left": card.minutes_left,
                }
            )
        groups.append({"title": group.title, "cards": cards})
    sizes = [len(g["cards"]) for g in groups]
    density, columns = _layout(sizes, board.grouping != "none")
    for group_ in groups:
        # Each group's share of the height: its rows of cards (wall.css rows-N).
        group_["rows"] = min(-(-len(group_["cards"]) // columns), 20)
    return {
        "board": board,
        "groups": groups,
        "summary": [(key, SUMMARY_LABELS[key], board.summary[key]) for key in SUMMARY_LABELS],
        "density": density,
        "columns": columns,
    }


def _refused(request: Request, lang: str, status: int, message: str) -> Response:
    return render(
        request,
        "wall_refused.html",
        {"lang": lang, "message": message, "status": status},
        status_code=status,
    )


def _check(session: Session, secret: str) -> bool:
    return displays.display_for(session, secret) is not None


@router.get("/wall/{secret}", response_class=HTMLResponse)
def wall(
    request: Request,
    session: SessionDep,
    secret: str,
    group: Annotated[str, Query(max_length=100)] = "location",
    type: Annotated[str, Query(max_length=100)] = "",  # noqa: A002  (the URL's word)
    lang: Annotated[str, Query(max_length=5)] = "",
) -> Response:
    language = _lang(request, lang)
    if not _check(session, secret):
        return _refused(
            request,
            language,
            403,
            N_("This display link was revoked or is not valid: ask an admin for a new one."),
        )
    try:
        grouping, machine_type = displays.wall_options(session, grouping=group, machine_type=type)
    except HubError as exc:
        message = describe(exc, translator(language).gettext)
        return _refused(request, language, exc.status, message)
    tz = ZoneInfo(request.app.state.settings.timezone)
    board = displays.wall_board(
        session,
        show_names=members_see_names(request),
        grouping=grouping,
        machine_type=machine_type,
    )
    query = urlencode(
        {"group": grouping, "type": machine_type or "", "lang": lang if lang in LANGUAGES else ""}
    )
    return render(
        request,
        "wall.html",
        {
            "lang": language,
            "stream": f"/wall/{secret}/stream?{query}",
            "at": _hhmm(datetime.now(UTC), tz, language),
            **_board_context(board, tz, language),
        },
    )


@router.get("/wall/{secret}/stream")
async def wall_stream(
    request: Request,
    secret: str,
    group: Annotated[str, Query(max_length=100)] = "location",
    type: Annotated[str, Query(max_length=100)] = "",  # noqa: A002
    lang: Annotated[str, Query(max_length=5)] = "",
) -> Response:
    """Server-sent events: `board` (the whole board as HTML) when it changed, `alive` when it
    did not for a few seconds, `bye` before the connection's five minutes are up, `revoked`
    when the token was. Each event's id is the hub's time, hh:mm, for the banner."""
    engine = request.app.state.engine
    language = _lang(request, lang)
    tz = ZoneInfo(request.app.state.settings.timezone)
    show_names = members_see_names(request)

    def opened() -> tuple[str, str | None] | None:
        with Session(engine) as session:
            if not _check(session, secret):
                return None
            return displays.wall_options(session, grouping=group, machine_type=type)

    try:
        options = await run_in_threadpool(opened)
    except HubError as exc:
        return Response(describe(exc), status_code=exc.status)
    if options is None:
        return Response("this display link was revoked or is not valid", status_code=403)
    if _walls["open"] >= WALLS_MAX:
        return Response("too many wall displays open", status_code=503)
    grouping, machine_type = options

    def snapshot() -> str | None:
        """The board as HTML, or None once the token is revoked."""
        with Session(engine) as session:
            if not _check(session, secret):
                return None
            board = displays.wall_board(
                session, show_names=show_names, grouping=grouping, machine_type=machine_type
            )
            return fragment(
                request,
                "_wall_board.html",
                {"lang": language, **_board_context(board, tz, language)},
            )

    async def events() -> AsyncIterator[str]:
        _walls["open"] += 1
        try:
            sent: str | None = None
            quiet = 0
            ends = time.monotonic() + LIFETIME_S
            yield "retry: 2000\n\n"
            while time.monotonic() < ends:
                board = await run_in_threadpool(snapshot)
                now = _hhmm(datetime.now(UTC), tz, language)
                if board is None:
                    yield _sse("revoked", "", now)
                    return
                if board != sent:
                    sent, quiet = board, 0
                    yield _sse("board", board, now)
                else:
                    quiet += 1
                    if quiet >= ALIVE_TICKS:
                        quiet = 0
                        yield _sse("alive", "", now)
                await asyncio.sleep(TICK_S)
            yield _sse("bye", "", _hhmm(datetime.now(UTC), tz, language))
        finally:
            _walls["open"] -= 1

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _sse(event: str, data: str, at: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\nid: {at}\n{lines}\n"


# --- the admins' page ---------------------------------------------------------------------
def _kiosk_url(request: Request, secret: str, grouping: str, machine_type: str) -> str:
    base = str(request.base_url).rstrip("/")
    query = {"group": grouping} if grouping != "location" else {}
    if machine_type:
        query["type"] = machine_type
    return f"{base}/wall/{secret}" + (f"?{urlencode(query)}" if query else "")


def _displays_page(
    request: Request,
    session: Session,
    user: User,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    kiosk: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    types = session.exec(select(MachineType).order_by(MachineType.name)).all()
    return render(
        request,
        "displays.html",
        {
            "displays": displays.list_displays(session),
            "types": [(t.code, t.name) for t in types],
            "groupings": list(GROUPING_LABELS.items()),
            "v": values or {"name": "", "group": "location", "type": ""},
            "errors": errors,
            "problem": errors.get(""),
            "kiosk": kiosk,
            "notice": notice,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/web/displays", response_class=HTMLResponse)
def displays_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    revoked: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    notice = N_("Display revoked: its screen is refused within seconds.") if revoked else None
    return _displays_page(request, session, user, notice=notice)


@router.post("/web/displays", response_class=HTMLResponse, dependencies=[Checked])
def create_display(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    name: Annotated[str, Form(max_length=500)] = "",
    group: Annotated[str, Form(max_length=100)] = "location",
    type: Annotated[str, Form(max_length=100)] = "",  # noqa: A002
) -> Response:
    values = {"name": name, "group": group, "type": type}
    try:
        grouping, machine_type = displays.wall_options(session, grouping=group, machine_type=type)
        secret, _ = displays.create_display(session, name=name, actor=actor(user))
        session.commit()
    except HubError as exc:
        session.rollback()
        errors, problem = field_errors(request, exc, DISPLAY_INPUTS)
        if problem:
            errors[""] = problem
        return _displays_page(request, session, user, values=values, errors=errors, status_code=422)
    kiosk = _kiosk_url(request, secret, grouping, machine_type or "")
    return _displays_page(request, session, user, kiosk=kiosk)


@router.post("/web/displays/{display_id}/revoke", dependencies=[Checked])
def revoke_display(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    display_id: int,
) -> Response:
    try:
        row = displays.revoke_display(session, display=str(display_id), actor=actor(user))
        session.commit()
    except HubError as exc:
        session.rollback()
        errors, problem = field_errors(request, exc, {})
        return _displays_page(
            request, session, user, errors={"": problem or ""}, status_code=exc.status
        )
    return RedirectResponse(f"/web/displays?revoked={row.id}", status_code=303)
