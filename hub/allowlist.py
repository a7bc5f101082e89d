"""Build, sign and publish each machine's allow-list, retained on its ./acl topic."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import column, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.mqtt import hub_client
from hub.core.settings import Settings
from hub.models import Machine, MachineType, MemberStatus, TrainingLevel, UTCDateTime
from protocol.allowlist import AllowList, sign_body
from protocol.commands import sign_command
from protocol.envelope import DenyReason, utc_iso
from protocol.messages import Command, CommandName
from protocol.topics import TopicKind, topic

log = logging.getLogger(__name__)

_LEVEL_RANK = {"user": 0, "trainer": 1, "maintainer": 2}


def allowlist_body(
    session: Session, machine: Machine, *, now: datetime, ttl: timedelta, bump_version: bool = True
) -> dict[str, Any]:
    """The list as JSON-ready values, exactly what `AllowList.model_dump(mode="json")` gives:
    every active badge of every current member, with the holder's training for the machine's
    type; members without a valid one are listed with a `block` so the machine can say why.

    One query of exactly the columns needed, and plain dictionaries rather than model objects:
    the list is rebuilt whenever something changes, for thousands of members.
    """
    mtype = session.get(MachineType, machine.machine_type_id)
    assert mtype is not None
    # Raw rows (SQLAlchemy stores enums by name): only the timestamp is converted by
    # SQLAlchemy, which is what keeps 5,000 members well under 50 ms on PostgreSQL too.
    rows = session.execute(
        text(
            "SELECT b.uid, m.ref, m.status, t.level, t.expires_at, t.supervised_only "
            "FROM badge b JOIN member m ON m.id = b.member_id "
            "LEFT JOIN training t ON t.member_id = m.id AND t.machine_type_id = :machine_type "
            "WHERE b.revoked_at IS NULL AND m.status != :left ORDER BY b.uid"
        ).columns(
            column("uid"),
            column("ref"),
            column("status"),
            column("level"),
            column("expires_at", UTCDateTime()),
            column("supervised_only"),
        ),
        {"machine_type": machine.machine_type_id, "left": MemberStatus.LEFT.name},
    ).all()
    # Members whose sessions draw an empty prepaid-only balance (hub/billing_store.py): their
    # own, or their payer's when a company or school pays for them, as the drawdown does. A
    # few at most, so a second small query rather than a join over every badge.
    empty_balance = set(
        session.execute(
            text(
                "SELECT m.ref FROM member m "
                "JOIN billing_account a ON a.member_id = COALESCE(m.payer_id, m.id) "
                "WHERE a.prepaid_only AND a.balance_cents <= 0"
            )
        ).scalars()
    )
    # Each member's valid trainings on the other machine types, for the accessories that need
    # their own (edge/domain/interlocks.py); supervised-only ones do not count.
    trainings: dict[str, dict[str, str | None]] = {}
    for ref, code, expires in session.execute(
        text(
            "SELECT m.ref, mt.code, t.expires_at FROM training t "
            "JOIN member m ON m.id = t.member_id JOIN machine_type mt ON mt.id = t.machine_type_id "
            "WHERE t.machine_type_id != :machine_type AND NOT t.supervised_only "
            "AND m.status != :left ORDER BY m.ref, mt.code"
        ).columns(column("ref"), column("code"), column("expires_at", UTCDateTime())),
        {"machine_type": machine.machine_type_id, "left": MemberStatus.LEFT.name},
    ).all():
        if expires is None or _aware(expires) > now:
            trainings.setdefault(ref, {})[code] = utc_iso(_aware(expires)) if expires else None
    best: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        current = best.get(row[0])
        if current is None or _better(row, current):
            best[row[0]] = row
    active, inactive, untrained, balance = (
        MemberStatus.ACTIVE.name,
        DenyReason.MEMBER_INACTIVE.value,
        DenyReason.NOT_TRAINED.value,
        DenyReason.BALANCE.value,
    )
    levels = {level.name: level.value for level in TrainingLevel}
    entries = [
        {
            "badge": uid,
            "member": ref,
            "level": levels[level] if level else "user",
            "supervised_only": bool(supervised),
            "training_expires_at": utc_iso(_aware(expires)) if expires else None,
            "block": inactive
            if status != active
            else (untrained if level is None else (balance if ref in empty_balance else None)),
        }
        for uid, ref, status, level, expires, supervised in best.values()
    ]
    for entry in entries:  # the key only where there is something (as the model dumps it)
        held = trainings.get(entry["member"])
        if held:
            entry["trainings"] = held
    if bump_version:
        floor = version_floor(now, reported=_reported_version(machine), machine=machine.code)
        # One atomic UPDATE: on PostgreSQL it holds the machine's row lock until commit, so
        # the hub and a CLI command publishing at once can never sign two lists with the
        # same version (SQLite serialises writers anyway). The stored counter keeps two lists
        # of the same millisecond apart; the floor keeps a restored counter from going back.
        machine.acl_version = session.execute(
            text(
                "UPDATE machine SET acl_version = CASE WHEN acl_version >= :floor "
                "THEN acl_version + 1 ELSE :floor END WHERE id = :id RETURNING acl_version"
            ),
            {"id": machine.id, "floor": floor},
        ).scalar_one()
    return {
        "v": 1,
        "site": machine.site,
        "machine": machine.code,
        "machine_type": mtype.code,
        "version": max(1, machine.acl_version),
        "issued_at": utc_iso(now),
        "expires_at": utc_iso(now + ttl),
        "locked": machine.locked,
        "lock_reason": machine.lock_reason,
        "entries": entries,
    }


# How far ahead of this hub's clock an agent's reported version may be and still count (a
# hub whose clock ran ahead, then was restored from a backup). Beyond it the number cannot be
# one this hub signed: a rogue agent account must not push its machine's versions to the top
# of the range, where the next list could not be numbered.
MAX_REPORTED_AHEAD = timedelta(days=30)


def version_floor(now: datetime, *, reported: int | None = None, machine: str = "") -> int:
    """The lowest version a list issued at `now` may carry: its issue time in milliseconds
    since the epoch, and above the version the machine's agent last reported holding.

    Versions therefore never go backwards across a database restored from a backup, nor
    for a machine deleted and created again under the same code: the clock has moved on
    since the agent's list was signed, and the agent's own report covers a clock that has
    not. Within one millisecond the stored counter (`acl_version + 1`) keeps them apart."""
    issued_ms = int(now.timestamp() * 1000)
    if reported is None:
        return issued_ms
    limit = int((now + MAX_REPORTED_AHEAD).timestamp() * 1000)
    if reported > limit:
        log.warning(
            "machine %s reports holding allow-list version %d, beyond any this hub signed "
            "(its clock is %s); ignored",
            machine,
            reported,
            utc_iso(now),
        )
        return issued_ms
    return max(issued_ms, reported + 1)


def _reported_version(machine: Machine) -> int | None:
    """The list version the agent said it holds in its last status (None when unknown)."""
    status = machine.last_status if isinstance(machine.last_status, dict) else {}
    reported = status.get("acl_version")
    return reported if isinstance(reported, int) and not isinstance(reported, bool) else None


def build_allowlist(
    session: Session, machine: Machine, *, now: datetime, ttl: timedelta, bump_version: bool = True
) -> AllowList:
    """The same list as a validated model (for callers that want objects)."""
    return AllowList.model_validate(
        allowlist_body(session, machine, now=now, ttl=ttl, bump_version=bump_version)
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _better(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Of two rows for one badge, prefer a training over none, then the one valid longest,
    then the higher level."""
    if (a[3] is None) != (b[3] is None):
        return a[3] is not None
    if a[3] is None:
        return False
    far = datetime.max.replace(tzinfo=UTC)
    a_exp = _aware(a[4]) if a[4] else far
    b_exp = _aware(b[4]) if b[4] else far
    if a_exp != b_exp:
        return a_exp > b_exp
    return _LEVEL_RANK[a[3].lower()] > _LEVEL_RANK[b[3].lower()]


