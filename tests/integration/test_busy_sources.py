"""Issue 5 item 2: a power plug (Tasmota, Shelly) or a Ruida controller makes the machine busy,
and the hub sees `machine.busy` / `machine.idle` and the busy time the same way for each."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from edge.agent import Agent
from edge.config import ConfigError, parse_config
from edge.integrations.busy import AnyBusy
from edge.integrations.power_meter import MeterState, PowerRules, advance, parse_watts
from edge.integrations.ruida import ACK, frame, swizzle, unswizzle
from hub.models import Badge, BusyPeriod, Event, Machine, Member
from tests.integration.test_agent_offline import HUGO, Hub, hub  # noqa: F401
from tests.support.mosquitto import MosquittoBroker
from tests.support.power_plug_sim import PowerPlugSim
from tests.support.processes import wait_until
from tests.support.ruida_sim import RuidaSim

# A machine's account may read its own plug (topic "<machine>-plug"); the plug account may
# publish as any plug firmware does.
PLUG_ACL = """
pattern read tele/%u-plug/SENSOR
pattern read %u-plug/status/#
pattern read shellies/%u-plug/#

user plug
topic write tele/#
topic write shellies/#
topic write +/status/#
"""

FAST_HYSTERESIS = {
    "busy_above_w": 100,
    "busy_after_s": 1.0,
    "idle_below_w": 30,
    "idle_after_s": 1.0,
    "telemetry_min_interval_s": 0,
}


def plug_account(broker: MosquittoBroker) -> tuple[str, str]:
    with open(broker.acl_file, "a") as acl:
        acl.write(PLUG_ACL)
    return broker.agent_credentials("plug")  # also makes the broker reload its ACL


def plug(broker: MosquittoBroker, kind: str, topic: str) -> PowerPlugSim:
    user, password = plug_account(broker)
    return PowerPlugSim(
        kind, topic, host=broker.host, port=broker.port, username=user, password=password
    )


class BrokerLog:
    """What the agents publish, as the hub would receive it."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.events: list[dict[str, Any]] = []
        self.telemetry: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self._client.username_pw_set(broker.hub_user, broker.hub_password)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *a: c.subscribe(
            [("atelier/v1/+/+/event", 1), ("atelier/v1/+/+/telemetry", 0)]
        )
        self._client.on_subscribe = lambda *a: subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert subscribed.wait(10), "the test's subscriber was not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self._lock:
            (self.events if msg.topic.endswith("/event") else self.telemetry).append(body)

    def of(self, type_: str, **data: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items())
            ]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def broker_log(mosquitto: MosquittoBroker) -> Iterator[BrokerLog]:
    log = BrokerLog(mosquitto)
    try:
        yield log
    finally:
        log.close()


