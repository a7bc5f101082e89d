"""End to end: a real Mosquitto, `atelier hub serve` and `atelier edge run` as processes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session, select

from edge.hardware.sim_reader import request
from hub.core.db import make_engine, migrate
from hub.demo.seed import UNTRAINED_BADGE, seed_demo
from hub.models import Badge, DeadLetter, Event, MachineSession, Member
from protocol import EventType, encode_envelope, new_envelope
from tests.support.api import admin_headers
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import Proc, atelier_command, wait_until

TRAINED_ON_LASER = "04C3D4E5"  # Hugo Petit, a laser user in the demo data


@dataclass
class Lab:
    hub: Proc
    agent: Proc
    agent_config: Path
    socket: Path
    http: str
    database_url: str
    broker: MosquittoBroker
    headers: dict[str, str]

    def rows(self, model: type) -> list:
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as session:
                return list(session.exec(select(model)).all())
        finally:
            engine.dispose()


@pytest.fixture
def lab(tmp_path: Path, mosquitto: MosquittoBroker, database_url: str) -> Iterator[Lab]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    headers = admin_headers(database_url)
    settings = HubSettings(tmp_path / "hub", database_url, "lab", mosquitto)
    public_key = settings.public_key()
    user, password = mosquitto.agent_credentials("laser-1")
    config = tmp_path / "laser-1.toml"
    config.write_text(f"""
