"""Adding a machine in one go and checking what still stops it from working.

`add_machine` creates the machine with the kind of its type (unless told otherwise), its
choices by kind (a laser's Ruida controller or busy input, a printer's OctoPrint checked at
once, a smart plug), and its broker account; `agent_config` writes the agent's TOML from them;
`setup_check` says, in words, what is missing: the agent, its list, its clock, OctoPrint, a
rate, a trained member, a trainer. The CLI and the web call these; messages are English
templates with named parameters, which each front end translates (hub/web/locale).
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from sqlmodel import Session, select

from hub.audit import record
from hub.core.errors import HubError
from hub.models import Machine, MachineKind, MachineType
from hub.services.broker_accounts import (
    _secret,
    check_plug_topic,
    secret_path,
    write_credentials,
)
from protocol.topics import SLUG_PATTERN

log = logging.getLogger(__name__)
CLOCK_TOLERANCE_S = 60.0
OCTOPRINT_TIMEOUT_S = 4.0
PLUG_KINDS = ("tasmota", "shelly-gen2", "shelly-gen1")
READERS = ("mfrc522", "keyboard")
# What the agent must have for each kind, beyond the relay and reader every machine has.
LASER_SOURCES = ("ruida", "busy_input")


def N_(message: str) -> str:  # noqa: N802 - gettext's name: marks a message for the catalogue
    return message


class MachineSetupError(ValueError):
    """A choice a person made that cannot be taken: the field, and an English template whose
    `%(name)s` parameters a front end fills after translating it."""

    def __init__(self, field: str, message: str, **params: Any) -> None:
        self.field = field
        self.message = message
        self.params = params
        super().__init__(f"{field}: {message % params}")

    def text(self, gettext: Callable[[str], str] = str) -> str:
        return gettext(self.message) % self.params


@dataclass(frozen=True)
class OctoPrintAnswer:
    """What OctoPrint said to a request for its version with the key: ok, refused, unreachable."""

    state: Literal["ok", "refused", "unreachable"]
    detail: str = ""


def ask_octoprint(
    url: str, api_key: str, *, timeout_s: float = OCTOPRINT_TIMEOUT_S
) -> OctoPrintAnswer:
    """GET /api/version with the key, as the agent's client does its first request."""
    try:
        answer = httpx.get(
            url.rstrip("/") + "/api/version",
            headers={"X-Api-Key": api_key},
            timeout=timeout_s,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return OctoPrintAnswer("unreachable", type(exc).__name__)
    if answer.status_code in (401, 403):
        return OctoPrintAnswer("refused", f"HTTP {answer.status_code}")
    if answer.status_code != 200:
        return OctoPrintAnswer("unreachable", f"HTTP {answer.status_code}")
    try:
        version = str(answer.json().get("server", ""))
    except ValueError:
        return OctoPrintAnswer("unreachable", "not OctoPrint's answer")
    return OctoPrintAnswer("ok", version)


OctoPrintProbe = Callable[[str, str], OctoPrintAnswer]


@dataclass(frozen=True)
class MachineChoices:
    """What a person chose for the machine; `add_machine` checks every field."""

    code: str
    name: str
    machine_type: str
    site: str
    kind: str | None = None  # None or "": the type's
    location: str = ""
    reader: str = "mfrc522"
    relay_pin: int = 17
    busy_pin: int | None = None
    ruida_host: str | None = None
    octoprint_url: str | None = None
    octoprint_api_key: str | None = None
    plug_kind: str | None = None
    plug_topic: str | None = None


def _slug(field: str, value: str) -> str:
    if not re.fullmatch(SLUG_PATTERN, value or ""):
        raise MachineSetupError(
            field,
            N_(
                "%(value)r is not a valid %(option)s: use 1-63 lower-case letters, digits, '-' or "
                "'_', starting with a letter or digit, e.g. laser-2"
            ),
            value=value,
            option=field,
        )
    return value


def _pin(field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 27:
        raise MachineSetupError(
            field,
            N_("%(option)s must be a BCM GPIO number from 0 to 27 (got %(value)r)"),
            option=field,
            value=value,
        )
    return value


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _host(field: str, value: str | None) -> str | None:
    value = _text(value)
    if value is None:
        return None
    if len(value) > 253 or any(c.isspace() or not c.isprintable() or c in "/\"'\\" for c in value):
        raise MachineSetupError(
            field, N_("%(value)r is not a host name or IP address, e.g. 192.168.10.50"), value=value
        )
    return value


def check_choices(session: Session, choices: MachineChoices) -> tuple[MachineType, MachineKind]:
    """Every field of `choices` that cannot be taken raises MachineSetupError naming it."""
    _slug("code", choices.code)
    _slug("site", choices.site)
    name = choices.name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise MachineSetupError(
            "name", N_("give the machine's name, 1 to 200 printable characters, e.g. Laser Trotec")
        )
    if len(choices.location) > 200:
        raise MachineSetupError("location", N_("a location has at most 200 characters"))
    mtype = session.exec(
        select(MachineType).where(MachineType.code == choices.machine_type)
    ).first()
    if mtype is None:
        known = ", ".join(session.exec(select(MachineType.code).order_by(MachineType.code))) or "—"
        raise MachineSetupError(
            "machine_type",
            N_("no machine type %(value)r: choose one of %(known)s, or create the type first"),
            value=choices.machine_type,
            known=known,
        )
    if choices.kind:
        try:
            kind = MachineKind(choices.kind)
        except ValueError:
            raise MachineSetupError(
                "kind",
                N_(
                    "%(value)r is not a kind: laser, printer, cnc or other (or leave it empty "
                    "for the type's)"
                ),
                value=choices.kind,
            ) from None
    else:
        kind = MachineKind(mtype.kind)
    if session.exec(select(Machine.id).where(Machine.code == choices.code)).first() is not None:
        raise MachineSetupError(
            "code",
            N_("a machine %(value)r already exists: choose another code"),
            value=choices.code,
        )
    if choices.reader not in READERS:
        raise MachineSetupError(
            "reader", N_("reader is mfrc522 or keyboard (got %(value)r)"), value=choices.reader
        )
    if _pin("relay_pin", choices.relay_pin) is None:  # every agent switches a relay
        raise MachineSetupError(
            "relay_pin",
            N_("%(option)s must be a BCM GPIO number from 0 to 27 (got %(value)r)"),
            option="relay_pin",
            value=None,
        )
    _pin("busy_pin", choices.busy_pin)
    if choices.busy_pin is not None and choices.busy_pin == choices.relay_pin:
        raise MachineSetupError(
            "busy_pin",
            N_("the busy input and the relay cannot share GPIO %(value)s"),
            value=choices.busy_pin,
        )
    ruida = _host("ruida_host", choices.ruida_host)
    if kind == MachineKind.LASER and (ruida is None) == (choices.busy_pin is None):
        raise MachineSetupError(
            "ruida_host",
            N_(
                "a laser needs one way to know when it fires: its Ruida controller's address "
                "(ruida_host) or the GPIO of its laser-fire signal (busy_pin), not both"
            ),
        )
    if kind != MachineKind.LASER and ruida is not None:
        raise MachineSetupError(
            "ruida_host",
            N_(
                "a Ruida controller drives a laser: set the kind to laser or leave ruida_host empty"
            ),
        )
    url, key = _text(choices.octoprint_url), _text(choices.octoprint_api_key)
    if kind == MachineKind.PRINTER and url is None:
        raise MachineSetupError(
            "octoprint_url",
            N_("a printer needs its OctoPrint address, e.g. http://printer-1.local:5000"),
        )
    if url is not None:
        if kind != MachineKind.PRINTER:
            raise MachineSetupError(
                "octoprint_url",
                N_(
                    "OctoPrint runs printers: set the kind to printer or leave the OctoPrint "
                    "address empty"
                ),
            )
        if not url.startswith(("http://", "https://")) or len(url) > 300 or not url.isprintable():
            raise MachineSetupError(
                "octoprint_url",
                N_(
                    "%(value)r is not an OctoPrint address: http:// or https://, then the host and "
                    "port, e.g. http://printer-1.local:5000"
                ),
                value=url,
            )
        if key is None or len(key) > 200 or not key.isprintable() or " " in key:
            raise MachineSetupError(
                "octoprint_api_key",
                N_("give OctoPrint's application key (OctoPrint: Settings > Application Keys)"),
            )
    plug_topic = _text(choices.plug_topic)
    if plug_topic is not None:
        try:
            check_plug_topic(plug_topic)
        except ValueError as exc:
            raise MachineSetupError("plug_topic", "%(detail)s", detail=str(exc)) from None
        if choices.plug_kind not in PLUG_KINDS:
            raise MachineSetupError(
                "plug_kind",
                N_("which smart plug publishes %(topic)s: tasmota, shelly-gen2 or shelly-gen1"),
                topic=plug_topic,
            )
        if plug_parts(choices.plug_kind, plug_topic) is None:
            raise MachineSetupError(
                "plug_topic",
                N_("%(value)r is not the power topic of a %(kind)s plug: write it as %(shape)s"),
                value=plug_topic,
                kind=choices.plug_kind,
                shape=PLUG_SHAPES[choices.plug_kind],
            )
    return mtype, kind


@dataclass(frozen=True)
class BrokerAccounts:
    """Where the broker's accounts live on the hub; the password and ACL files are written again
    and `reload_command` run when both are given, else `atelier hub mqtt-credentials` does it."""

    secrets_dir: Path
    hub_user: str | None = None
    hub_password: str | None = None
    password_file: Path | None = None
    acl_file: Path | None = None
    reload_command: str | None = None


@dataclass
class AddedMachine:
    machine: Machine
    password: str
    broker_written: bool
    octoprint: OctoPrintAnswer | None = None


def add_machine(
    session: Session,
    *,
    choices: MachineChoices,
    actor: str,
    accounts: BrokerAccounts,
    probe: OctoPrintProbe = ask_octoprint,
    commit: bool = True,
) -> AddedMachine:
    """Create the machine, ask OctoPrint at once (a printer), and give it a broker account."""
    mtype, kind = check_choices(session, choices)
    url, key = _text(choices.octoprint_url), _text(choices.octoprint_api_key)
    answer = None
    if url is not None and key is not None:
        answer = probe(url, key)
        if answer.state == "refused":
            raise MachineSetupError(
                "octoprint_api_key",
                N_(
                    "OctoPrint at %(url)s refused this key (%(detail)s): copy an application key "
                    "from OctoPrint's Settings > Application Keys"
                ),
                url=url,
                detail=answer.detail,
            )
        if answer.state == "unreachable":
            raise MachineSetupError(
                "octoprint_url",
                N_(
                    "OctoPrint does not answer at %(url)s (%(detail)s): check the address and "
                    "that OctoPrint runs"
                ),
                url=url,
                detail=answer.detail,
            )
    setup: dict[str, Any] = {"reader": choices.reader, "relay_pin": choices.relay_pin}
    if choices.busy_pin is not None:
        setup["busy_pin"] = choices.busy_pin
    if _text(choices.ruida_host):
        setup["ruida_host"] = _text(choices.ruida_host)
    if _text(choices.plug_topic):
        setup["plug_kind"] = choices.plug_kind
    machine = Machine(
        code=choices.code,
        name=choices.name.strip(),
        site=choices.site,
        location=choices.location.strip(),
        kind=kind,
        machine_type_id=mtype.id or 0,
        plug_topic=_text(choices.plug_topic),
        octoprint_url=url,
        octoprint_api_key=key,
        setup=setup,
    )
    session.add(machine)
    record(
        session,
        actor=actor,
        action="machine.create",
        entity="machine",
        entity_id=choices.code,
        machine_type=mtype.code,
        kind=kind.value,
        kind_from_type=not choices.kind,
    )
    if not commit:
        session.flush()
        return AddedMachine(machine, "", False, answer)
    session.commit()
    session.refresh(machine)
    return AddedMachine(machine, *broker_account(session, machine, accounts), answer)


def broker_account(
    session: Session, machine: Machine, accounts: BrokerAccounts
) -> tuple[str, bool]:
    """The agent's password (kept in the secrets directory, made on first use), and whether the
    broker's password file and ACL were written again and reloaded with it."""
    username = machine.agent_id or machine.code
    accounts.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = _secret(secret_path(accounts.secrets_dir, username), False)
    if not (accounts.password_file and accounts.acl_file and accounts.hub_user):
        return password, False
    try:
        write_credentials(
            session.get_bind(),  # type: ignore[arg-type]
            password_file=accounts.password_file,
            acl_file=accounts.acl_file,
            secrets_dir=accounts.secrets_dir,
            hub_user=accounts.hub_user,
            hub_password=accounts.hub_password,
        )
        if accounts.reload_command:
            subprocess.run(
                shlex.split(accounts.reload_command), check=True, timeout=30, capture_output=True
            )
    except (HubError, ValueError, OSError, subprocess.SubprocessError) as exc:
        # The machine is saved; `atelier hub mqtt-credentials` and a reload finish the job, and
        # both front ends say so when this returns False.
        log.warning("the broker's accounts for %s were not written or reloaded: %s", username, exc)
        return password, False
    return password, True


# --- the agent's config ---------------------------------------------------------------------
@dataclass(frozen=True)
class AgentTarget:
    """How the agent reaches the hub: the broker as the Pi sees it, and the Pi's file paths."""

    hub_public_key: str
    broker_host: str
    broker_port: int
    tls_ca: str | None = None  # the CA's path on the Pi; None: no TLS
    state_dir: str = "/var/lib/atelier-edge"
    pin_factory: str = "lgpio"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def agent_config(machine: Machine, machine_type: str, target: AgentTarget) -> str:
    """The agent's edge.toml (`atelier edge check-config` takes it). The broker password is
    not in it: systemd gives it (LoadCredential=mqtt-password), from the file beside it."""
    setup = machine.setup or {}
    sections: dict[str, dict[str, Any]] = {
        "agent": {
            "site": machine.site,
            "machine": machine.code,
            "machine_type": machine_type,
            "state_dir": target.state_dir,
            "hub_public_key": target.hub_public_key,
        },
        "mqtt": {
            "host": target.broker_host,
            "port": target.broker_port,
            "username": machine.agent_id or machine.code,
        },
        "gpio": {"pin_factory": target.pin_factory},
        "relay": {"pin": int(setup.get("relay_pin", 17)), "active_high": False},
        "reader": {"type": setup.get("reader", "mfrc522")},
        "session": {"cut_while_busy": False},
    }
    if target.tls_ca:
        sections["mqtt"] |= {"tls": True, "ca_file": target.tls_ca}
    if sections["reader"]["type"] == "keyboard":
        sections["reader"] |= {
            "input_device": "/dev/input/by-id/REPLACE-WITH-THE-READER",  # ls /dev/input/by-id/
            "format": "decimal10",
        }
    if "busy_pin" in setup:
        sections["busy_input"] = {"pin": int(setup["busy_pin"]), "pull_up": True}
    if setup.get("ruida_host"):
        sections["ruida"] = {"host": setup["ruida_host"]}
    if machine.octoprint_url:
        sections["octoprint"] = {
            "url": machine.octoprint_url,
            "api_key_file": "/etc/atelier/octoprint-api-key",
        }
    plug = plug_parts(setup.get("plug_kind"), machine.plug_topic or "")
    if plug is not None:
        sections["power_meter"] = {"kind": setup["plug_kind"], "topic": plug[0]}
        if plug[1]:
            sections["power_meter"]["channel"] = plug[1]
    lines = [
        # A name set through the API may hold a line break: never a line of TOML of its own.
        f"# The agent of {''.join(c if c.isprintable() else ' ' for c in machine.name)} "
        f"({machine.code}, site {machine.site}), written by the hub.",
        "# On the Pi: /etc/atelier/edge.toml; check it with atelier edge check-config.",
        "# The broker password goes to /etc/atelier/credentials/mqtt-password (mode 0600)"
        + (
            ", OctoPrint's key to /etc/atelier/octoprint-api-key." if machine.octoprint_url else "."
        ),
        "",
    ]
    if sections["reader"]["type"] == "keyboard":
        lines[-1:-1] = ["# reader.input_device: write the reader's device (ls /dev/input/by-id/)."]
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


# The one topic each plug publishes its power on (edge/integrations/power_meter.py reads the
# same): the hub keeps the whole topic (the agent's ACL names it), the agent's config its parts.
PLUG_SHAPES = {
    "tasmota": "tele/<plug>/SENSOR",
    "shelly-gen2": "<plug>/status/switch:<channel>",
    "shelly-gen1": "shellies/<plug>/relay/<channel>/power",
}
_PLUG_PATTERNS = {
    "tasmota": re.compile(r"tele/(?P<id>[^/]+)/SENSOR"),
    "shelly-gen2": re.compile(r"(?P<id>[^/]+)/status/switch:(?P<channel>[0-7])"),
    "shelly-gen1": re.compile(r"shellies/(?P<id>[^/]+)/relay/(?P<channel>[0-7])/power"),
}


def plug_parts(plug_kind: str | None, topic: str) -> tuple[str, int] | None:
    """The plug's id and channel in its power topic; None when the topic has another shape."""
    pattern = _PLUG_PATTERNS.get(plug_kind or "")
    found = pattern.fullmatch(topic) if pattern else None
    if found is None:
        return None
    return found["id"], int(found.groupdict().get("channel") or 0)


def accounts_of(settings: Any) -> BrokerAccounts:
    """The broker accounts' places from the hub's settings (hub/core/settings.py)."""
    return BrokerAccounts(
        secrets_dir=settings.mqtt_secrets_dir,
        hub_user=settings.mqtt_username,
        hub_password=settings.mqtt_password,
        password_file=settings.mqtt_password_file,
        acl_file=settings.mqtt_acl_file,
        reload_command=settings.mqtt_reload_command,
    )


def target_of(settings: Any, hub_public_key: str) -> AgentTarget:
    """How an agent reaches this hub: `agent_broker`, else the hub's own broker address."""
    host, port = settings.mqtt_host, settings.mqtt_port
    if settings.agent_broker:
        host, _, port_text = settings.agent_broker.rpartition(":")
        port = int(port_text)
    return AgentTarget(
        hub_public_key=hub_public_key,
        broker_host=host,
        broker_port=port,
        tls_ca=settings.agent_tls_ca if settings.mqtt_tls_ca else None,
    )
