"""Broker accounts from the machines table: a Mosquitto password file and ACL.

Each agent gets its own account, allowed to publish only its machine's event, telemetry and
status topics and to read only its own acl and cmd topics (and its smart plug's topic, when the
machine names one); the hub's account reads everything. A machine with a plug topic also gets
an account for the plug itself, `plug-<machine code>`, allowed to publish that one topic only.
Passwords are generated once and kept in a secrets directory (one 0600 file per account, for
provisioning the Pi or typing into the plug's web page); the password file holds only
Mosquitto's PBKDF2-SHA512 hashes. The password of an account that is gone (a machine deleted
or renamed) is deleted with it, so a new machine of that name never inherits it.

On a regional broker (several sites, each site's broker bridged to it: deploy/mosquitto/
bridge.conf.j2) each site's bridge gets an account too, `bridge-<site>`, allowed to publish its
own site's event, telemetry and status topics and to read its own site's acl and cmd topics.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.errors import Conflict, InvalidValue
from hub.models import Machine
from protocol.topics import ROOT, TopicKind, is_slug, subscription, topic

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd writes for $7$ (PBKDF2-SHA512)
PLUG_TOPIC_MAX = 200
PLUG_USER_PREFIX = "plug-"
BRIDGE_USER_PREFIX = "bridge-"
SECRET_SUFFIX = ".mqtt-password"
# What crosses a site's bridge (deploy/mosquitto/bridge.conf.j2 bridges atelier/v1/<site>/#
# both ways): the agents' streams out to the region, the hub's allow-lists and commands in.
BRIDGE_OUT = (TopicKind.EVENT, TopicKind.TELEMETRY, TopicKind.STATUS)
BRIDGE_IN = (TopicKind.ACL, TopicKind.CMD)


def check_plug_topic(value: str) -> str:
    """A smart plug's topic as an ACL line may name it: one exact topic outside Atelier's tree.

    Printable ASCII without spaces (Mosquitto reads an ACL line up to the first blank; a line
    break would add lines of one's own), no wildcard (the account would read more than the
    plug), not a `$` system topic and not under `atelier/` (other machines' lists and commands).
    """
    if not value or len(value) > PLUG_TOPIC_MAX:
        raise InvalidValue("plug_topic.length", field="plug_topic", params={"max": PLUG_TOPIC_MAX})
    if not all(33 <= ord(ch) <= 126 for ch in value):
        raise InvalidValue("plug_topic.not_ascii", field="plug_topic", params={"topic": value})
    if "+" in value or "#" in value:
        raise InvalidValue("plug_topic.wildcard", field="plug_topic", params={"topic": value})
    if value.startswith("$") or value.split("/")[0] == ROOT.split("/")[0]:
        raise InvalidValue("plug_topic.reserved", field="plug_topic", params={"topic": value})
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


@dataclass(frozen=True)
class PlugAccount:
    """The account a machine's smart plug publishes with: its one topic, write only."""

    username: str
    machine: str
    topic: str


@dataclass(frozen=True)
class BridgeAccount:
    """A site broker's bridge, on the regional broker: that site's topics only."""

    username: str
    site: str

    def acl_lines(self) -> list[str]:
        """Publish the site's event/telemetry/status, read its acl/cmd: what the hub sends.

        Mosquitto lets any client subscribe to any filter and checks `read` per message, so
        the bridge's subscription to atelier/v1/<site>/# brings it its own acl and cmd only
        (not its own agents' events back, nor another site's), and what it publishes outside
        the three kinds of its own site is dropped."""
        lines = [f"user {self.username}"]
        lines += [f"topic write {subscription(kind, site=self.site)}" for kind in BRIDGE_OUT]
        lines += [f"topic read {subscription(kind, site=self.site)}" for kind in BRIDGE_IN]
        return lines


@dataclass(frozen=True)
class Credentials:
    """What `write_credentials` wrote: the agents' accounts, their plugs' and the bridges'."""

    agents: list[Account]
    plugs: list[PlugAccount]
    bridges: list[BridgeAccount] = field(default_factory=list)
    # Accounts whose kept password was deleted: no longer in the machines table, so a machine
    # given the same name later gets a new password, not the one an old Pi or plug still holds.
    removed: list[str] = field(default_factory=list)


def plug_username(machine: str) -> str:
    return f"{PLUG_USER_PREFIX}{machine}"


def bridge_username(site: str) -> str:
    return f"{BRIDGE_USER_PREFIX}{site}"


def _site(value: str, field: str) -> str:
    """A site as a topic level; refused by the flag's field (`site`, `bridge_site`)."""
    if not is_slug(value):
        raise InvalidValue("broker.site_invalid", field=field, params={"value": value})
    return value


def bridge_accounts(sites: Iterable[str]) -> list[BridgeAccount]:
    """One account per site (each named once, in order), the site checked as a topic level."""
    unique = sorted({_site(site, "bridge_site") for site in sites})
    return [BridgeAccount(bridge_username(site), site) for site in unique]


def plug_accounts(accounts: list[Account]) -> list[PlugAccount]:
    """One account per machine naming a plug topic, the topic checked as an ACL line needs."""
    plugs = []
    for account in accounts:
        if account.plug_topic is None:
            continue
        assert account.machine is not None
        try:
            checked = check_plug_topic(account.plug_topic)
        except InvalidValue:  # the services refuse these: only a hand-edited row has one
            raise InvalidValue(
                "broker.plug_topic_stored",
                params={"machine": account.machine, "topic": account.plug_topic},
            ) from None
        plugs.append(PlugAccount(plug_username(account.machine), account.machine, checked))
    return plugs


def _check_unique(
    hub_user: str,
    accounts: list[Account],
    plugs: list[PlugAccount],
    bridges: Sequence[BridgeAccount] = (),
) -> None:
    """Two accounts under one name would share a password line and an ACL block."""
    owners: dict[str, str] = {hub_user: "the hub"}
    named = [(b.username, f"site {b.site}'s bridge") for b in bridges]
    named += [(a.username, f"machine {a.machine}'s agent") for a in accounts]
    named += [(p.username, f"machine {p.machine}'s plug") for p in plugs]
    for username, owner in named:
        if username in owners:
            first = owners[username]
            params = {"username": username, "first": first, "second": owner}
            if first == "the hub":
                raise Conflict("broker.account_is_hub", params=params)
            raise Conflict("broker.account_twice", params=params)
        owners[username] = owner


def secret_path(secrets_dir: Path, username: str) -> Path:
    """Where an account's password is kept, in clear, readable by root only (0600)."""
    return secrets_dir / f"{username}{SECRET_SUFFIX}"


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


def acl_text(hub_user: str, accounts: list[Account], bridges: Sequence[BridgeAccount] = ()) -> str:
    """The ACL: the hub's block, each site bridge's, then each agent's, each followed by its
    plug's if it has one."""
    plugs = {p.machine: p for p in plug_accounts(accounts)}
    _check_unique(hub_user, accounts, list(plugs.values()), bridges)
    lines = [
        "# Written by `atelier hub mqtt-credentials` from the machines table; do not edit.",
        f"user {hub_user}",
        "topic readwrite atelier/v1/#",
        "topic readwrite $share/#",
        # Home Assistant discovery (hub/notify/homeassistant.py): its configs and birth message.
        "topic readwrite homeassistant/#",
        "",
    ]
    for bridge in bridges:
        lines += [*bridge.acl_lines(), ""]
    for account in accounts:
        assert account.site is not None and account.machine is not None
        lines.append(f"user {account.username}")
        for kind in (TopicKind.EVENT, TopicKind.TELEMETRY, TopicKind.STATUS):
            lines.append(f"topic write {topic(account.site, account.machine, kind)}")
        for kind in (TopicKind.ACL, TopicKind.CMD):
            lines.append(f"topic read {topic(account.site, account.machine, kind)}")
        plug = plugs.get(account.machine)
        if plug is not None:
            lines.append(f"topic read {plug.topic}")
            # The plug may publish its one topic; anything else it sends the broker drops.
            lines += ["", f"user {plug.username}", f"topic write {plug.topic}"]
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
    bridges: bool = False,
    bridge_sites: Iterable[str] = (),
    sites: Iterable[str] = (),
    agents: bool = True,
) -> Credentials:
    """Write the password file and ACL for every machine and plug; returns the accounts.

    With `bridges`, also an account for the bridge of every site in the machines table (for a
    regional broker); `bridge_sites` names sites to give one whether or not they have machines.
    `sites`, when given, limits the machines' and plugs' accounts to those sites' machines (a
    site broker: its own); without `agents`, none at all (a regional broker all of whose sites
    bridge: their agents connect to their site broker)."""
    rotate = rotate or set()
    with Session(engine) as session:
        machines = session.exec(select(Machine).order_by(Machine.code)).all()
    wanted = {_site(site, "site") for site in sites}
    every = [
        Account(username=m.agent_id or m.code, site=m.site, machine=m.code, plug_topic=m.plug_topic)
        for m in machines
    ]
    accounts = [a for a in every if agents and (not wanted or a.site in wanted)]
    sites = list(bridge_sites) + ([m.site for m in machines] if bridges else [])
    # First: a refused plug topic or site, or a name taken twice, leaves every file as it was.
    bridge_list = bridge_accounts(sites)
    acl = acl_text(hub_user, accounts, bridge_list)
    plugs = plug_accounts(accounts)
    if hub_password is None:
        hub_password = _secret(secret_path(secrets_dir, hub_user), hub_user in rotate)
    entries = [f"{hub_user}:{mosquitto_hash(hub_password)}"]
    usernames = [b.username for b in bridge_list] + [a.username for a in accounts]
    for username in usernames + [p.username for p in plugs]:
        password = _secret(secret_path(secrets_dir, username), username in rotate)
        entries.append(f"{username}:{mosquitto_hash(password)}")
    _write(password_file, "\n".join(entries) + "\n", file_mode)
    _write(acl_file, acl, file_mode)
    # Another site's machines keep their passwords: only a machine gone from the table loses it.
    kept = {hub_user, *usernames, *(a.username for a in every)}
    kept |= {plug_username(a.machine) for a in every if a.plug_topic and a.machine}
    removed = _remove_stale_secrets(secrets_dir, kept)
    return Credentials(agents=accounts, plugs=plugs, bridges=bridge_list, removed=removed)


def _remove_stale_secrets(secrets_dir: Path, kept: set[str]) -> list[str]:
    """Delete the kept passwords of machines' and plugs' accounts the password file no longer
    has. A bridge's password is kept: bridges are named by the command's options, not by the
    machines table, and a site left out of one run gets its bridge's password back on the next
    (delete `bridge-<site>.mqtt-password` by hand to retire a site)."""
    removed = []
    for path in sorted(secrets_dir.glob("*" + SECRET_SUFFIX)):
        username = path.name.removesuffix(SECRET_SUFFIX)
        if username in kept or username.startswith(BRIDGE_USER_PREFIX):
            continue
        path.unlink(missing_ok=True)
        removed.append(username)
    return removed
