"""What every page shares: the templates, the signed-in user, the role checks, the menu."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from pydantic import ValidationError
from sqlmodel import Session, select

from hub.core.deps import (
    ADMIN,
    EVERYONE,
    MAINTAINERS,
    MANAGE,
    STAFF,
    TRAINERS,
    SessionDep,
    request_token,
)
from hub.models import Role, User
from hub.services.accounts import user_for_token
from hub.web import flash
from hub.web.csrf import csrf_token, set_presession, start_presession
from hub.web.i18n import LANGUAGES, N_, language_of, translator
from hub.web.words import DENY_REASONS, END_REASONS, EVENT_TYPES, word_for

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


@pass_context
def _gettext(context: Any, message: str, **values: Any) -> str:
    text = translator(context.get("lang", "en")).gettext(message)
    return text % values if values else text


@pass_context
def _when(context: Any, value: datetime | None, style: str = "short") -> str:
    """A time in the lab's zone, written the reader's way."""
    if value is None:
        return "—"
    tz = context.get("tz")
    return format_datetime(value.astimezone(tz) if tz else value, style, locale=context["lang"])


@pass_context
def _number(context: Any, value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return format_decimal(round(value, digits), locale=context["lang"])


def _pairs(choices: Any) -> list[tuple[str, str]]:
    """An enum's members as (value, word) options for a select; the page translates the word."""
    return [(str(c.value), str(c.value)) for c in choices]


def _pairs_of(values: Any) -> list[tuple[str, str]]:
    """Plain strings as (value, shown) options for a select."""
    return [(str(v), str(v)) for v in values]


templates.env.globals.update(_=_gettext, pairs=_pairs, pairs_of=_pairs_of)


@pass_context
def _money(context: Any, cents: int | None) -> str:
    if cents is None:
        return "—"
    return format_currency(cents / 100, "EUR", locale=context["lang"])


@pass_context
def _day(context: Any, value: date | None) -> str:
    """A calendar day (the lab's own, e.g. when a category takes effect), the reader's way."""
    if value is None:
        return "—"
    return format_date(value, "medium", locale=context["lang"])


@pass_context
def _event_type(context: Any, code: object) -> str:
    return _gettext(context, word_for(code, EVENT_TYPES))


@pass_context
def _end_reason(context: Any, code: object) -> str:
    return _gettext(context, word_for(code, END_REASONS)) if code else ""


@pass_context
def _deny_reason(context: Any, code: object) -> str:
    return _gettext(context, word_for(code, DENY_REASONS)) if code else ""


templates.env.filters.update(
    when=_when,
    day=_day,
    number=_number,
    money=_money,
    event_type=_event_type,
    end_reason=_end_reason,
    deny_reason=_deny_reason,
)


def member_key(member: Any) -> str:
    """How a form shows a member it names, and what it takes back: their email, or their
    number when they have none (hub/web/admin_screens.py resolves either)."""
    return member.email or str(member.id)


class PageError(Exception):
    """A page refused: shown as a page (or a redirect to the login), not as JSON."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


STATE_LABELS = {
    "offline": "Offline",
    "idle": "Free",
    "in_use": "In use",
    "busy": "Working",
    "printing": "Printing",
    "locked": "Locked out",
}

# Why an agent refused the hub's allow-list (its `acl_refused` code), for the machine card.
LIST_REFUSALS = {
    "stale": N_("It refused a list older than its own: was the hub restored from a backup?"),
    "bad_signature": N_("It refused a list signed with another key than the one in its config."),
    "expired": N_("It refused a list that had already expired: check the hub's clock."),
    "wrong_machine": N_("It refused a list made for another machine."),
}

# The menu: each entry is shown only to the roles whose API it uses (same sets as the API).
MENU: list[tuple[str, str, frozenset[Role]]] = [
    ("/", "Dashboard", EVERYONE),
    ("/web/machines", "Machines", EVERYONE),
    ("/web/bookings", "Bookings", EVERYONE),
    ("/web/members", "Members", STAFF),
    ("/web/trainings", "Trainings", STAFF),
    ("/web/maintenance", "Maintenance", STAFF),
    ("/web/stats", "Statistics", MANAGE),
    ("/web/billing", "Billing", MANAGE),
    ("/web/users", "Users", ADMIN),
    ("/web/displays", "Wall displays", ADMIN),
    ("/web/settings", "Settings", MANAGE),
    ("/web/notifications", "Notifications", EVERYONE),
]


def members_see_names(request: Request) -> bool:
    """The lab's choice (`members_see_who_uses_machines`): members see who uses a machine."""
    return bool(request.app.state.settings.members_see_who_uses_machines)


