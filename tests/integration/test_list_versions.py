"""A revoked badge stays revoked: list versions survive a restore, refusals are seen, commands
are not replayed, and the tail of an agent's events is asked for again.

Real Mosquitto, real hub ingest and publisher on SQLite and PostgreSQL, real agents.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from edge.agent import Agent
from edge.config import parse_config
from hub.allowlist import AllowListPublisher
from hub.allowlist_watch import AllowListWatch
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.security import load_or_create_signing_key
from hub.core.settings import Settings, get_settings
from hub.demo.seed import seed_demo
from hub.gaps import GapRepairer
from hub.ingest.consumer import IngestConsumer
from hub.models import AgentSeq, Badge, Event, Machine, Role, User
from hub.services.allowlists import allowlist_body, build_allowlist
from hub.services.machine_views import machines_public
from protocol.allowlist import public_key_b64, sign_allowlist
from protocol.commands import sign_command
from protocol.messages import Command, CommandName
from tests.deploy.test_backup import run_backup
from tests.e2e.web import sign_in
from tests.support.api import PASSWORD, bearer, role_tokens
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import wait_until

HUGO = "04C3D4E5"  # trained on laser and printer in the demo data

# who reads the machines in these tests: staff, who see names whatever the lab's setting
STAFF = User(username="manager", password_hash="-", role=Role.MANAGER)


@dataclass
class Hub:
    """The hub's ingest and publisher over one database; stopped and started like the hub."""

    url: str
    settings: Settings
    key: Ed25519PrivateKey
    broker: MosquittoBroker
    tmp: Path
    engine: Engine = field(init=False)
    consumer: IngestConsumer = field(init=False)
    publisher: AllowListPublisher = field(init=False)

    def start(self) -> None:
        self.engine = make_engine(self.url)
        self.consumer = IngestConsumer(self.settings, self.engine)
        self.publisher = AllowListPublisher(self.settings, self.engine, self.key, schedule=False)
        self.consumer.start()
        wait_until(lambda: self.consumer.connected, timeout=10, what="the hub ingest to connect")
        self.publisher.start()
        wait_until(lambda: self.publisher.connected, timeout=10, what="the publisher to connect")
        self.publisher.publish()

    def stop(self) -> None:
        self.publisher.stop()
        self.consumer.stop()
        self.engine.dispose()

    def agent(self, machine: str = "laser-1") -> Agent:
        user, password = self.broker.agent_credentials(machine)
        agent = Agent(
            parse_config(
                {
                    "agent": {
                        "site": "lab",
                        "machine": machine,
                        "state_dir": str(self.tmp / machine),
                        "hub_public_key": public_key_b64(self.key.public_key()),
                        "heartbeat_s": 1,
                    },
                    "mqtt": {
                        "host": self.broker.host,
                        "port": self.broker.port,
                        "username": user,
                        "password": password,
                    },
                    "gpio": {"pin_factory": "mock"},
                    "relay": {"pin": 17},
                    "reader": {"type": "sim"},
                }
            )
        )
        agent.start()
        wait_until(lambda: agent.state()["connected"], timeout=15, what=f"{machine} to connect")
        return agent

    def machine(self, code: str = "laser-1") -> Machine:
        with Session(self.engine) as session:
            return session.exec(select(Machine).where(Machine.code == code)).one()

    def events(self, code: str = "laser-1") -> list[Event]:
        with Session(self.engine) as session:
            return list(session.exec(select(Event).where(Event.machine == code)).all())


