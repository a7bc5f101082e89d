"""The settings page: how long telemetry, events and dead letters are kept (managers read,
admins change), and a purge now; both call hub/services/retention.py as the API does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.core.deps import ADMIN, MANAGE, SessionDep
from hub.core.errors import HubError, describe
from hub.models import (
    MemberCategory,
    User,
)
from hub.services import accounting, helloasso, lab, lab_settings, retention
from hub.web.csrf import Checked
from hub.web.errors import field_errors as hub_field_errors
from hub.web.flash import done
from hub.web.i18n import N_, language_of, translator
from hub.web.render import Page, may, render

router = APIRouter(prefix="/web", include_in_schema=False)
# Shown from code, listed for the catalogue.
WORDS = [
    N_("tier saved"),
    N_("choose the CSV file to import"),
    N_("retention rules saved"),
    N_("the lab's identity is saved"),
    N_("the accounts of the books are saved"),
]
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
    lab_values: dict[str, str] | None = None,
    lab_errors: dict[str, str] | None = None,
    books_values: dict[str, str] | None = None,
    books_errors: dict[str, str] | None = None,
    helloasso_errors: dict[str, str] | None = None,
    helloasso_report: Any = None,
) -> Response:
    errors = errors or {}
    lab_errors = lab_errors or {}
    rules = retention.policy(session, request.app.state.settings)
    shown = {k: ("" if v is None else f"{v:g}") for k, v in rules.items()}
    settings = request.app.state.settings
    lab_now = lab_settings.current(session, site=settings.site)
    shown |= {f"lab_{f}": getattr(lab_now, f) for f in LAB_FIELDS}
    shown |= values or {}
    kept = lab.identity(
        session, default_name=settings.site, default_locale=settings.notify_language
    )
    return render(
        request,
        "settings.html",
        {
            "v": shown,
            "errors": errors,
            "problem": errors.get("") or lab_errors.get("") or (books_errors or {}).get(""),
            "notice": notice,
            "admin": may(user, ADMIN),
            "lab": lab_now,
            "lv": lab_values or kept.model_dump(),
            "lab_errors": lab_errors,
            "locales": [("en", "English"), ("fr", "Français")],
            "bv": books_values or accounting.accounts_as_dict(session),
            "books_errors": books_errors or {},
            "manager": may(user, MANAGE),
            "tiers": sorted(helloasso.tier_mapping(session).items()),
            "categories": [(c.value, c.value) for c in MemberCategory],
            "ha_errors": helloasso_errors or {},
            "ha_report": helloasso_report,
            "ha_rejected": [
                (
                    p.params.get("line"),
                    p.field,
                    describe(p, translator(language_of(request)).gettext),
                )
                for p in (helloasso_report.rejected if helloasso_report else [])
            ],
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
    # The CNIL rules: a form without them (an older page) leaves them as they are.
    badge_events: Annotated[str | None, Form(max_length=12)] = None,
    sessions: Annotated[str | None, Form(max_length=12)] = None,
) -> Response:
    given = {"telemetry": telemetry, "events": events, "dead_letters": dead_letters}
    if badge_events is not None:
        given["badge_events"] = badge_events
    if sessions is not None:
        given["sessions"] = sessions
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
    """The lab's name, address and opening hours (the review, utilisation, statements)."""
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


