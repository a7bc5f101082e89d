"""Build, sign and publish each machine's allow-list, retained on its ./acl topic."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.settings import Settings
from hub.models import Badge, Machine, MachineType, Member, MemberStatus, Training
from protocol.allowlist import AllowEntry, AllowList, sign_allowlist
from protocol.envelope import DenyReason
from protocol.topics import TopicKind, topic

log = logging.getLogger(__name__)

_LEVEL_RANK = {"user": 0, "trainer": 1, "maintainer": 2}


def build_allowlist(
    session: Session, machine: Machine, *, now: datetime, ttl: timedelta, bump_version: bool = True
) -> AllowList:
    """Every active badge of every current member, with the holder's training for the machine's
    type; members without a valid one are listed with a `block` so the machine can say why.

    One query of exactly the columns needed (the list is rebuilt whenever something changes,
    for lists of thousands of members), and entries built from our own rows without
    revalidating each one.
    """
    mtype = session.get(MachineType, machine.machine_type_id)
    assert mtype is not None
    rows = session.execute(
        select(
            Badge.uid,
            Member.ref,
            Member.status,
            Training.level,  # type: ignore[call-overload]
            Training.expires_at,
            Training.supervised_only,
        )
        .join(Member, Badge.member_id == Member.id)
        .outerjoin(
            Training,
            (Training.member_id == Member.id)
            & (Training.machine_type_id == machine.machine_type_id),
        )
        .where(Badge.revoked_at.is_(None))  # type: ignore[union-attr]
        .where(Member.status != MemberStatus.LEFT)
        .order_by(Badge.uid)
    ).all()
    best: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        current = best.get(row[0])
        if current is None or _better(row, current):
            best[row[0]] = row
    entries: list[AllowEntry] = []
    for uid, ref, status, level, expires, supervised in best.values():
        block: DenyReason | None = None
        if status != MemberStatus.ACTIVE:
            block = DenyReason.MEMBER_INACTIVE
        elif level is None:
            block = DenyReason.NOT_TRAINED
        entries.append(
            AllowEntry.model_construct(
                badge=uid,
                member=ref,
                level=level.value if level else "user",
                supervised_only=bool(supervised),
                block=block,
                training_expires_at=_aware(expires) if expires else None,
            )
        )
    if bump_version:
        machine.acl_version += 1
        session.add(machine)
    return AllowList(
        site=machine.site,
        machine=machine.code,
        machine_type=mtype.code,
        version=max(1, machine.acl_version),
        issued_at=now,
        expires_at=now + ttl,
        locked=machine.locked,
        lock_reason=machine.lock_reason,
        entries=entries,
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
    return _LEVEL_RANK[a[3].value] > _LEVEL_RANK[b[3].value]


class AllowListPublisher:
    """Signs and publishes lists on a connection of its own; re-publishes before expiry."""

    def __init__(self, settings: Settings, engine: Engine, key: Ed25519PrivateKey) -> None:
        self.settings = settings
        self.engine = engine
        self.key = key
        self.ttl = timedelta(hours=settings.allowlist_ttl_hours)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        v5 = settings.mqtt_protocol == "5"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{settings.mqtt_client_id}-acl",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        if settings.mqtt_username:
            self._client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        if settings.mqtt_tls_ca:
            self._client.tls_set(ca_certs=str(settings.mqtt_tls_ca))
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
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the allow-list publisher: %s", reason_code)
            return
        self._connected.set()

    def start(self) -> None:
        self._client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self._client.loop_start()
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
                allowlist = build_allowlist(session, machine, now=now, ttl=self.ttl)
                messages.append(
                    (
                        topic(machine.site, machine.code, TopicKind.ACL),
                        sign_allowlist(allowlist, self.key),
                    )
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