def agent_on(broker: MosquittoBroker, tmp_path: Path, **sections: Any) -> Agent:
    """An agent for laser-1 on the test broker (no hub: its events are read on the broker)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.allowlist import public_key_b64

    user, password = broker.agent_credentials("laser-1")
    config = {
        "agent": {
            "site": "lab",
            "machine": "laser-1",
            "state_dir": str(tmp_path / "laser-1"),
            "hub_public_key": public_key_b64(Ed25519PrivateKey.generate().public_key()),
            "heartbeat_s": 2,
        },
        "mqtt": {"host": broker.host, "port": broker.port, "username": user, "password": password},
        "gpio": {"pin_factory": "mock"},
        "relay": {"pin": 17},
        "reader": {"type": "sim"},
        **sections,
    }
    agent = Agent(parse_config(config))
    agent.start()
    wait_until(lambda: agent.state()["connected"], timeout=10, what="the agent to connect")
    return agent


# -- the rules, without a broker -------------------------------------------------------------

RULES = PowerRules(
    busy_above_w=100, busy_after_s=2, idle_below_w=30, idle_after_s=3, silent_after_s=10
)


def run_readings(readings: list[tuple[float, float | None]]) -> list[tuple[float, str]]:
    """Feed (time, watts or None for a tick) and list the changes with their time."""
    state, seen = MeterState(last_heard=0.0), []
    for at, watts in readings:
        state, changes = advance(state, RULES, at, watts)
        seen += [(at, c) for c in changes]
    return seen


def test_spikes_and_dips_shorter_than_the_hold_times_do_not_flap() -> None:
    readings: list[tuple[float, float | None]] = [(0, 5)]
    # A motor start spike every 3 s, each gone within 1 s: never busy.
    for start in (1, 4, 7):
        readings += [(start, 900), (start + 0.5, None), (start + 1, 5), (start + 1.5, None)]
    # Working: above 100 W from t=10, with a dip below 30 W for 1 s at t=14 (under 3 s).
    readings += [(10, 800), (11, 750), (12, None), (13, 820), (14, 10), (15, 810), (16, None)]
    # In the band (between 30 and 100 W) counts as neither: still busy at t=22.
    readings += [(17, 60), (22, None)]
    # Below 30 W for 3 s: idle.
    readings += [(23, 4), (25, 4), (25.9, None), (26, None)]
    assert run_readings(readings) == [(0, "online"), (12, "busy"), (26, "idle")]


def test_a_silent_plug_is_reported_and_taken_as_idle_and_one_never_heard_too() -> None:
    seen = run_readings([(0, 500), (2, 500), (11.9, None), (12, None), (13, 5)])
    assert seen == [(0, "online"), (2, "busy"), (12, "offline"), (12, "idle"), (13, "online")]
    assert run_readings([(9.9, None), (10, None), (30, None)]) == [(10, "offline")]


def test_each_plug_format_gives_its_watts_and_anything_else_none() -> None:
    from tests.support.power_plug_sim import shelly_gen1_power, shelly_gen2_switch, tasmota_sensor

    assert parse_watts("tasmota", tasmota_sensor(812)) == 812
    assert parse_watts("tasmota", b'{"ENERGY": {"Power": [3, 640]}}', channel=1) == 640
    assert parse_watts("shelly-gen2", shelly_gen2_switch(81.25)) == pytest.approx(81.2, abs=0.1)
    assert parse_watts("shelly-gen1", shelly_gen1_power(12.5)) == 12.5
    for kind, payload in [
        ("tasmota", b'{"AM2301": {"Temperature": 21.5}}'),  # a sensor plug without metering
        ("tasmota", b"not json"),
        ("shelly-gen2", b'{"apower": "lots"}'),
        ("shelly-gen2", b'{"apower": -3}'),
        ("shelly-gen1", b"\xff\xfe"),
        ("tasmota", b"[1, 2]"),
    ]:
        assert parse_watts(kind, payload) is None, payload  # type: ignore[arg-type]


def test_the_machine_is_busy_while_any_source_says_so() -> None:
    sources = AnyBusy()
    assert sources.update("gpio", True) is True
    assert sources.update("power", True) is True
    assert sources.update("gpio", False) is True  # the plug still draws power
    assert sources.update("power", False) is False
    assert sources.update("ruida", False) is False


def test_ruida_framing_matches_the_bytes_seen_on_the_wire() -> None:
    # With the RDC644x key, an ACK (0xCC) travels as 0xC6 and a refusal (0xCD) as 0x46.
    assert swizzle(bytes([ACK, 0xCD])) == b"\xc6\x46"
    assert unswizzle(swizzle(bytes(range(256)), 0x11), 0x11) == bytes(range(256))
    datagram = frame(b"\xda\x00\x04\x11")
    assert int.from_bytes(datagram[:2], "big") == sum(datagram[2:])
    assert datagram[2:] == swizzle(b"\xda\x00\x04\x11")


# -- bad config ------------------------------------------------------------------------------


def test_bad_busy_source_config_names_the_field_and_the_fix(tmp_path: Path) -> None:
    from tests.support.edge import offline_config

    with pytest.raises(ConfigError) as caught:
        offline_config(
            tmp_path / "state",
            [],
            power_meter={"kind": "tasmota", "topic": "laser-plug", "idle_below_w": 500},
            ruida={"host": "laser.lan", "port": 70000, "magic": "0x88", "poll_s": 2},
        )
    errors = "\n".join(caught.value.errors)
    assert "power_meter: idle_below_w (500 W) must not be above busy_above_w (50 W)" in errors
    assert "ruida.port" in errors and "ruida.magic" in errors
    assert "ruida.poll_s: unknown field" in errors and "poll_interval_s" in errors
    with pytest.raises(ConfigError) as caught:
        offline_config(tmp_path / "state", [], power_meter={"kind": "tasmota", "topic": "a/+/b"})
    assert caught.value.errors[0].startswith("power_meter.topic: 'a/+/b' is not a plug topic")
    assert "wildcards" in caught.value.errors[0]
    with pytest.raises(ConfigError) as caught:
        offline_config(tmp_path / "state", [], power_meter={"kind": "sonoff", "topic": "p"})
    assert "power_meter.kind" in caught.value.errors[0]
    assert "'tasmota', 'shelly-gen2' or 'shelly-gen1'" in caught.value.errors[0]


def test_check_config_refuses_a_bad_plug_section_with_exit_2(tmp_path: Path) -> None:
    from tests.support.edge import offline_config

    good = offline_config(tmp_path / "state", [])
    path = tmp_path / "laser-1.toml"
    path.write_text(
        f"""
