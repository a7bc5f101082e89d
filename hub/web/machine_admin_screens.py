"""The admin's machine pages: adding and editing a machine (the guided setup is
hub/web/machine_setup_screens.py) and the machine types."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from hub.core.deps import ADMIN, SessionDep, actor, republish
from hub.core.errors import HubError, NotFound
from hub.models import (
    Machine,
    MachineKind,
    MachineType,
    User,
)
from hub.services import machine_records as records
from hub.services.broker_accounts import PLUG_TOPIC_MAX
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.render import Page, PageError, render

router = APIRouter(prefix="/web", include_in_schema=False)


# --- machines and machine types -----------------------------------------------------------
MACHINE_FIELDS = [
    "code",
    "name",
    "site",
    "location",
    "kind",
    "machine_type",
    "agent_id",
    "plug_topic",
]
MACHINE_INPUTS = {field: field for field in MACHINE_FIELDS}
TYPE_INPUTS = {"code": "code", "name": "name", "kind": "kind"}


def _text(value: str) -> str | None:
    return value.strip() or None


def _refused(request: Request, error: HubError, inputs: dict[str, str]) -> dict[str, str]:
    """The page's `errors`: the message under its field, or at the top ("")."""
    errors, problem = field_errors(request, error, inputs)
    return errors if problem is None else {"": problem}


def _machine_form(
    request: Request,
    session: Session,
    user: User,
    values: dict[str, Any],
    *,
    machine: Machine | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    return render(
        request,
        "machine_form.html",
        {
            "machine": machine,
            "v": values,
            "errors": errors,
            "problem": errors.get(""),
            "kinds": list(MachineKind),
            "type_options": [
                (t.code, f"{t.name} ({t.code})")
                for t in session.exec(select(MachineType).order_by(col(MachineType.code)))
            ],
        },
        user=user,
        status_code=status_code,
    )


@router.get("/machines/new", response_class=HTMLResponse)
def new_machine_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    site = request.app.state.settings.site
    values = {"code": "", "name": "", "site": site, "location": "", "kind": ""}
    blank = {"machine_type": "", "agent_id": "", "plug_topic": ""}
    return _machine_form(request, session, user, values | blank)


@router.post("/machines/new", response_class=HTMLResponse, dependencies=[Checked])
def create_machine(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(ADMIN)],
    code: Annotated[str, Form(max_length=63)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    site: Annotated[str, Form(max_length=63)] = "",
    location: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=20)] = "",
    machine_type: Annotated[str, Form(max_length=63)] = "",
    agent_id: Annotated[str, Form(max_length=63)] = "",
    plug_topic: Annotated[str, Form(max_length=PLUG_TOPIC_MAX)] = "",
) -> Response:
    values = {
        "code": code,
        "name": name,
        "site": site,
        "location": location,
        "kind": kind,
        "machine_type": machine_type,
        "agent_id": agent_id,
        "plug_topic": plug_topic,
    }
    try:
        machine = records.create_machine(
            session,
            code=code.strip(),
            name=name,
            site=site.strip(),
            location=location.strip(),
            kind=kind or None,  # empty: its type's
            machine_type=machine_type,
            agent_id=_text(agent_id),
            plug_topic=_text(plug_topic),
            actor=actor(user),
        )
    except HubError as exc:
        session.rollback()
        errors = _refused(request, exc, MACHINE_INPUTS)
        return _machine_form(request, session, user, values, errors=errors, status_code=422)
    republish(request, background, [machine.code])
    return RedirectResponse(f"/web/machines/{machine.code}", status_code=303)


def _existing_machine(request: Request, session: Session, code: str) -> Machine:
    try:
        return records.known_machine(session, code)
    except NotFound as exc:
        raise PageError(exc.status, field_errors(request, exc, {})[1] or exc.code) from None


def _type_code(session: Session, machine: Machine) -> str:
    mtype = session.get(MachineType, machine.machine_type_id)
    return mtype.code if mtype else ""