# --- settings: the lab's legal identity ---------------------------------------------------
@router.post("/settings/identity", response_class=HTMLResponse, dependencies=[Checked])
def change_identity(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    siret: Annotated[str, Form(max_length=40)] = "",
    rna: Annotated[str, Form(max_length=40)] = "",
    vat_mention: Annotated[str, Form(max_length=400)] = "",
    locale: Annotated[str, Form(max_length=5)] = "en",
    privacy_contact: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """What every statement prints about the lab, all fields checked before any is kept."""
    # The name and address are the lab form's (change_lab): one place for each value.
    given = {
        "siret": siret,
        "rna": rna,
        "vat_mention": vat_mention,
        "locale": locale,
        "privacy_contact": privacy_contact,
    }
    settings = request.app.state.settings
    try:
        lab.set_identity(
            session,
            given,
            actor=f"user:{user.username}",
            default_name=settings.site,
            default_locale=settings.notify_language,
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        errors, problem = hub_field_errors(request, exc, {k: k for k in given})
        if problem:
            errors[""] = problem
        return _settings_page(
            request, session, user, lab_values=given, lab_errors=errors, status_code=422
        )
    return _settings_page(request, session, user, notice="the lab's identity is saved")


# --- settings: the accounts the books are written on -----------------------------------------
@router.post("/settings/books", response_class=HTMLResponse, dependencies=[Checked])
def change_books(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    sales: Annotated[str, Form(max_length=40)] = "",
    members: Annotated[str, Form(max_length=40)] = "",
    prepaid: Annotated[str, Form(max_length=40)] = "",
    bank: Annotated[str, Form(max_length=40)] = "",
    sales_journal: Annotated[str, Form(max_length=40)] = "",
    bank_journal: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    given = {
        "sales": sales,
        "members": members,
        "prepaid": prepaid,
        "bank": bank,
        "sales_journal": sales_journal,
        "bank_journal": bank_journal,
    }
    try:
        # A box left empty keeps the account as it is.
        changes = {k: (v if v.strip() else None) for k, v in given.items()}
        accounting.set_accounts(session, changes, actor=f"user:{user.username}")
        session.commit()
    except HubError as exc:
        session.rollback()
        errors, problem = hub_field_errors(request, exc, {k: k for k in given})
        if problem:
            errors[""] = problem
        return _settings_page(
            request, session, user, books_values=given, books_errors=errors, status_code=422
        )
    return _settings_page(request, session, user, notice="the accounts of the books are saved")


# --- the RGPD kit -----------------------------------------------------------------------------
@router.get("/settings/rgpd/{name}.{fmt}")
def rgpd_document(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    name: str,
    fmt: str,
) -> Response:
    """One document of the RGPD kit, in French, from the lab's settings as they are now."""
    from hub.reports.rgpd import GENERATORS, markdown_pdf

    make = GENERATORS.get(name)
    if make is None or fmt not in ("md", "pdf"):
        return Response(status_code=404)
    text = make(lab.rgpd_kit_inputs(session, request.app.state.settings))
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    if fmt == "md":
        return Response(text, media_type="text/markdown; charset=utf-8", headers=disposition)
    return Response(markdown_pdf(text), media_type="application/pdf", headers=disposition)


# --- HelloAsso: tiers and imports -------------------------------------------------------------
@router.post("/settings/helloasso/tier", response_class=HTMLResponse, dependencies=[Checked])
def map_tier(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    tier: Annotated[str, Form(max_length=400)] = "",
    category: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Map a membership tier to a category; an empty category forgets the tier."""
    try:
        helloasso.set_tier(session, tier, category or None, actor=f"user:{user.username}")
        session.commit()
    except HubError as exc:
        session.rollback()
        errors, problem = hub_field_errors(request, exc, {"tier": "tier", "category": "category"})
        if problem:
            errors[""] = problem
        return _settings_page(request, session, user, helloasso_errors=errors, status_code=422)
    return _settings_page(request, session, user, notice="tier saved")


@router.post("/settings/helloasso/import", response_class=HTMLResponse, dependencies=[Checked])
def import_helloasso(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    file: UploadFile | None = None,
    kind: Annotated[str, Form(max_length=20)] = "memberships",
    dry_run: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """The export's lines applied (or, with the dry run, only worked out), then the report:
    what changed and every refused line with its reason."""
    from zoneinfo import ZoneInfo

    gettext = translator(language_of(request)).gettext
    if file is None or not file.filename:
        errors = {"ha_file": gettext("choose the CSV file to import")}
        return _settings_page(request, session, user, helloasso_errors=errors, status_code=422)
    data = file.file.read(helloasso.MAX_BYTES + 1)
    try:
        report = helloasso.import_export(
            session,
            data,
            kind=kind,
            actor=f"user:{user.username}",
            tz=ZoneInfo(request.app.state.settings.timezone),
            dry_run=bool(dry_run),
        )
        if not report.dry_run:
            session.commit()
    except HubError as exc:
        session.rollback()
        message = describe(exc, gettext)
        field = "ha_kind" if exc.field == "kind" else "ha_file"
        return _settings_page(
            request, session, user, helloasso_errors={field: message}, status_code=422
        )
    if report.balances_changed:
        from fastapi import BackgroundTasks

        from hub.core.deps import republish

        background = BackgroundTasks()
        republish(request, background)
        response = _settings_page(request, session, user, helloasso_report=report)
        response.background = background
        return response
    return _settings_page(request, session, user, helloasso_report=report)