[agent]
site = "lab"
machine = "laser-1"
state_dir = "{tmp_path / "state"}"
hub_public_key = "{good.agent.hub_public_key}"
[gpio]
pin_factory = "mock"
[relay]
pin = 17
[reader]
type = "sim"
[power_meter]
kind = "tasmota"
topic = "laser-plug"
busy_after = 5
[power_meter.broker]
port = 1883
"""
    )
    result = CliRunner().invoke(app, ["edge", "check-config", str(path)])
    assert result.exit_code == 2, result.output
    assert "power_meter.busy_after: unknown field" in result.output
    assert "busy_after_s" in result.output  # among the allowed ones
    assert "power_meter.broker.host: required field is missing" in result.output
    assert "Traceback" not in result.output


# -- plugs on a real broker ------------------------------------------------------------------


def busy_periods(at: Hub, source: str) -> list[BusyPeriod]:
    with Session(at.engine) as session:
        return list(session.exec(select(BusyPeriod).where(BusyPeriod.source == source)))


def test_a_tasmota_plug_makes_the_laser_busy_and_the_hub_bills_it_to_the_member(
    hub: Hub,  # noqa: F811 - the fixture imported above
) -> None:
    sim = plug(hub.broker, "tasmota", "laser-1-plug")
    config = hub.agent_config(
        "laser-1",
        power_meter={"kind": "tasmota", "topic": "laser-1-plug", **FAST_HYSTERESIS},
    )
    agent = Agent(parse_config(config))
    agent.start()
    try:
        wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the allow-list")
        assert agent.tap(HUGO)["decision"] == "granted"
        spikes = [(0.2, 900.0), (0.6, 5.0)] * 3
        sim.play([(0.6, 5.0), *spikes, (3.0, 800.0)], then=4.0)
        wait_until(lambda: agent.state()["busy"], timeout=15, what="the laser busy")
        wait_until(lambda: not agent.state()["busy"], timeout=15, what="the laser idle")
        sim.silence()
        periods = wait_until(
            lambda: [p for p in busy_periods(hub, "power") if p.ended_at is not None],
            timeout=15,
            what="the busy period at the hub",
        )
        with Session(hub.engine) as session:
            hugo = session.exec(select(Member).join(Badge).where(Badge.uid == HUGO)).one()
            busy_events = session.exec(
                select(Event).where(Event.machine == "laser-1", Event.type == "machine.busy")
            ).all()
            laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        # The spikes made no busy period of their own: one period, of the 3 s at 800 W.
        assert len(periods) == 1 and len(busy_events) == 1
        assert busy_events[0].data["source"] == "power"
        assert periods[0].member_ref == hugo.ref
        assert periods[0].busy_s is not None and 2.0 <= periods[0].busy_s <= 4.5
        assert laser.last_telemetry is not None and "power_w" in laser.last_telemetry
    finally:
        agent.stop()
        sim.close()


@pytest.mark.parametrize("kind", ["shelly-gen2", "shelly-gen1"])
def test_a_shelly_plug_on_the_labs_broker(
    mosquitto: MosquittoBroker, broker_log: BrokerLog, tmp_path: Path, kind: str
) -> None:
    sim = plug(mosquitto, kind, "laser-1-plug")
    agent = agent_on(
        mosquitto,
        tmp_path,
        power_meter={"kind": kind, "topic": "laser-1-plug", **FAST_HYSTERESIS},
    )
    try:
        sim.play([(0.4, 2.0), (2.5, 450.0), (2.0, 1.0)])
        wait_until(
            lambda: broker_log.of("machine.idle", source="power"),
            timeout=20,
            what="busy, then idle",
        )
        assert len(broker_log.of("machine.busy", source="power")) == 1
        watts = [t["values"].get("power_w") for t in broker_log.telemetry]
        assert 450.0 in watts
    finally:
        agent.stop()
        sim.close()


def test_a_plug_on_its_own_broker_through_its_own_client(
    mosquitto: MosquittoBroker,
    broker_log: BrokerLog,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    plugs_broker = MosquittoBroker(tmp_path_factory.mktemp("plugs-broker"))
    plugs_broker.start()
    try:
        sim = plug(plugs_broker, "shelly-gen2", "laser-1-plug")
        reader, password = plugs_broker.agent_credentials("laser-1")  # may read laser-1-plug/...
        broker = {"host": plugs_broker.host, "port": plugs_broker.port, "username": reader}
        agent = agent_on(
            mosquitto,
            tmp_path,
            power_meter={
                "kind": "shelly-gen2",
                "topic": "laser-1-plug",
                **FAST_HYSTERESIS,
                "broker": {**broker, "password": password},
            },
        )
        try:
            sim.play([(2.5, 300.0)], then=0.0)
            wait_until(
                lambda: broker_log.of("machine.idle", source="power"), timeout=20, what="idle"
            )
            assert len(broker_log.of("machine.busy", source="power")) == 1
        finally:
            agent.stop()
            sim.close()
    finally:
        plugs_broker.stop()


def test_a_plug_gone_silent_is_reported_and_ends_the_busy_period(
    mosquitto: MosquittoBroker, broker_log: BrokerLog, tmp_path: Path
) -> None:
    sim = plug(mosquitto, "tasmota", "laser-1-plug")
    agent = agent_on(
        mosquitto,
        tmp_path,
        power_meter={
            "kind": "tasmota",
            "topic": "laser-1-plug",
            **FAST_HYSTERESIS,
            "silent_after_s": 2.0,
        },
    )
    try:
        sim.play([], then=700.0)
        wait_until(lambda: agent.state()["busy"], timeout=15, what="the machine busy")
        sim.silence()  # unplugged mid-job
        offline = wait_until(
            lambda: broker_log.of("incident.reported", kind="source-offline"),
            timeout=15,
            what="the silent plug reported",
        )
        assert offline[0]["data"]["source"] == "power"
        assert "laser-1-plug" in offline[0]["data"]["note"]
        wait_until(lambda: broker_log.of("machine.idle", source="power"), timeout=5, what="idle")
        assert not agent.state()["busy"]
        sim.play([], then=3.0)
        wait_until(
            lambda: broker_log.of("incident.reported", kind="source-online"),
            timeout=15,
            what="the plug back",
        )
        assert len(broker_log.of("incident.reported", kind="source-offline")) == 1
    finally:
        agent.stop()
        sim.close()


def test_the_beam_input_and_a_plug_together_make_one_busy_period(
    mosquitto: MosquittoBroker, broker_log: BrokerLog, tmp_path: Path, mock_factory: Any
) -> None:
    """The laser's fire signal stops first; the plug (the chiller, the fan) a little later."""
    sim = plug(mosquitto, "shelly-gen1", "laser-1-plug")
    user, password = mosquitto.agent_credentials("laser-1")
    from tests.support.edge import offline_config

    config = offline_config(
        tmp_path / "laser-1",
        [],
        mqtt={
            "host": mosquitto.host,
            "port": mosquitto.port,
            "username": user,
            "password": password,
        },
        busy_input={"pin": 22, "bounce_s": 0},
        power_meter={"kind": "shelly-gen1", "topic": "laser-1-plug", **FAST_HYSTERESIS},
    )
    agent = Agent(config, pin_factory=mock_factory)
    agent.start()
    try:
        wait_until(lambda: agent.state()["connected"], timeout=10, what="the agent to connect")
        fire = mock_factory.pin(22)
        sim.play([], then=600.0)
        wait_until(lambda: agent.state()["busy"], timeout=15, what="busy from the plug")
        fire.drive_high()
        time.sleep(0.5)
        fire.drive_low()
        time.sleep(0.5)
        assert agent.state()["busy"], "the fire input stopped, but the plug still draws power"
        sim.play([], then=2.0)
        wait_until(lambda: broker_log.of("machine.idle"), timeout=15, what="idle")
        assert len(broker_log.of("machine.busy")) == 1
        assert broker_log.of("machine.idle")[0]["data"]["source"] == "power"
    finally:
        agent.stop()
        sim.close()