@router.get("/machines/{code}/edit", response_class=HTMLResponse)
def edit_machine_page(
    request: Request, code: str, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    machine = _existing_machine(request, session, code)
    values = {
        "code": machine.code,
        "name": machine.name,
        "site": machine.site,
        "location": machine.location,
        "kind": machine.kind.value if hasattr(machine.kind, "value") else machine.kind,
        "machine_type": _type_code(session, machine),
        "agent_id": machine.agent_id or "",
        "plug_topic": machine.plug_topic or "",
    }
    return _machine_form(request, session, user, values, machine=machine)


@router.post("/machines/{code}/edit", response_class=HTMLResponse, dependencies=[Checked])
def update_machine(
    request: Request,
    code: str,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(ADMIN)],
    name: Annotated[str, Form(max_length=200)] = "",
    location: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=20)] = "other",
    machine_type: Annotated[str, Form(max_length=63)] = "",
    agent_id: Annotated[str, Form(max_length=63)] = "",
    plug_topic: Annotated[str, Form(max_length=PLUG_TOPIC_MAX)] = "",
) -> Response:
    machine = _existing_machine(request, session, code)
    values = {
        "code": machine.code,
        "name": name,
        "site": machine.site,
        "location": location,
        "kind": kind,
        "machine_type": machine_type,
        "agent_id": agent_id,
        "plug_topic": plug_topic,
    }
    changes = {
        "name": name,
        "location": location.strip(),
        "kind": kind,
        "machine_type": machine_type,
        "agent_id": _text(agent_id),
        "plug_topic": _text(plug_topic),
    }
    try:
        records.update_machine(session, code=code, changes=changes, actor=actor(user))
    except HubError as exc:
        session.rollback()
        errors = _refused(request, exc, MACHINE_INPUTS)
        return _machine_form(
            request, session, user, values, machine=machine, errors=errors, status_code=422
        )
    republish(request, background, [code])
    return RedirectResponse(f"/web/machines/{code}", status_code=303)


def _types_page(
    request: Request,
    session: Session,
    user: User,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    return render(
        request,
        "machine_types.html",
        {
            "types": session.exec(select(MachineType).order_by(col(MachineType.code))).all(),
            "kinds": list(MachineKind),
            "v": values or {"code": "", "name": "", "kind": "other"},
            "errors": errors,
            "problem": errors.get(""),
            "notice": notice,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/machine-types", response_class=HTMLResponse)
def machine_types_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    return _types_page(request, session, user)


@router.post("/machine-types", response_class=HTMLResponse, dependencies=[Checked])
def create_machine_type(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    code: Annotated[str, Form(max_length=63)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=20)] = "other",
) -> Response:
    values = {"code": code, "name": name, "kind": kind}
    try:
        records.create_type(session, code=code.strip(), name=name, kind=kind, actor=actor(user))
    except HubError as exc:
        session.rollback()
        errors = _refused(request, exc, TYPE_INPUTS)
        return _types_page(request, session, user, values=values, errors=errors, status_code=422)
    return _types_page(request, session, user, notice="machine type created")


@router.post("/machine-types/{type_id}", response_class=HTMLResponse, dependencies=[Checked])
def update_machine_type(
    request: Request,
    type_id: int,
    session: SessionDep,
    user: Annotated[User, Page(ADMIN)],
    name: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=20)] = "other",
) -> Response:
    """Rename a type or change its kind; its code (what rates and trainings name) stays.

    The API has no route for this yet; the page calls the service directly."""
    try:
        records.update_type(session, type_id=type_id, name=name, kind=kind, actor=actor(user))
    except NotFound as exc:
        raise PageError(exc.status, field_errors(request, exc, {})[1] or exc.code) from None
    except HubError as exc:
        session.rollback()
        errors = _refused(request, exc, {})
        return _types_page(request, session, user, errors=errors, status_code=422)
    return _types_page(request, session, user, notice="machine type saved")