def menu_for(user: User | None) -> list[tuple[str, str]]:
    if user is None:
        return []
    items = [(href, label) for href, label, roles in MENU if user.role in roles]
    if user.member_id is not None:
        items.append(("/web/me", "My page"))
    return items


def signed_in(request: Request, session: Session) -> User | None:
    raw = request_token(request)
    return user_for_token(session, raw) if raw else None


def Page(*role_sets: frozenset[Role]) -> Any:  # noqa: N802  (reads as a declaration, like Allow)
    """The signed-in user if their role is in one of these sets; otherwise the login page
    (not signed in) or a 403 page."""
    allowed = frozenset().union(*role_sets)

    def check(request: Request, session: SessionDep) -> User:
        user = signed_in(request, session)
        if user is None:
            raise PageError(401, "sign in first")
        request.state.user = user
        if user.role not in allowed:
            raise PageError(403, "This page is not open to your role.")
        return user

    return Depends(check)


def may(user: User | None, *role_sets: frozenset[Role]) -> bool:
    return user is not None and any(user.role in roles for roles in role_sets)


def _type_names(request: Request) -> Callable[[object], str]:
    """A machine type's name from its code, read once per page when a page asks (the table
    is a few rows): pages show names, not codes."""
    names: dict[str, str] = {}

    def name(code: object) -> str:
        if not names:
            from hub.models import MachineType

            with Session(request.app.state.engine) as session:
                names.update({t.code: t.name for t in session.exec(select(MachineType))})
            names.setdefault("", "")
        return names.get(str(code), str(code))

    return name


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    user: User | None = None,
    status_code: int = 200,
) -> Response:
    presession = start_presession(request)
    lang = language_of(request)
    settings = request.app.state.settings
    full = {
        "user": user,
        "menu": menu_for(user),
        "lang": lang,
        "languages": LANGUAGES,
        "csrf": csrf_token(request),
        "tz": ZoneInfo(settings.timezone),
        "path": request.url.path,
        "may": lambda *sets: may(user, *sets),
        "staff": STAFF,
        "trainers": TRAINERS,
        "maintainers": MAINTAINERS,
        "manage": MANAGE,
        "admin_roles": ADMIN,
        "labels": STATE_LABELS,
        **context,
    }
    full["type_name"] = _type_names(request)
    if not full.get("notice"):
        full["notice"] = flash.taken(request, translator(lang).gettext)
    response = templates.TemplateResponse(request, name, full, status_code=status_code)
    flash.clear(request, response)
    if presession:
        set_presession(request, response, presession)
    return response


def fragment(request: Request, name: str, context: dict[str, Any]) -> str:
    """A piece of a page (a machine card, a table row) as HTML, for htmx and the stream."""
    lang = context.get("lang") or language_of(request)
    settings = request.app.state.settings
    full = {"lang": lang, "tz": ZoneInfo(settings.timezone), **context}
    return templates.get_template(name).render(full)


def html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code)


# The refusals a form turns into a message on the page rather than an error page.
PROBLEMS = (HTTPException, RequestValidationError, ValidationError, ValueError)


def error_message(exc: Exception) -> str:
    """What an API rule said, for a person: HTTPException detail or validation messages."""
    from fastapi import HTTPException
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, RequestValidationError | ValidationError):
        parts = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
            parts.append((" ".join(loc) + ": " if loc else "") + str(err.get("msg", "")))
        return "; ".join(parts)
    return str(exc)


Translate = Callable[..., str]
