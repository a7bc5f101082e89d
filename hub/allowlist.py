"""The allow-list publisher, a worker the runtime starts: signs each machine's list (built by
hub/services/allowlists.py) and publishes it, retained on its ./acl topic, before it expires."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.mqtt import hub_client
from hub.core.settings import Settings
from hub.models import Machine
from hub.services.allowlists import allowlist_body
from protocol.allowlist import sign_body
from protocol.commands import sign_command
from protocol.messages import Command, CommandName
from protocol.topics import TopicKind, topic

log = logging.getLogger(__name__)


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
