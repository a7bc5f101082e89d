"""Adding a machine in one screen and its setup check: from "new laser" to "first badge works".

The form calls `hub.services.machines.add_machine`, as `atelier hub machine add` does; the setup
page shows `hub.services.machine_checks.setup_check` (refreshed every few seconds while it is
open) and gives the agent's config, its broker password and the lab CA as downloads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.deps import ADMIN, SessionDep
from hub.core.security import load_or_create_signing_key
from hub.models import Machine, MachineKind, MachineType, User
from hub.services.machine_checks import KIND_CONFLICTS, kind_conflict, setup_check
from hub.services.machines import (
    PLUG_KINDS,
    READERS,
    MachineChoices,
    MachineSetupError,
    accounts_of,
    add_machine,
    agent_config,
    broker_account,
    target_of,
)
from hub.web.csrf import Checked
from hub.web.i18n import N_, language_of, translator
from hub.web.render import Page, PageError, render, templates
from hub.web.republish import republish
from protocol.allowlist import public_key_b64

router = APIRouter(prefix="/web", include_in_schema=False)
WORDS = [N_("Add a machine")]
# The machine page (screens.py) words a kind_conflict code with these too.
templates.env.globals["kind_conflicts"] = KIND_CONFLICTS
FIELDS = (
    "code",
    "name",
    "site",
    "location",
    "machine_type",
    "kind",
    "reader",
    "relay_pin",
    "busy_pin",
    "ruida_host",
    "octoprint_url",
    "octoprint_api_key",
    "plug_kind",
    "plug_topic",
)


def _gettext(request: Request) -> Any:
    return translator(language_of(request)).gettext


def _form(
    request: Request,
    session: Session,
    user: User,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    types = session.exec(select(MachineType).order_by(col(MachineType.code))).all()
    return render(
        request,
        "machine_add.html",
        {
            "v": values,
            "errors": errors or {},
            "kinds": list(MachineKind),
            "readers": [(r, r) for r in READERS],
            "plug_kinds": [(k, k) for k in PLUG_KINDS],
            # The kind each type gives, shown beside the type: the machine inherits it.
            "type_options": [(t.code, f"{t.name} ({t.code}): {t.kind}") for t in types],
        },
        user=user,
        status_code=status_code,
    )


@router.get("/machines/add", response_class=HTMLResponse)
def add_page(request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]) -> Response:
    values = dict.fromkeys(FIELDS, "") | {
        "site": request.app.state.settings.site,
        "reader": "mfrc522",
        "relay_pin": "17",
    }
    return _form(request, session, user, values)


def _default(value: int | None, default: int) -> int:
    """An empty pin field: the default (GPIO 0 is a pin, not "nothing")."""
    return default if value is None else value


def _pin(value: str, field: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 3:
        raise MachineSetupError(
            field,
            N_("%(option)s must be a BCM GPIO number from 0 to 27 (got %(value)r)"),
            option=field,
            value=value,
        )
    return int(value)


@router.post("/machines/add", response_class=HTMLResponse, dependencies=[Checked])
def add_submit(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(ADMIN)],
    code: Annotated[str, Form(max_length=63)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    site: Annotated[str, Form(max_length=63)] = "",
    location: Annotated[str, Form(max_length=200)] = "",
    machine_type: Annotated[str, Form(max_length=63)] = "",
    kind: Annotated[str, Form(max_length=20)] = "",
    reader: Annotated[str, Form(max_length=20)] = "mfrc522",
    relay_pin: Annotated[str, Form(max_length=10)] = "17",
    busy_pin: Annotated[str, Form(max_length=10)] = "",
    ruida_host: Annotated[str, Form(max_length=253)] = "",
    octoprint_url: Annotated[str, Form(max_length=300)] = "",
    octoprint_api_key: Annotated[str, Form(max_length=200)] = "",
    plug_kind: Annotated[str, Form(max_length=20)] = "",
    plug_topic: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    values = {
        "code": code, "name": name, "site": site, "location": location,
        "machine_type": machine_type, "kind": kind, "reader": reader, "relay_pin": relay_pin,
        "busy_pin": busy_pin, "ruida_host": ruida_host, "octoprint_url": octoprint_url,
        "octoprint_api_key": "", "plug_kind": plug_kind, "plug_topic": plug_topic,
    }  # fmt: skip
    settings = request.app.state.settings
    try:
        choices = MachineChoices(
            code=code.strip(),
            name=name,
            machine_type=machine_type,
            site=site.strip(),
            kind=kind or None,
            location=location,
            reader=reader,
            relay_pin=_default(_pin(relay_pin, "relay_pin"), 17),
            busy_pin=_pin(busy_pin, "busy_pin"),
            ruida_host=ruida_host or None,
            octoprint_url=octoprint_url or None,
            octoprint_api_key=octoprint_api_key or None,
            plug_kind=plug_kind or None,
            plug_topic=plug_topic or None,
        )
        added = add_machine(
            session,
            choices=choices,
            actor=f"user:{user.username}",
            accounts=accounts_of(settings),
        )
    except MachineSetupError as exc:
        session.rollback()
        errors = {exc.field: exc.text(_gettext(request))}
        return _form(request, session, user, values, errors, status_code=422)
    # The new machine's first allow-list, signed and retained before its agent connects.
    republish(request, background, [choices.code])
    # The broker's files not written (or not reloaded): the setup page says what to run.
    pending = "" if added.broker_written else "?broker=pending"
    return RedirectResponse(f"/web/machines/{choices.code}/setup{pending}", status_code=303)


def _machine(session: Session, code: str) -> tuple[Machine, str]:
    machine = session.exec(select(Machine).where(Machine.code == code)).first()
    if machine is None:
        raise PageError(404, f"no machine {code!r}")
    mtype = session.get(MachineType, machine.machine_type_id)
    return machine, mtype.code if mtype else "other"


def _findings(request: Request, session: Session, code: str) -> list[dict[str, Any]]:
    settings = request.app.state.settings
    _ = _gettext(request)
    found = setup_check(session, code=code, now=datetime.now(UTC), tz=ZoneInfo(settings.timezone))
    return [{"code": f.code, "ok": f.ok, "text": f.text(_)} for f in found]


def _config(request: Request, machine: Machine, type_code: str) -> str:
    settings = request.app.state.settings
    key = public_key_b64(load_or_create_signing_key(settings.data_dir).public_key())
    return agent_config(machine, type_code, target_of(settings, key))


@router.get("/machines/{code}/setup", response_class=HTMLResponse)
def setup_page(
    code: str, request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    machine, type_code = _machine(session, code)
    findings = _findings(request, session, code)
    return render(
        request,
        "machine_setup.html",
        {
            "m": machine,
            "machine_type": type_code,
            "findings": findings,
            "ready": all(f["ok"] for f in findings),
            "config": _config(request, machine, type_code),
            "conflict": KIND_CONFLICTS.get(kind_conflict(machine) or ""),
            "tls": request.app.state.settings.mqtt_tls_ca is not None,
            "broker_pending": request.query_params.get("broker") == "pending",
            "secrets_dir": request.app.state.settings.mqtt_secrets_dir,
        },
        user=user,
    )


@router.get("/machines/{code}/setup/check", response_class=HTMLResponse)
def setup_fragment(
    code: str, request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    """The check alone, for the page's refresh every few seconds."""
    _machine(session, code)
    findings = _findings(request, session, code)
    return render(
        request,
        "_setup_check.html",
        {"m": {"code": code}, "findings": findings, "ready": all(f["ok"] for f in findings)},
        user=user,
    )


