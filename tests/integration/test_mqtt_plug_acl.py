"""A machine's smart-plug topic, set through the machines API, reaches its broker account:
`atelier hub mqtt-credentials` lets that agent (and no other) read the plug on a real Mosquitto."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app as cli
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.models import Machine, Role
from hub.mqtt_accounts import Account, acl_text, check_plug_topic, mosquitto_hash
from hub.seed import seed_demo
from tests.support.api import bearer, role_tokens
from tests.support.mosquitto import MOSQUITTO_HINT, MosquittoBroker, find_binary
from tests.support.processes import wait_until

PLUG = "tele/plug-laser/SENSOR"  # Tasmota: tele/<topic>/SENSOR
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
    with pytest.raises(ValueError, match="machine laser-1"):
        acl_text("hub", [bad])


def client(broker: MosquittoBroker, user: str, password: str) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=user,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    c.username_pw_set(user, password)
    return c


def test_the_agent_reads_its_plug_and_no_other_account_does(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if find_binary("mosquitto") is None:
        pytest.skip(MOSQUITTO_HINT)
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    admin = bearer(role_tokens(engine)[Role.ADMIN])
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
        cleared = api.patch("/api/v1/machines/laser-2", json={"plug_topic": None}, headers=admin)
        assert cleared.status_code == 200
        set_ = api.patch("/api/v1/machines/laser-1", json={"plug_topic": PLUG}, headers=admin)
        assert set_.status_code == 200, set_.text
        # Other changes leave it alone.
        api.patch("/api/v1/machines/laser-1", json={"location": "Workshop"}, headers=admin)
    with Session(engine) as session:
        topics = {m.code: m.plug_topic for m in session.exec(select(Machine))}
    engine.dispose()
    assert topics["laser-1"] == PLUG and topics["laser-2"] is None

    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_MQTT_USERNAME", "hub")
    monkeypatch.setenv("ATELIER_MQTT_PASSWORD", "hub-secret")
    passwd, acl, agents = tmp_path / "passwd", tmp_path / "acl", tmp_path / "agents"
    result = CliRunner().invoke(
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
    assert result.exit_code == 0, result.output
    blocks = {b.splitlines()[0]: b for b in acl.read_text().split("\n\n") if b.strip()}
    assert f"topic read {PLUG}" in blocks["user laser-1"]
    assert sum(f"topic read {PLUG}" in b for b in blocks.values()) == 1

    # The plug's own account is kept by hand beside the generated files (it is no machine).
    with passwd.open("a") as handle:
        handle.write(f"plug-laser:{mosquitto_hash('plug-secret')}\n")
    with acl.open("a") as handle:
        handle.write(f"\nuser plug-laser\ntopic write {PLUG}\n")

    broker = MosquittoBroker(tmp_path / "broker", password_file=passwd, acl_file=acl)
    broker.start()
    heard: dict[str, list[str]] = {"laser-1": [], "printer-1": []}
    readers: list[mqtt.Client] = []
    plug = hub = None
    try:
        for name in heard:
            reader = client(broker, name, (agents / f"{name}.mqtt-password").read_text().strip())
            subscribed = threading.Event()
            reader.on_message = lambda c, u, m, name=name: heard[name].append(m.topic)
            reader.on_subscribe = lambda c, u, mid, codes, p, ev=subscribed: ev.set()
            reader.connect(broker.host, broker.port)
            reader.loop_start()
            readers.append(reader)
            reader.subscribe([(PLUG, 1), (f"atelier/v1/lab/{name}/cmd", 1)])
            assert subscribed.wait(5), name
        plug = client(broker, "plug-laser", "plug-secret")
        plug.connect(broker.host, broker.port)
        plug.loop_start()
        plug.publish(PLUG, b'{"ENERGY": {"Power": 812}}', qos=1).wait_for_publish(timeout=5)
        # Then a message each reader may read: once it is in, the plug's would have been too.
        hub = client(broker, "hub", "hub-secret")
        hub.connect(broker.host, broker.port)
        hub.loop_start()
        for name in heard:
            hub.publish(f"atelier/v1/lab/{name}/cmd", b"marker", qos=1).wait_for_publish(5)
        wait_until(
            lambda: all(any(t.endswith("/cmd") for t in got) for got in heard.values()),
            timeout=5,
            what="the markers at both agents",
        )
        assert heard["laser-1"] == [PLUG, "atelier/v1/lab/laser-1/cmd"]
        assert heard["printer-1"] == ["atelier/v1/lab/printer-1/cmd"]  # not the laser's plug
    finally:
        for c in [*readers, plug, hub]:
            if c is not None:
                c.loop_stop()
                c.disconnect()
        broker.stop()
