"""The settings page: the lab's name, address and opening hours (managers and admins set
them, through hub/services/lab_settings.py); how long telemetry, events and dead letters are
kept (managers read, admins change), and a purge now; both call hub/services/retention.py
as the API does. Every form redirects to the page with its message (hub/web/flash.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.core.deps import ADMIN, MANAGE, SessionDep
from hub.core.errors import HubError
from hub.models import (
    User,
)
from hub.services import lab_settings, retention
from hub.web.csrf import Checked
from hub.web.errors import field_errors as hub_field_errors
from hub.web.flash import done
from hub.web.i18n import N_, language_of, translator
from hub.web.render import Page, may, render

router = APIRouter(prefix="/web", include_in_schema=False)
WORDS = [N_("retention rules saved")]  # shown from code, for the catalogue
LAB_SAVED = N_("The lab's name, address and opening hours are saved.")
PURGED = N_("Purged now: {summary}")
LAB_FIELDS = ("name", "address", "opening_hours")


# --- settings: retention ------------------------------------------------------------------
def _settings_page(
    request: Request,
    session: Session,
    user: User,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    rules = retention.policy(session, request.app.state.settings)
    shown = {k: ("" if v is None else f"{v:g}") for k, v in rules.items()}
    lab = lab_settings.current(session, site=request.app.state.settings.site)
    shown |= {f"lab_{f}": getattr(lab, f) for f in LAB_FIELDS}
    shown |= values or {}
    return render(
        request,
        "settings.html",
        {
            "v": shown,
            "errors": errors,
            "problem": errors.get(""),
            "notice": notice,
            "admin": may(user, ADMIN),
            "lab": lab,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/settings", response_class=HTMLResponse)
def settings_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(MANAGE)]
) -> Response:
    return _settings_page(request, session, user)


NOT_DAYS = N_("give a number of days, or leave it empty to keep them for good")


@router.post("/settings/retention", response_class=HTMLResponse, dependencies=[Checked])
def change_retention(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    telemetry: Annotated[str, Form(max_length=12)] = "",
    events: Annotated[str, Form(max_length=12)] = "",
    dead_letters: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    given = {"telemetry": telemetry, "events": events, "dead_letters": dead_letters}
    changes: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for kind, text in given.items():
        text = text.strip().replace(",", ".")
        try:
            changes[kind] = float(text) if text else None
        except ValueError:
            errors[kind] = translator(language_of(request)).gettext(NOT_DAYS)
    if not errors:
        try:
            retention.change_policy(
                session,
                settings=request.app.state.settings,
                changes=changes,
                actor=f"user:{user.username}",
            )
        except HubError as exc:
            session.rollback()
            errors, problem = hub_field_errors(request, exc, {k: k for k in given})
            if problem:
                errors[""] = problem
    if errors:
        return _settings_page(request, session, user, values=given, errors=errors, status_code=422)
    return done(request, "/web/settings", "retention rules saved")


@router.post("/settings/retention/apply", response_class=HTMLResponse, dependencies=[Checked])
def purge_now(
    request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    counts = retention.apply_now(
        session,
        request.app.state.engine,
        request.app.state.settings,
        now=datetime.now(UTC),
        actor=f"user:{user.username}",
    )
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    return done(request, "/web/settings", PURGED, summary=summary)


@router.post("/settings/lab", response_class=HTMLResponse, dependencies=[Checked])
def change_lab(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    name: Annotated[str, Form(max_length=1000)] = "",
    address: Annotated[str, Form(max_length=5000)] = "",
    opening_hours: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    given = {"lab_name": name, "lab_address": address, "lab_opening_hours": opening_hours}
    try:
        lab_settings.change(
            session,
            name=name,
            address=address,
            opening_hours=opening_hours,
            actor=f"user:{user.username}",
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        errors, problem = hub_field_errors(request, exc, {f: f"lab_{f}" for f in LAB_FIELDS})
        if problem:
            errors[""] = problem
        return _settings_page(request, session, user, values=given, errors=errors, status_code=422)
    return done(request, "/web/settings", LAB_SAVED)
