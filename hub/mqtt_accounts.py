"""Broker accounts from the machines table: a Mosquitto password file and ACL.

Each agent gets its own account, allowed to publish only its machine's event, telemetry and
status topics and to read only its own acl and cmd topics (and its smart plug's topic, when the
machine names one); the hub's account reads everything.
Passwords are generated once and kept in a secrets directory (one 0600 file per machine, for
provisioning the Pi); the password file holds only Mosquitto's PBKDF2-SHA512 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.models import Machine
from protocol.topics import ROOT, TopicKind, topic

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd writes for $7$ (PBKDF2-SHA512)
PLUG_TOPIC_MAX = 200


def check_plug_topic(value: str) -> str:
    """A smart plug's topic as an ACL line may name it: one exact topic outside Atelier's tree.

    Printable ASCII without spaces (Mosquitto reads an ACL line up to the first blank; a line
    break would add lines of one's own), no wildcard (the account would read more than the
    plug), not a `$` system topic and not under `atelier/` (other machines' lists and commands).
    """
    if not value or len(value) > PLUG_TOPIC_MAX:
        raise ValueError(f"a plug topic has 1 to {PLUG_TOPIC_MAX} characters")
    if not all(33 <= ord(ch) <= 126 for ch in value):
        raise ValueError(
            f"plug topic {value!r}: use printable ASCII without spaces, e.g. tele/plug-laser/SENSOR"
        )
    if "+" in value or "#" in value:
        raise ValueError(f"plug topic {value!r}: name the one topic, without + or # wildcards")
    if value.startswith("$") or value.split("/")[0] == ROOT.split("/")[0]:
        raise ValueError(f"plug topic {value!r}: not a $ topic nor one of Atelier's own")
    return value


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """A password-file hash in Mosquitto 2's `$7$` format."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}$"
        f"{base64.b64encode(digest).decode()}"
    )


@dataclass(frozen=True)
class Account:
    username: str
    site: str | None  # None for the hub
    machine: str | None
    plug_topic: str | None = None  # a smart plug the agent reads on this broker


def _secret(path: Path, rotate: bool) -> str:
    if path.exists() and not rotate:
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    _write(path, password + "\n", 0o600)
    return password


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    tmp.replace(path)


def acl_text(hub_user: str, accounts: list[Account]) -> str:
    lines = [
        "# Written by `atelier hub mqtt-credentials` from the machines table; do not edit.",
        f"user {hub_user}",
        "topic readwrite atelier/v1/#",
        "topic readwrite $share/#",
        "",
    ]
    for account in accounts:
        assert account.site is not None and account.machine is not None
        lines.append(f"user {account.username}")
        for kind in (TopicKind.EVENT, TopicKind.TELEMETRY, TopicKind.STATUS):
            lines.append(f"topic write {topic(account.site, account.machine, kind)}")
        for kind in (TopicKind.ACL, TopicKind.CMD):
            lines.append(f"topic read {topic(account.site, account.machine, kind)}")
        if account.plug_topic is not None:
            try:
                lines.append(f"topic read {check_plug_topic(account.plug_topic)}")
            except ValueError as exc:  # the API refuses these: only a hand-edited row has one
                raise ValueError(f"machine {account.machine}: {exc}") from None
        lines.append("")
    return "\n".join(lines)


def write_credentials(
    engine: Engine,
    *,
    password_file: Path,
    acl_file: Path,
    secrets_dir: Path,
    hub_user: str,
    hub_password: str | None,
    rotate: set[str] | None = None,
    file_mode: int = 0o640,
) -> list[Account]:
    """Write the password file and ACL for every machine; returns the agent accounts."""
    rotate = rotate or set()
    with Session(engine) as session:
        machines = session.exec(select(Machine).order_by(Machine.code)).all()
    accounts = [
        Account(username=m.agent_id or m.code, site=m.site, machine=m.code, plug_topic=m.plug_topic)
        for m in machines
    ]
    acl = acl_text(hub_user, accounts)  # first: a refused plug topic leaves every file as it was
    if hub_password is None:
        hub_password = _secret(secrets_dir / f"{hub_user}.mqtt-password", hub_user in rotate)
    entries = [f"{hub_user}:{mosquitto_hash(hub_password)}"]
    for account in accounts:
        password = _secret(
            secrets_dir / f"{account.username}.mqtt-password", account.username in rotate
        )
        entries.append(f"{account.username}:{mosquitto_hash(password)}")
    _write(password_file, "\n".join(entries) + "\n", file_mode)
    _write(acl_file, acl, file_mode)
    return accounts
