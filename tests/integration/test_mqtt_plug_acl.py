"""A machine's smart-plug topic, set through the machines API, reaches the broker's accounts:
`atelier hub mqtt-credentials` lets that agent (and no other) read the plug, and gives the plug
an account of its own that may publish that topic and nothing else, on a real Mosquitto."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlmodel import Session, select
from typer.testing import CliRunner, Result

from atelier_cli import app as cli
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.errors import Conflict, InvalidValue
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import Machine, Role
from hub.services.broker_accounts import Account, acl_text, check_plug_topic
from tests.support.api import bearer, role_tokens
from tests.support.mosquitto import MOSQUITTO_HINT, MosquittoBroker, find_binary
from tests.support.processes import wait_until

PLUG = "tele/plug-laser/SENSOR"  # Tasmota: tele/<topic>/SENSOR
PRINTER_PLUG = "shellies/printer-1/relay/0/power"  # Shelly Gen1
REFUSED = [
    "",
    "tele/plug laser/SENSOR",  # Mosquitto reads an ACL line up to the first blank
    "tele/plug/SENSOR\nuser laser-1\ntopic readwrite #",  # lines of one's own
    "tele/+/SENSOR",
    "#",
    "atelier/v1/lab/printer-1/cmd",  # another machine's commands
    "atelier",
    "$SYS/broker/clients",
    "tele/plügé/SENSOR",
    "x" * 201,
]


def test_a_plug_topic_is_one_exact_topic_outside_ateliers_tree() -> None:
    for topic in (PLUG, "shelly-laser/status/switch:0", "shellies/laser/relay/0/power"):
        assert check_plug_topic(topic) == topic
    for topic in REFUSED:
        with pytest.raises(ValueError):
            check_plug_topic(topic)
    # A row written behind the API's back is refused when the ACL is written, not copied.
    bad = Account(username="laser-1", site="lab", machine="laser-1", plug_topic="a\ntopic #")
    with pytest.raises(InvalidValue, match="machine laser-1's plug topic") as stored:
        acl_text("hub", [bad])
    assert stored.value.code == "broker.plug_topic_stored"


def test_an_account_name_is_never_given_twice() -> None:
    # Machine "plug-laser-1"'s agent would share the name of laser-1's plug.
    laser = Account(username="laser-1", site="lab", machine="laser-1", plug_topic=PLUG)
    clash = Account(username="plug-laser-1", site="lab", machine="plug-laser-1")
    with pytest.raises(Conflict, match="'plug-laser-1' would be both"):
        acl_text("hub", [laser, clash])
    with pytest.raises(Conflict, match="'laser-1' would be both the hub"):
        acl_text("laser-1", [laser])
    blocks = [b.splitlines() for b in acl_text("hub", [laser]).split("\n\n") if b.strip()]
    assert ["user plug-laser-1", f"topic write {PLUG}"] in blocks


def client(
    broker: MosquittoBroker,
    user: str,
    password: str,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    client_id: str | None = None,
) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or user,
        protocol=protocol,
    )
    c.username_pw_set(user, password)
    return c


def credentials(passwd: Path, acl: Path, agents: Path) -> Result:
    return CliRunner().invoke(
        cli,
        [
            "hub",
            "mqtt-credentials",
            "--password-file",
            str(passwd),
            "--acl-file",
            str(acl),
            "--secrets-dir",
            str(agents),
        ],
    )


def test_the_agent_reads_its_plug_and_the_plug_writes_nothing_else(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if find_binary("mosquitto") is None:
        pytest.skip(MOSQUITTO_HINT)
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    tokens = role_tokens(engine)
    admin = bearer(tokens[Role.ADMIN])
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with TestClient(create_app(settings, start_ingest=False)) as api:
        for topic in REFUSED:
            refused = api.patch(
                "/api/v1/machines/laser-1", json={"plug_topic": topic}, headers=admin
            )
            assert refused.status_code == 422, topic
        made = api.post(
            "/api/v1/machines",
            json={
                "code": "laser-2",
                "name": "Laser 2",
                "site": "lab",
                "machine_type": "laser",
                "plug_topic": "shellies/laser-2/relay/0/power",
            },
            headers=admin,
        )
        assert made.status_code == 201, made.text
        assert made.json()["plug_topic"] == "shellies/laser-2/relay/0/power"
        cleared = api.patch("/api/v1/machines/laser-2", json={"plug_topic": None}, headers=admin)
        assert cleared.status_code == 200 and cleared.json()["plug_topic"] is None
        set_ = api.patch("/api/v1/machines/laser-1", json={"plug_topic": PLUG}, headers=admin)
        assert set_.status_code == 200, set_.text
        assert set_.json()["plug_topic"] == PLUG and set_.json()["agent_id"] == "laser-1"
        printer = {"plug_topic": PRINTER_PLUG}
        assert api.patch("/api/v1/machines/printer-1", json=printer, headers=admin).is_success
        # Other changes leave it alone.
        api.patch("/api/v1/machines/laser-1", json={"location": "Workshop"}, headers=admin)
        # Only those who may change them see the admin fields; the others get no such key.
        assert api.get("/api/v1/machines/laser-1", headers=admin).json()["plug_topic"] == PLUG
        listed = {m["code"]: m for m in api.get("/api/v1/machines", headers=admin).json()}
        assert listed["laser-1"]["plug_topic"] == PLUG and "agent_id" in listed["cnc-1"]
        for role in (Role.MEMBER, Role.TRAINER, Role.MAINTAINER, Role.MANAGER):
            other = bearer(tokens[role])
            for answer in (
                api.get("/api/v1/machines/laser-1", headers=other).json(),
                *api.get("/api/v1/machines", headers=other).json(),
            ):
                assert "plug_topic" not in answer and "agent_id" not in answer, role
                assert answer["code"]  # a machine all the same
        locked = api.post(
            "/api/v1/machines/laser-1/lock",
            json={"reason": "lens"},
            headers=bearer(tokens[Role.MAINTAINER]),
        )
        assert locked.status_code == 200 and "plug_topic" not in locked.json()
    with Session(engine) as session:
        topics = {m.code: m.plug_topic for m in session.exec(select(Machine))}
    engine.dispose()
    assert topics["laser-1"] == PLUG and topics["laser-2"] is None

    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_MQTT_USERNAME", "hub")
    monkeypatch.setenv("ATELIER_MQTT_PASSWORD", "hub-secret")
    passwd, acl, agents = tmp_path / "passwd", tmp_path / "acl", tmp_path / "agents"
    result = credentials(passwd, acl, agents)
    assert result.exit_code == 0, result.output
    assert "2 plug account(s)" in result.output
    laser_secret = agents / "plug-laser-1.mqtt-password"
    assert (
        f"plug of laser-1: MQTT user plug-laser-1, may publish {PLUG} only; "
        f"password in {laser_secret}"
    ) in result.output
    assert laser_secret.stat().st_mode & 0o777 == 0o600
    assert not (agents / "plug-laser-2.mqtt-password").exists()  # its topic was cleared
    blocks = {b.splitlines()[0]: b for b in acl.read_text().split("\n\n") if b.strip()}
    assert f"topic read {PLUG}" in blocks["user laser-1"]
    assert sum(f"topic read {PLUG}" in b for b in blocks.values()) == 1
    assert blocks["user plug-laser-1"].splitlines() == ["user plug-laser-1", f"topic write {PLUG}"]
    assert blocks["user plug-printer-1"].splitlines()[1:] == [f"topic write {PRINTER_PLUG}"]
    assert {line.split(":")[0] for line in passwd.read_text().splitlines()} >= {
        "plug-laser-1",
        "plug-printer-1",
    }
    # Generated once, like the agents': a re-run keeps the password the plug was given.
    password = laser_secret.read_text()
    assert credentials(passwd, acl, agents).exit_code == 0
    assert laser_secret.read_text() == password

    broker = MosquittoBroker(tmp_path / "broker", password_file=passwd, acl_file=acl)
    broker.start()
    heard: dict[str, list[str]] = {"laser-1": [], "printer-1": [], "hub": []}
    subscriptions = {
        "laser-1": [PLUG, PRINTER_PLUG, "atelier/v1/lab/laser-1/cmd"],
        "printer-1": [PLUG, PRINTER_PLUG, "atelier/v1/lab/printer-1/cmd"],
        "hub": ["atelier/v1/#"],
    }
    clients: list[mqtt.Client] = []

    def connect(c: mqtt.Client) -> mqtt.Client:
        c.connect(broker.host, broker.port)
        c.loop_start()
        clients.append(c)
        return c

    try:
        for name, wanted in subscriptions.items():
            secret = agents / f"{name}.mqtt-password"
            reader = client(
                broker, name, "hub-secret" if name == "hub" else secret.read_text().strip()
            )
            subscribed = threading.Event()
            reader.on_message = lambda c, u, m, name=name: heard[name].append(m.topic)
            reader.on_subscribe = lambda c, u, mid, codes, p, ev=subscribed: ev.set()
            connect(reader)
            reader.subscribe([(t, 1) for t in wanted])
            assert subscribed.wait(5), name
        # As a Tasmota plug connects: MQTT 3.1.1, its LWT on a topic it may not write.
        plug = client(
            broker,
            "plug-laser-1",
            laser_secret.read_text().strip(),
            MQTTProtocolVersion.MQTTv311,
        )
        plug.will_set("tele/plug-laser/LWT", b"Offline", qos=1, retain=True)
        connect(plug)
        for forged in (
            PRINTER_PLUG,  # another machine's plug
            "atelier/v1/lab/laser-1/event",  # its own machine's events
            "atelier/v1/lab/laser-1/cmd",  # a command to its own agent
            "atelier/v1/lab/printer-1/cmd",
        ):
            plug.publish(forged, b'{"ENERGY": {"Power": 0}}', qos=1).wait_for_publish(5)
        plug.publish(PLUG, b'{"ENERGY": {"Power": 812}}', qos=1).wait_for_publish(timeout=5)
        # Then a message each reader may read: once it is in, the plug's would have been too.
        hub = connect(client(broker, "hub", "hub-secret", client_id="hub-writer"))
        markers = ["atelier/v1/lab/laser-1/cmd", "atelier/v1/lab/printer-1/cmd"]
        for marker in markers:
            hub.publish(marker, b"marker", qos=1).wait_for_publish(5)
        wait_until(
            lambda: (
                all(any(t.endswith("/cmd") for t in got) for got in heard.values())
                and len(heard["hub"]) >= len(markers)
            ),
            timeout=5,
            what="the markers at both agents and the hub",
        )
        assert heard["laser-1"] == [PLUG, "atelier/v1/lab/laser-1/cmd"]
        assert heard["printer-1"] == ["atelier/v1/lab/printer-1/cmd"]  # not the laser's plug
        assert heard["hub"] == markers  # nothing the plug sent under atelier/
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        broker.stop()