def _download(text: str, filename: str) -> Response:
    return PlainTextResponse(
        text,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/machines/{code}/agent.toml")
def agent_toml(
    code: str, request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    machine, type_code = _machine(session, code)
    return _download(_config(request, machine, type_code), "edge.toml")


@router.get("/machines/{code}/mqtt-password")
def agent_password(
    code: str, request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    """The agent's broker password (made on first use): /etc/atelier/credentials/mqtt-password."""
    machine, _ = _machine(session, code)
    password, _written = broker_account(session, machine, accounts_of(request.app.state.settings))
    record(
        session,
        actor=f"user:{user.username}",
        action="machine.password_downloaded",
        entity="machine",
        entity_id=code,
    )
    session.commit()
    return _download(password + "\n", "mqtt-password")


@router.get("/machines/{code}/octoprint-api-key")
def octoprint_key(code: str, session: SessionDep, user: Annotated[User, Page(ADMIN)]) -> Response:
    machine, _ = _machine(session, code)
    if not machine.octoprint_api_key:
        raise PageError(404, f"{code} has no OctoPrint")
    return _download(machine.octoprint_api_key + "\n", "octoprint-api-key")


@router.get("/machines/{code}/ca.crt")
def lab_ca(
    code: str, request: Request, session: SessionDep, user: Annotated[User, Page(ADMIN)]
) -> Response:
    _machine(session, code)
    ca = request.app.state.settings.mqtt_tls_ca
    if ca is None:
        raise PageError(404, "the hub's broker has no TLS (mqtt_tls_ca is not set)")
    return _download(ca.read_text(), "ca.crt")