[agent]
site = "lab"
machine = "laser-1"
machine_type = "laser"
state_dir = "{tmp_path / "agent"}"
hub_public_key = "{public_key}"
heartbeat_s = 2
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
username = "{user}"
[gpio]
pin_factory = "mock"
[relay]
pin = 17
[reader]
type = "sim"
""")
    hub = start_hub(settings, log=tmp_path / "hub.log")
    agent = None
    try:
        agent = Proc(
            ["edge", "run", "--config", str(config)],
            log=tmp_path / "agent.log",
            env={"ATELIER_EDGE_MQTT_PASSWORD": password},
        )
        socket = tmp_path / "agent" / "sim-reader.sock"
        wait_until(
            lambda: request(socket, {"op": "state"})["acl_version"],
            timeout=30,
            what="the agent to receive its signed allow-list",
            proc=agent,
        )
        yield Lab(hub, agent, config, socket, settings.url, database_url, mosquitto, headers)
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()


def tap_cli(lab: Lab, uid: str) -> dict:
    out = subprocess.run(
        [*atelier_command(), "edge", "tap", "--config", str(lab.agent_config), "--uid", uid],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_trained_and_untrained_badges_end_to_end(lab: Lab) -> None:
    assert request(lab.socket, {"op": "state"})["relay_pin"] == 0

    denied = tap_cli(lab, UNTRAINED_BADGE)
    assert denied["decision"] == "denied" and denied["reason"] == "not_trained"
    assert request(lab.socket, {"op": "state"})["relay_pin"] == 0

    granted = tap_cli(lab, TRAINED_ON_LASER)
    assert granted["decision"] == "granted"
    state = request(lab.socket, {"op": "state"})
    assert state["relay_pin"] == 1 and state["session"]["badge"] == TRAINED_ON_LASER

    # The hub sees the machine in use, by whom.
    def in_use() -> bool:
        laser = next(
            m
            for m in httpx.get(f"{lab.http}/api/v1/machines", headers=lab.headers).json()
            if m["code"] == "laser-1"
        )
        return laser["state"] == "in_use" and laser["in_use_by"] == "Hugo Petit"

    wait_until(in_use, timeout=15, what="the dashboard to show laser-1 in use", proc=lab.hub)

    ended = tap_cli(lab, TRAINED_ON_LASER)
    assert ended["decision"] == "ended" and ended["reason"] == "badge-out"
    assert request(lab.socket, {"op": "state"})["relay_pin"] == 0

    def stored_session() -> MachineSession | None:
        rows = [s for s in lab.rows(MachineSession) if s.ended_at is not None]
        return rows[0] if rows else None

    session = wait_until(
        stored_session, timeout=15, what="the session in the hub database", proc=lab.hub
    )
    members = {m.id: m for m in lab.rows(Member)}
    hugo = next(members[b.member_id] for b in lab.rows(Badge) if b.uid == TRAINED_ON_LASER)
    assert session.member_ref == hugo.ref and session.machine == "laser-1"
    assert session.end_reason == "badge-out" and session.duration_s is not None
    types = sorted(e.type for e in lab.rows(Event))
    assert types == sorted(
        ["agent.started", "badge.denied", "badge.granted", "session.started", "session.ended"]
    )
    denied_event = next(e for e in lab.rows(Event) if e.type == "badge.denied")
    assert denied_event.data["reason"] == "not_trained" and denied_event.seq == 2
    api = httpx.get(
        f"{lab.http}/api/v1/sessions", params={"machine": "laser-1"}, headers=lab.headers
    ).json()
    assert [s["id"] for s in api] == [session.id]
    assert httpx.get(f"{lab.http}/openapi.json").json()["info"]["title"] == "Atelier hub"


def test_duplicates_are_stored_once_and_garbage_becomes_dead_letters(lab: Lab) -> None:
    user, password = lab.broker.agent_credentials("laser-1")
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="test-publisher"
    )
    client.username_pw_set(user, password)
    client.connect(lab.broker.host, lab.broker.port)
    client.loop_start()
    try:
        topic = "atelier/v1/lab/laser-1/event"
        envelope = encode_envelope(
            new_envelope(
                machine="laser-1",
                type=EventType.INCIDENT_REPORTED,
                seq=10_000,
                data={"source": "test", "note": "delivered twice"},
            )
        )
        for payload in (envelope, envelope, b"this is not json", b'{"v": 1, "what": "no"}'):
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
    finally:
        client.loop_stop()
        client.disconnect()
    wait_until(
        lambda: len(lab.rows(DeadLetter)) == 2, timeout=15, what="two dead letters", proc=lab.hub
    )
    reasons = sorted(d.reason for d in lab.rows(DeadLetter))
    assert reasons == ["missing_field", "not_json"]
    incidents = [e for e in lab.rows(Event) if e.type == "incident.reported"]
    assert len(incidents) == 1
    # The ingest goes on after garbage: a new tap is stored.
    assert tap_cli(lab, TRAINED_ON_LASER)["decision"] == "granted"
    wait_until(
        lambda: any(e.type == "session.started" for e in lab.rows(Event)),
        timeout=15,
        what="the next session after the garbage",
        proc=lab.hub,
    )
    stats = httpx.get(f"{lab.http}/api/v1/ingest/stats", headers=lab.headers).json()
    assert stats["duplicates"] >= 1 and stats["dead_letters"] == 2
    metrics = httpx.get(f"{lab.http}/metrics", headers=lab.headers).text
    assert "atelier_ingest_dead_letters_total 2.0" in metrics
    assert "atelier_broker_connected 1.0" in metrics


def test_agent_stop_opens_the_relay_and_the_hub_sees_it_offline(lab: Lab) -> None:
    assert tap_cli(lab, TRAINED_ON_LASER)["relay_pin"] == 1
    assert lab.agent.stop() == 0

    def offline() -> bool:
        laser = next(
            m
            for m in httpx.get(f"{lab.http}/api/v1/machines", headers=lab.headers).json()
            if m["code"] == "laser-1"
        )
        return laser["state"] == "offline"

    wait_until(offline, timeout=15, what="laser-1 offline on the hub", proc=lab.hub)
    # The session was closed on the way out, not left open.
    wait_until(
        lambda: any(s.end_reason == "shutdown" for s in lab.rows(MachineSession)),
        timeout=15,
        what="the session closed with reason shutdown",
        proc=lab.hub,
    )
    # The sim socket is gone with the agent: nothing can tap a stopped machine.
    assert not lab.socket.exists()