@pytest.fixture
def hub(database_url: str, tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[Hub]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    settings = get_settings(
        None,
        data_dir=tmp_path / "hub",
        database_url=database_url,
        site="lab",
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_username=mosquitto.hub_user,
        mqtt_password=mosquitto.hub_password,
    )
    key = load_or_create_signing_key(settings.data_dir)
    rig = Hub(database_url, settings, key, mosquitto, tmp_path)
    rig.start()
    try:
        yield rig
    finally:
        rig.stop()


def test_a_badge_revoked_after_a_restore_is_refused(hub: Hub) -> None:
    agent = hub.agent()
    try:
        wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the first list")
        dest = hub.tmp / "backups"
        made = run_backup(
            ["backup", "--dest", str(dest)], url=hub.url, data_dir=hub.settings.data_dir
        )
        assert made.returncode == 0, made.stderr
        # The lists change after the backup: the agent holds a version the backup never saw.
        for _ in range(3):
            version = agent.state()["acl_version"]
            hub.publisher.publish(["laser-1"])
            wait_until(
                lambda v=version: agent.state()["acl_version"] > v, timeout=10, what="a new list"
            )
        held = agent.state()["acl_version"]
        assert hub.machine().acl_version == held

        # The hub is restored from the backup, as after a lost disk, and started again.
        hub.stop()
        (backup,) = dest.iterdir()
        restored = run_backup(["restore", str(backup)], url=hub.url, data_dir=hub.settings.data_dir)
        assert restored.returncode == 0, restored.stderr
        hub.start()
        assert hub.machine().acl_version > held  # issued after the agent's list, so newer
        wait_until(
            lambda: agent.state()["acl_version"] == hub.machine().acl_version,
            timeout=10,
            what="the restored hub's list at the agent",
        )
        assert agent.tap(HUGO)["decision"] == "granted"
        assert agent.tap(HUGO)["decision"] == "ended"

        # Hugo's badge is revoked on the restored hub: the machine refuses it.
        with Session(hub.engine) as session:
            badge = session.exec(select(Badge).where(Badge.uid == HUGO)).one()
            badge.revoked_at = datetime.now(UTC)
            session.add(badge)
            session.commit()
        version = agent.state()["acl_version"]
        hub.publisher.publish(["laser-1"])
        wait_until(lambda: agent.state()["acl_version"] > version, timeout=10, what="revocation")
        reply = agent.tap(HUGO)
        assert (reply["decision"], reply["reason"], reply["relay"]) == (
            "denied",
            "unknown_badge",
            "open",
        )
        assert agent.state()["acl_refused"] is None
    finally:
        agent.stop()


def test_a_refused_list_is_reported_shown_alerted_and_superseded(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent holds a list numbered above anything the hub now issues (a hub whose clock
    ran ahead, since restored): it refuses the hub's lists and says so, the hub shows it and,
    once the difference lasts, alerts and numbers the next list above the agent's."""
    agent = hub.agent()
    caplog.set_level(logging.INFO)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="ahead")
    client.username_pw_set(hub.broker.hub_user, hub.broker.hub_password)
    client.connect(hub.broker.host, hub.broker.port)
    client.loop_start()
    try:
        wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the first list")
        ahead = int((datetime.now(UTC) + timedelta(days=2)).timestamp() * 1000)
        now = datetime.now(UTC)
        with Session(hub.engine) as session:
            machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
            body = build_allowlist(
                session, machine, now=now, ttl=timedelta(days=1), bump_version=False
            )
        client.publish(
            "atelier/v1/lab/laser-1/acl",
            sign_allowlist(body.model_copy(update={"version": ahead}), hub.key),
            qos=1,
            retain=True,
        ).wait_for_publish(timeout=5)
        wait_until(lambda: agent.state()["acl_version"] == ahead, timeout=10, what="the list")

        # The hub has not heard this agent since (as after a restore): its ingest is held and
        # the report forgotten, so the next list is numbered from the hub's clock alone; the
        # agent's 1 s heartbeat would otherwise let the hub jump above it before the publish.
        hub.consumer.stop()
        with Session(hub.engine) as session:
            machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
            machine.last_status = {
                k: v for k, v in (machine.last_status or {}).items() if k != "acl_version"
            }
            session.add(machine)
            session.commit()
        hub.publisher.publish(["laser-1"])  # numbered from the hub's clock: below the agent's
        hub.consumer = IngestConsumer(hub.settings, hub.engine)
        hub.consumer.start()
        issued = hub.machine().acl_version
        assert issued < ahead
        wait_until(
            lambda: (hub.machine().last_status or {}).get("acl_refused") == "stale",
            timeout=10,
            what="the refusal in the agent's status",
        )
        assert agent.state()["acl_offered"] == issued
        assert f"allow-list refused (stale): allow-list version {issued}" in caplog.text
        with Session(hub.engine) as session:
            (shown,) = [
                m
                for m in machines_public(session, viewer=STAFF, members_see_names=False)
                if m.code == "laser-1"
            ]
        assert (shown.acl_current, shown.acl_refused) == (False, "stale")
        assert (shown.acl_version, shown.agent_acl_version) == (issued, ahead)

        moments = iter([now, now + timedelta(seconds=10), now + timedelta(seconds=31)] * 2)
        watch = AllowListWatch(
            hub.engine, hub.publisher.publish, settle_s=30, clock=lambda: next(moments)
        )
        assert watch.check_once() == []  # just seen: a list may be on its way
        assert watch.check_once() == []
        assert watch.check_once() == ["laser-1"]  # still behind after 30 s: alerted, re-sent
        assert watch.alerts == 1
        assert "machine laser-1 holds allow-list version" in caplog.text
        wait_until(
            lambda: agent.state()["acl_version"] > ahead,
            timeout=10,
            what="a list above the agent's",
        )
        wait_until(
            lambda: (
                (hub.machine().last_status or {}).get("acl_version") == hub.machine().acl_version
            ),
            timeout=10,
            what="the agent's report of the current list",
        )
        assert agent.state()["acl_refused"] is None
        with Session(hub.engine) as session:
            (shown,) = [
                m
                for m in machines_public(session, viewer=STAFF, members_see_names=False)
                if m.code == "laser-1"
            ]
        assert (shown.acl_current, shown.acl_refused) == (True, None)
        assert watch.check_once() == [] and watch.behind == []
    finally:
        client.loop_stop()
        client.disconnect()
        agent.stop()


def test_a_command_applied_before_a_restart_is_not_applied_again(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.agent")
    lock = sign_command(
        Command(ts=datetime.now(UTC), cmd=CommandName.LOCK, args={"reason": "captured"}),
        "laser-1",
        hub.key,
    )
    unlock = sign_command(
        Command(ts=datetime.now(UTC), cmd=CommandName.UNLOCK, args={"reason": "done"}),
        "laser-1",
        hub.key,
    )
    agent = hub.agent()
    try:
        hub.publisher._client.publish("atelier/v1/lab/laser-1/cmd", lock, qos=1)
        wait_until(lambda: agent.state()["locked"], timeout=10, what="the lock")
        hub.publisher._client.publish("atelier/v1/lab/laser-1/cmd", unlock, qos=1)
        wait_until(lambda: not agent.state()["locked"], timeout=10, what="the unlock")
    finally:
        agent.stop()
    agent = hub.agent()  # the same state directory: a restart
    try:
        # Someone who captured the lock command sends it again.
        hub.publisher._client.publish("atelier/v1/lab/laser-1/cmd", lock, qos=1)
        wait_until(
            lambda: "refused: already applied (a replay)" in caplog.text,
            timeout=10,
            what="the replay refused",
        )
        assert not agent.state()["locked"]
        assert agent.tap(HUGO)["decision"] == "granted"
    finally:
        agent.stop()


def test_events_lost_at_the_tail_are_asked_for_from_the_heartbeat(hub: Hub) -> None:
    agent = hub.agent()
    try:
        for _ in range(4):
            agent.tap(HUGO)
        wait_until(lambda: agent.state()["backlog"] == 0, timeout=10, what="all sent")
        last = agent.state()["last_seq"]
        wait_until(lambda: len(hub.events()) == last, timeout=10, what="all stored")
        # The broker acknowledged the last three and lost them before the hub had them: no
        # later event shows the hole.
        with Session(hub.engine) as session:
            session.execute(
                delete(Event).where(Event.machine == "laser-1", Event.seq > last - 3)  # type: ignore[arg-type]
            )
            row = session.exec(select(AgentSeq).where(AgentSeq.machine == "laser-1")).one()
            row.max_seq, row.seen = last - 3, row.seen - 3
            session.add(row)
            session.commit()
        wait_until(lambda: heartbeat(hub) == (last, 0), timeout=10, what="a heartbeat")
        repairer = GapRepairer(hub.engine, hub.publisher.send_command, settle_s=0)
        assert repairer.check_once() == 1
        wait_until(lambda: len(hub.events()) == last, timeout=15, what="the tail sent again")
        assert sorted(e.seq for e in hub.events()) == list(range(1, last + 1))
        with Session(hub.engine) as session:
            row = session.exec(select(AgentSeq).where(AgentSeq.machine == "laser-1")).one()
            assert (row.max_seq, row.missing) == (last, 0)
        assert repairer.check_once() == 0  # nothing left to ask for
    finally:
        agent.stop()


def heartbeat(hub: Hub) -> tuple[int | None, int | None]:
    """The last seq and backlog of the laser's last status as the hub stored it."""
    status = hub.machine().last_status or {}
    return status.get("last_seq"), status.get("backlog")


def test_a_tail_gap_waits_for_the_settle_time(hub: Hub) -> None:
    """A status can overtake its own last events: the tail is asked for only once the same
    hole has lasted the settle time."""
    agent = hub.agent()
    try:
        agent.tap(HUGO)
        wait_until(lambda: agent.state()["backlog"] == 0, timeout=10, what="all sent")
        last = agent.state()["last_seq"]
        wait_until(lambda: len(hub.events()) == last, timeout=10, what="all stored")
        with Session(hub.engine) as session:
            session.execute(delete(Event).where(Event.machine == "laser-1", Event.seq == last))  # type: ignore[arg-type]
            row = session.exec(select(AgentSeq).where(AgentSeq.machine == "laser-1")).one()
            row.max_seq, row.seen = last - 1, row.seen - 1
            session.add(row)
            session.commit()
        wait_until(lambda: heartbeat(hub) == (last, 0), timeout=10, what="a heartbeat")
        asked: list[tuple[str, str, str, dict[str, int]]] = []
        repairer = GapRepairer(hub.engine, lambda *a: asked.append(a), settle_s=0.5)
        assert repairer.check_once() == 0  # seen for the first time
        wait_until(lambda: repairer.check_once() == 1, timeout=5, what="the settle time")
        assert asked[-1] == ("lab", "laser-1", "sync", {"from_seq": last})
    finally:
        agent.stop()


def test_versions_rise_within_a_millisecond_and_jump_above_the_agents_report(
    database_url: str,
) -> None:
    """The rule as the database applies it (one UPDATE), on SQLite and PostgreSQL."""
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            seed_demo(session, site="lab")
        now, ttl = datetime(2026, 12, 7, 12, tzinfo=UTC), timedelta(hours=1)
        issued_ms = int(now.timestamp() * 1000)
        with Session(engine) as session:
            laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
            first = allowlist_body(session, laser, now=now, ttl=ttl)["version"]
            assert first == issued_ms  # the demo's small counter jumps to the time of issue
            assert allowlist_body(session, laser, now=now, ttl=ttl)["version"] == first + 1
            # The hub's clock went back an hour: the stored counter still rises.
            back = allowlist_body(session, laser, now=now - ttl, ttl=ttl)["version"]
            assert back == first + 2
            # The agent says it holds a list from a hub whose clock ran a day ahead.
            ahead = issued_ms + 86_400_000
            laser.last_status = {"acl_version": ahead}
            session.add(laser)
            session.flush()
            assert allowlist_body(session, laser, now=now, ttl=ttl)["version"] == ahead + 1
            session.commit()
        with Session(engine) as session:
            stored = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
            assert stored.acl_version == ahead + 1
    finally:
        engine.dispose()


def test_the_dashboard_the_api_and_metrics_show_a_machine_behind(
    database_url: str, tmp_path: Path
) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        for machine in session.exec(select(Machine)):
            machine.acl_version = 1_796_000_000_000
            machine.online = True
            behind = machine.code == "laser-1"
            machine.last_status = {
                "v": 1,
                "machine": machine.code,
                "state": "online",
                "acl_version": machine.acl_version + (5 if behind else 0),
                **({"acl_refused": "stale", "acl_offered": machine.acl_version} if behind else {}),
            }
            session.add(machine)
        session.commit()
    tokens = role_tokens(engine)
    engine.dispose()
    app = create_app(
        get_settings(None, database_url=database_url, data_dir=tmp_path), start_ingest=False
    )
    with TestClient(app) as client:
        machines = client.get("/api/v1/machines", headers=bearer(tokens[Role.MANAGER])).json()
        by_code = {m["code"]: m for m in machines}
        assert (by_code["laser-1"]["acl_current"], by_code["laser-1"]["acl_refused"]) == (
            False,
            "stale",
        )
        assert by_code["laser-1"]["agent_acl_version"] == 1_796_000_000_005
        assert by_code["printer-1"]["acl_current"] is True
        metrics = client.get("/metrics", headers=bearer(tokens[Role.MANAGER])).text
        assert 'atelier_machine_allowlist_current{machine="laser-1"} 0.0' in metrics
        assert 'atelier_machine_allowlist_current{machine="printer-1"} 1.0' in metrics

        sign_in(client, "test-manager", PASSWORD)
        english = client.get("/").text
        assert english.count("Allow-list not current") == 1
        assert "was the hub restored from a backup?" in english
        french = client.get("/", headers={"Accept-Language": "fr"}).text
        assert french.count("Liste d’accès pas à jour") == 1
        assert "le hub a-t-il été restauré depuis une sauvegarde ?" in french