# -- a Ruida controller ----------------------------------------------------------------------


def test_the_ruida_simulator_refuses_a_bad_checksum() -> None:
    with RuidaSim() as sim, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        good = frame(b"\xda\x00\x04\x11")
        bad = bytes([good[0], good[1] ^ 0x01]) + good[2:]
        sock.sendto(bad, ("127.0.0.1", sim.port))
        assert unswizzle(sock.recv(64)) == b"\xcd"
        sock.sendto(good, ("127.0.0.1", sim.port))
        assert unswizzle(sock.recv(64)) == bytes([ACK])
        reply = unswizzle(sock.recv(64))
        assert reply[:4] == b"\xda\x01\x04\x11" and sim.bad_checksums == 1


def test_a_ruida_job_makes_the_laser_busy_with_beam_seconds_at_the_hub(
    hub: Hub,  # noqa: F811 - the fixture imported above
) -> None:
    with RuidaSim(laser_on_s=7200) as sim:
        config = hub.agent_config(
            "laser-1",
            ruida={
                "host": "127.0.0.1",
                "port": sim.port,
                "source_port": 0,
                "poll_interval_s": 0.2,
                "timeout_s": 0.3,
                "silent_after_s": 1.5,
                "telemetry_min_interval_s": 0,
            },
        )
        agent = Agent(parse_config(config))
        agent.start()
        try:
            wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the allow-list")
            assert agent.tap(HUGO)["decision"] == "granted"
            sim.start_job()
            wait_until(lambda: agent.state()["busy"], timeout=10, what="the laser busy")
            time.sleep(2.5)
            sim.end_job()
            wait_until(lambda: not agent.state()["busy"], timeout=10, what="the laser idle")
            period = wait_until(
                lambda: [p for p in busy_periods(hub, "ruida") if p.ended_at is not None],
                timeout=15,
                what="the busy period at the hub",
            )[0]
            assert period.busy_s is not None and 2.0 <= period.busy_s <= 4.5

            def beam_seconds() -> dict[str, Any] | None:
                with Session(hub.engine) as session:
                    laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
                t = laser.last_telemetry or {}
                return t if t.get("job_running") is False and "beam_s_total" in t else None

            telemetry = wait_until(beam_seconds, timeout=10, what="beam seconds at the hub")
            assert telemetry["beam_s_total"] == sim.laser_on_s >= 7202
            assert 2 <= telemetry["beam_s_job"] <= 4

            sim.silent = True  # the controller switched off
            wait_until(
                lambda: [
                    e
                    for e in hub.events("laser-1")
                    if e.type == "incident.reported" and e.data.get("kind") == "source-offline"
                ],
                timeout=15,
                what="the silent controller reported at the hub",
            )
            sim.silent = False
            wait_until(
                lambda: [
                    e
                    for e in hub.events("laser-1")
                    if e.type == "incident.reported" and e.data.get("kind") == "source-online"
                ],
                timeout=15,
                what="the controller back",
            )
        finally:
            agent.stop()