class AllowListPublisher:
    """Signs and publishes lists on a connection of its own; re-publishes before expiry."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        key: Ed25519PrivateKey,
        *,
        schedule: bool = True,
    ) -> None:
        """`schedule=False`: publish only when asked (an ingest worker); the hub itself keeps
        the lists fresh before they expire."""
        self.schedule = schedule
        self.settings = settings
        self.engine = engine
        self.key = key
        self.ttl = timedelta(hours=settings.allowlist_ttl_hours)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = hub_client(settings, f"{settings.mqtt_client_id}-acl")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a: self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the allow-list publisher: %s", reason_code)
            return
        self._connected.set()

    def start(self) -> None:
        self._client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self._client.loop_start()
        if not self.schedule:
            return
        self._thread = threading.Thread(
            target=self._schedule, name="allowlist-schedule", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def _schedule(self) -> None:
        # Publish as soon as connected, then well before the lists expire.
        period = max(60.0, self.ttl.total_seconds() / 4)
        while not self._stop.is_set():
            if self._connected.wait(1):
                try:
                    self.publish()
                except Exception:
                    log.exception("publishing allow-lists failed; will retry")
                    self._stop.wait(10)
                    continue
                self._stop.wait(period)

    def send_command(self, site: str, machine: str, name: str, args: dict[str, Any]) -> None:
        """A hub -> agent command (QoS 1) on this connection."""
        command = Command(ts=datetime.now(UTC), cmd=CommandName(name), args=args)
        payload = sign_command(command, machine, self.key)  # agents refuse unsigned commands
        self._client.publish(topic(site, machine, TopicKind.CMD), payload, qos=1)

    def publish(self, machine_codes: list[str] | None = None, timeout: float = 10) -> int:
        """Build, sign and publish the lists of these machines (all when None)."""
        now = datetime.now(UTC)
        with self._lock, Session(self.engine) as session:
            query = select(Machine)
            if machine_codes is not None:
                query = query.where(Machine.code.in_(machine_codes))  # type: ignore[attr-defined]
            machines = session.exec(query).all()
            messages = []
            for machine in machines:
                body = allowlist_body(session, machine, now=now, ttl=self.ttl)
                messages.append(
                    (topic(machine.site, machine.code, TopicKind.ACL), sign_body(body, self.key))
                )
            session.commit()
        infos = [self._client.publish(t, p, qos=1, retain=True) for t, p in messages]
        for info in infos:
            try:
                info.wait_for_publish(timeout=timeout)
            except (RuntimeError, ValueError):
                log.warning("allow-list not yet acknowledged by the broker; paho will retry")
        log.info("published %d allow-list(s)", len(messages))
        return len(messages)


def publish_once(
    settings: Settings,
    engine: Engine,
    key: Ed25519PrivateKey,
    machine_codes: list[str] | None = None,
    timeout: float = 10,
) -> int:
    """Connect, publish these machines' lists (all when None), disconnect. Used by commands
    that change who may use what, so the change reaches the machines within seconds."""
    publisher = AllowListPublisher(settings, engine, key)
    # A synchronous connect: a broker that is down is reported at once, not after a timeout.
    publisher._client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
    publisher._client.loop_start()
    try:
        if not publisher._connected.wait(timeout):
            raise ConnectionError(
                f"the broker at {settings.mqtt_host}:{settings.mqtt_port} did not accept the hub"
            )
        return publisher.publish(machine_codes, timeout=timeout)
    finally:
        publisher._client.disconnect()
        publisher._client.loop_stop()
