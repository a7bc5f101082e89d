"""The screens that change the lab's records: members, machines and their types, retention
settings (billing's forms: hub/web/billing_screens.py; users and tokens:
hub/web/account_screens.py).

Each form calls the service the API calls (hub/services/members.py...), so the rules, the
audit rows and the allow-list re-publication stay in one place. Each route names the same role
sets as the API route it mirrors. A refusal is shown in the form, next to the field it is about.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from hub.core.deps import MANAGE, MAX_ID, SessionDep, actor, republish
from hub.core.errors import HubError, InvalidValue
from hub.models import (
    Member,
    MemberCategory,
    MemberCreate,
    MemberStatus,
    MemberUpdate,
    User,
)
from hub.services import members as members_service
from hub.web.csrf import Checked
from hub.web.errors import field_errors as hub_field_errors
from hub.web.render import PROBLEMS, Page, PageError, error_message, member_key, render

router = APIRouter(prefix="/web", include_in_schema=False)


def field_errors(exc: Exception, fields: list[str]) -> dict[str, str]:
    """What went wrong, keyed by the form field it is about ("" when it names none)."""
    if isinstance(exc, RequestValidationError | ValidationError):
        out: dict[str, str] = {}
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
            name = next((x for x in loc if x in fields), "")
            message = str(err.get("msg", "")).removeprefix("Value error, ")
            if not name and loc:
                message = " ".join(loc) + ": " + message
            out[name] = (out[name] + "; " if name in out else "") + message
        return out
    message = error_message(exc)
    lowered = message.lower()
    for name in sorted(fields, key=len, reverse=True):  # category_from before category
        if lowered.startswith(name) or f" {name} " in lowered or f"{name}:" in lowered:
            return {name: message}
    return {"": message}


def _text(value: str) -> str | None:
    return value.strip() or None


def _payer_id(session: Session, value: str) -> int | None:
    """The payer field: empty (they pay themselves), a member number, email or ref."""
    payer = members_service.member_by_text(session, value=value, field="payer_id")
    return payer.id if payer is not None else None


# --- members ------------------------------------------------------------------------------
MEMBER_FIELDS = ["name", "email", "category", "category_from", "status", "payer_id", "language"]
MEMBER_INPUTS = {name: name for name in MEMBER_FIELDS}


def _member_errors(request: Request, exc: Exception) -> dict[str, str]:
    """A refusal of the member form, under the field it is about ("" for the page)."""
    if isinstance(exc, HubError):
        errors, problem = hub_field_errors(request, exc, MEMBER_INPUTS)
        return errors if problem is None else {"": problem}
    return field_errors(exc, MEMBER_FIELDS)


def _member_form(
    request: Request,
    session: Session,
    user: User,
    values: dict[str, Any],
    *,
    member: Member | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    return render(
        request,
        "member_form.html",
        {
            "member": member,
            "v": values,
            "errors": errors,
            "problem": errors.get(""),
            "categories": list(MemberCategory),
            "statuses": list(MemberStatus),
            "payers": [
                (member_key(m), m.name)
                for m in members_service.payer_suggestions(session, but=member)
            ],
        },
        user=user,
        status_code=status_code,
    )


def _member_values(
    name: str,
    email: str,
    category: str,
    status: str,
    payer_id: str,
    category_from: str = "",
    language: str = "",
) -> dict[str, Any]:
    return {
        "language": language,
        "name": name,
        "email": email,
        "category": category,
        "category_from": category_from,
        "status": status,
        "payer_id": payer_id,
    }


@router.get("/members/new", response_class=HTMLResponse)
def new_member_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(MANAGE)]
) -> Response:
    return _member_form(request, session, user, _member_values("", "", "individual", "active", ""))


@router.post("/members/new", response_class=HTMLResponse, dependencies=[Checked])
def create_member(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    name: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    category: Annotated[str, Form(max_length=20)] = "individual",
    status: Annotated[str, Form(max_length=20)] = "active",
    payer_id: Annotated[str, Form(max_length=320)] = "",
    language: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    values = _member_values(name, email, category, status, payer_id, language=language)
    try:
        if not name.strip():
            raise InvalidValue("member.name_empty", field="name")
        data = MemberCreate.model_validate(
            {
                "name": name.strip(),
                "email": _text(email),
                "category": category,
                "status": status,
                "payer_id": _payer_id(session, payer_id),
                "language": language or None,  # empty: the lab's language
            }
        )
        member = members_service.create_member(session, data=data, actor=actor(user))
        session.commit()
    except (HubError, *PROBLEMS) as exc:
        session.rollback()
        errors = _member_errors(request, exc)
        return _member_form(request, session, user, values, errors=errors, status_code=422)
    return RedirectResponse(f"/web/members/{member.id}", status_code=303)


def _existing_member(session: Session, member_id: int) -> Member:
    if not 1 <= member_id <= MAX_ID:  # beyond a database's ids: unknown, not a driver error
        raise PageError(404, f"no member with id {member_id}")
    try:
        return members_service.member_by_id(session, member_id=member_id, field="member")
    except HubError as exc:
        raise PageError(exc.status, str(exc)) from None


@router.get("/members/{member_id}/edit", response_class=HTMLResponse)
def edit_member_page(
    request: Request, member_id: int, session: SessionDep, user: Annotated[User, Page(MANAGE)]
) -> Response:
    member = _existing_member(session, member_id)
    values = _member_values(
        member.name,
        member.email or "",
        member.category.value,
        member.status.value,
        member_key(payer) if (payer := members_service.payer_of(session, member)) else "",
        language=member.language or "",
    )
    return _member_form(request, session, user, values, member=member)


@router.post("/members/{member_id}/edit", response_class=HTMLResponse, dependencies=[Checked])
def update_member(
    request: Request,
    member_id: int,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    name: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    category: Annotated[str, Form(max_length=20)] = "individual",
    category_from: Annotated[str, Form(max_length=10)] = "",
    status: Annotated[str, Form(max_length=20)] = "active",
    payer_id: Annotated[str, Form(max_length=320)] = "",
    # None: a form without the box (an older page) leaves the language as it is.
    language: Annotated[str | None, Form(max_length=5)] = None,
) -> Response:
    member = _existing_member(session, member_id)
    values = _member_values(name, email, category, status, payer_id, category_from, language or "")
    try:
        if not name.strip():
            raise InvalidValue("member.name_empty", field="name")
        changes: dict[str, Any] = {
            "name": name.strip(),
            "email": _text(email),
            "category": category,
            "status": status,
            "payer_id": _payer_id(session, payer_id),
        }
        if category_from.strip():  # empty: a new category takes effect today
            changes["category_from"] = category_from.strip()
        if language is not None:
            changes["language"] = language or None  # empty: the lab's language
        _, status_changed = members_service.update_member(
            session,
            member_id=member_id,
            data=MemberUpdate.model_validate(changes),
            actor=actor(user),
            tz=ZoneInfo(request.app.state.settings.timezone),
        )
        session.commit()
        if status_changed:  # suspension or return reaches every machine
            republish(request, background)
    except (HubError, *PROBLEMS) as exc:
        session.rollback()
        errors = _member_errors(request, exc)
        return _member_form(
            request, session, user, values, member=member, errors=errors, status_code=422
        )
    return RedirectResponse(f"/web/members/{member_id}", status_code=303)
