"""Offline-first agents on a real Mosquitto with the real hub ingest and allow-list publisher."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from edge.agent import Agent
from edge.config import parse_config
from edge.hardware.sim_reader import request
from edge.journal import Journal
from hub.allowlist import AllowListPublisher
from hub.core.db import make_engine, migrate
from hub.core.security import load_or_create_signing_key
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.consumer import IngestConsumer
from hub.models import AgentSeq, Badge, Event, Machine, MachineSession
from hub.services.allowlists import build_allowlist
from protocol.allowlist import public_key_b64, sign_allowlist
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import Proc, wait_until

HUGO = "04C3D4E5"  # trained on laser and printer in the demo data


@dataclass
class Hub:
    engine: Engine
    consumer: IngestConsumer
    publisher: AllowListPublisher
    key: Ed25519PrivateKey
    broker: MosquittoBroker
    tmp: Path

    def agent_config(self, machine: str, **extra: object) -> dict:
        user, password = self.broker.agent_credentials(machine)
        return {
            "agent": {
                "site": "lab",
                "machine": machine,
                "state_dir": str(self.tmp / machine),
                "hub_public_key": public_key_b64(self.key.public_key()),
                "heartbeat_s": 2,
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
            **extra,
        }

    def events(self, machine: str) -> list[Event]:
        with Session(self.engine) as session:
            return list(session.exec(select(Event).where(Event.machine == machine)).all())


@pytest.fixture
def hub(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[Hub]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    settings = get_settings(
        None,
        data_dir=tmp_path / "hub",
        database_url=url,
        site="lab",
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_username=mosquitto.hub_user,
        mqtt_password=mosquitto.hub_password,
    )
    key = load_or_create_signing_key(settings.data_dir)
    consumer = IngestConsumer(settings, engine)
    publisher = AllowListPublisher(settings, engine, key)
    consumer.start()
    wait_until(lambda: consumer.connected, timeout=10, what="the hub ingest to connect")
    publisher.start()
    wait_until(lambda: publisher.connected, timeout=10, what="the publisher to connect")
    publisher.publish()
    try:
        yield Hub(engine, consumer, publisher, key, mosquitto, tmp_path)
    finally:
        publisher.stop()
        consumer.stop()
        engine.dispose()


def started_agent(hub: Hub, machine: str) -> Agent:
    agent = Agent(parse_config(hub.agent_config(machine)))
    agent.start()
    wait_until(
        lambda: agent.state()["acl_version"],
        timeout=15,
        what=f"{machine} to receive its allow-list",
    )
    return agent


def test_offline_taps_are_decided_locally_and_replayed_once_in_order(hub: Hub) -> None:
    agents = [started_agent(hub, "laser-1"), started_agent(hub, "printer-1")]
    try:
        hub.broker.stop()
        wait_until(
            lambda: not any(a.state()["connected"] for a in agents),
            timeout=15,
            what="the agents to notice the broker is gone",
        )
        decisions = []
        for i in range(200):
            decisions.append(agents[i % 2].tap(HUGO)["decision"])
        # Badge in, badge out, again: every tap decided from the cached list.
        assert decisions == ["granted", "granted", "ended", "ended"] * 50
        produced = {a.config.agent.machine: a.state()["backlog"] for a in agents}
        assert all(count >= 150 for count in produced.values()), produced
        hub.broker.start()
        for agent in agents:
            machine = agent.config.agent.machine
            wait_until(
                lambda a=agent: a.state()["backlog"] == 0,
                timeout=60,
                what=f"{machine} to replay its journal",
            )
        for agent in agents:
            machine = agent.config.agent.machine
            journal_ids = _journal_ids(hub.tmp / machine / "journal.sqlite3")
            wait_until(
                lambda m=machine, j=journal_ids: len(hub.events(m)) == len(j),
                timeout=30,
                what=f"the hub to hold every event of {machine}",
            )
            stored = sorted(hub.events(machine), key=lambda e: e.seq)
            assert [str(e.id) for e in stored] == journal_ids  # same events, none twice
            assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
            assert [e.ts for e in stored] == sorted(e.ts for e in stored)
            taps = [e for e in stored if e.type in ("badge.granted", "session.ended")]
            assert len(taps) == 100
        with Session(hub.engine) as session:
            assert all(row.missing == 0 for row in session.exec(select(AgentSeq)))
            sessions = session.exec(select(MachineSession)).all()
            assert len(sessions) == 100 and all(s.end_reason == "badge-out" for s in sessions)
    finally:
        for agent in agents:
            agent.stop()


def _journal_ids(path: Path) -> list[str]:
    journal = Journal(path, "x")
    try:
        with journal._lock:  # a read of the whole journal, for the test only
            rows = journal._db.execute("SELECT id FROM event ORDER BY seq").fetchall()
        return [r[0] for r in rows]
    finally:
        journal.close()


def test_sigkill_mid_session_recovers_with_agent_restart(hub: Hub, tmp_path: Path) -> None:
    config = tmp_path / "laser-1.toml"
    cfg = hub.agent_config("laser-1")
    config.write_text(_toml(cfg))
    socket = Path(cfg["agent"]["state_dir"]) / "sim-reader.sock"

    def run() -> Proc:
        proc = Proc(["edge", "run", "--config", str(config)], log=tmp_path / "agent.log")
        try:
            wait_until(
                lambda: request(socket, {"op": "state"})["acl_version"],
                timeout=30,
                what="the agent to be ready",
                proc=proc,
            )
        except BaseException:
            proc.stop()
            raise
        return proc

    proc = run()
    assert request(socket, {"op": "tap", "uid": HUGO})["relay_pin"] == 1
    wait_until(
        lambda: any(e.type == "session.started" for e in hub.events("laser-1")),
        timeout=15,
        what="the session start at the hub",
    )
    proc.kill()
    proc = run()
    try:
        state = request(socket, {"op": "state"})
        assert state["relay_pin"] == 0 and state["session"] is None
        journal_ids = set(_journal_ids(Path(cfg["agent"]["state_dir"]) / "journal.sqlite3"))
        wait_until(
            lambda: {str(e.id) for e in hub.events("laser-1")} == journal_ids,
            timeout=30,
            what="every journaled event at the hub",
        )
        with Session(hub.engine) as session:
            (closed,) = session.exec(select(MachineSession)).all()
        assert closed.end_reason == "agent-restart" and closed.ended_at is not None
        # The relay stays open until a new badge.
        assert request(socket, {"op": "tap", "uid": HUGO})["decision"] == "granted"
    finally:
        proc.signal(signal.SIGTERM)
        proc.stop()


def _toml(cfg: dict) -> str:
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def test_lists_from_another_key_expired_or_older_are_refused(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    agent = started_agent(hub, "laser-1")
    caplog.set_level(logging.WARNING, logger="edge.agent")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="forger")
    client.username_pw_set(hub.broker.hub_user, hub.broker.hub_password)
    client.connect(hub.broker.host, hub.broker.port)
    client.loop_start()
    try:
        version = agent.state()["acl_version"]
        now = datetime.now(UTC)
        with Session(hub.engine) as session:
            machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
            base = build_allowlist(
                session, machine, now=now, ttl=timedelta(days=1), bump_version=False
            )
        cases = {
            "bad_signature": sign_allowlist(
                base.model_copy(update={"version": version + 5}), Ed25519PrivateKey.generate()
            ),
            "expired": sign_allowlist(
                base.model_copy(
                    update={
                        "version": version + 6,
                        "issued_at": now - timedelta(days=3),
                        "expires_at": now - timedelta(days=2),
                    }
                ),
                hub.key,
            ),
            "stale": sign_allowlist(base.model_copy(update={"version": version}), hub.key),
        }
        for reason, payload in cases.items():
            client.publish(
                "atelier/v1/lab/laser-1/acl", payload, qos=1, retain=True
            ).wait_for_publish(timeout=5)
            wait_until(
                lambda r=reason: f"allow-list refused ({r})" in caplog.text or r == "stale",
                timeout=10,
                what=f"refusal {reason}",
            )
        assert agent.state()["acl_version"] == version
        assert "allow-list refused (bad_signature)" in caplog.text
        assert "allow-list refused (expired)" in caplog.text
        assert agent.tap(HUGO)["decision"] == "granted"  # the good list is still in force
    finally:
        client.loop_stop()
        client.disconnect()
        agent.stop()


def test_a_revoked_badge_is_refused_once_the_new_list_arrives(hub: Hub) -> None:
    agent = started_agent(hub, "laser-1")
    try:
        assert agent.tap(HUGO)["decision"] == "granted"
        assert agent.tap(HUGO)["decision"] == "ended"
        version = agent.state()["acl_version"]
        with Session(hub.engine) as session:
            badge = session.exec(select(Badge).where(Badge.uid == HUGO)).one()
            badge.revoked_at = datetime.now(UTC)
            session.add(badge)
            session.commit()
        hub.publisher.publish(["laser-1"])
        wait_until(
            lambda: agent.state()["acl_version"] > version,
            timeout=10,
            what="the new list at the agent",
        )
        reply = agent.tap(HUGO)
        assert reply["decision"] == "denied" and reply["reason"] == "unknown_badge"
        assert reply["relay_pin"] == 0
    finally:
        agent.stop()
