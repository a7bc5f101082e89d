"""`atelier hub mqtt-credentials` against a real Mosquitto using the files it writes."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlmodel import Session
from typer.testing import CliRunner, Result

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from tests.support.mosquitto import MosquittoBroker, find_binary
from tests.support.processes import wait_until

runner = CliRunner()


def client(broker: MosquittoBroker, user: str, password: str, name: str) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=name,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    c.username_pw_set(user, password)
    return c


def demo_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The demo machines at site lab in a SQLite hub, and the CLI's settings for it."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", url)
    monkeypatch.setenv("ATELIER_MQTT_USERNAME", "hub")
    monkeypatch.setenv("ATELIER_MQTT_PASSWORD", "hub-secret")
    return url


def credentials(tmp_path: Path, *extra: str) -> Result:
    """`atelier hub mqtt-credentials` writing passwd, acl and agents/ under tmp_path."""
    return runner.invoke(
        app,
        [
            "hub",
            "mqtt-credentials",
            "--password-file",
            str(tmp_path / "passwd"),
            "--acl-file",
            str(tmp_path / "acl"),
            "--secrets-dir",
            str(tmp_path / "agents"),
            *extra,
        ],
    )


def test_each_agent_is_confined_to_its_own_topics(tmp_path: Path, monkeypatch) -> None:
    if find_binary("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    demo_lab(tmp_path, monkeypatch)
    passwd, acl, agents = tmp_path / "passwd", tmp_path / "acl", tmp_path / "agents"
    result = credentials(tmp_path)
    assert result.exit_code == 0, result.output
    assert "4 agent account(s)" in result.output
    assert passwd.stat().st_mode & 0o777 == 0o640
    assert (agents / "laser-1.mqtt-password").stat().st_mode & 0o777 == 0o600
    assert "hub-secret" not in passwd.read_text()

    broker = MosquittoBroker(tmp_path / "broker", password_file=passwd, acl_file=acl)
    broker.start()
    try:
        heard: list[str] = []
        got = threading.Event()
        hub = client(broker, "hub", "hub-secret", "hub")
        hub.on_message = lambda c, u, m: (heard.append(m.topic), got.set())
        hub.connect(broker.host, broker.port)
        hub.subscribe("atelier/v1/+/+/event", qos=1)
        hub.loop_start()
        laser_password = (agents / "laser-1.mqtt-password").read_text().strip()
        laser = client(broker, "laser-1", laser_password, "laser-1")
        laser.connect(broker.host, broker.port)
        laser.loop_start()
        try:
            own = laser.publish("atelier/v1/lab/laser-1/event", b"own", qos=1)
            own.wait_for_publish(timeout=5)
            assert got.wait(5) and heard == ["atelier/v1/lab/laser-1/event"]
            forged = laser.publish("atelier/v1/lab/printer-1/event", b"forged", qos=1)
            forged.wait_for_publish(timeout=5)
            marker = laser.publish("atelier/v1/lab/laser-1/event", b"after", qos=1)
            marker.wait_for_publish(timeout=5)
            wait_until(lambda: len(heard) >= 2, timeout=5, what="the marker at the hub")
            # The broker dropped the forged message: the hub heard only laser-1's own topic.
            assert heard == ["atelier/v1/lab/laser-1/event"] * 2
        finally:
            laser.loop_stop()
            laser.disconnect()
            hub.loop_stop()
            hub.disconnect()
        answers: list[mqtt.ReasonCode] = []
        intruder = client(broker, "laser-1", "a guess", "intruder")
        intruder.on_connect = lambda c, u, f, rc, p: answers.append(rc)
        intruder.connect(broker.host, broker.port)
        intruder.loop_start()
        try:
            wait_until(lambda: answers, timeout=5, what="the broker's answer to a bad password")
            assert answers[0].is_failure
        finally:
            intruder.loop_stop()
    finally:
        broker.stop()

    # Re-running keeps every password, unless asked to rotate one.
    before = (agents / "laser-1.mqtt-password").read_text()
    runner.invoke(
        app,
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
    assert (agents / "laser-1.mqtt-password").read_text() == before
    runner.invoke(
        app,
        [
            "hub",
            "mqtt-credentials",
            "--password-file",
            str(passwd),
            "--acl-file",
            str(acl),
            "--secrets-dir",
            str(agents),
            "--rotate",
            "laser-1",
        ],
    )
    assert (agents / "laser-1.mqtt-password").read_text() != before


def test_a_gone_machines_password_is_deleted_and_never_handed_to_its_successor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlmodel import select

    from hub.models import Machine

    engine = make_engine(demo_lab(tmp_path, monkeypatch))
    passwd, agents = tmp_path / "passwd", tmp_path / "agents"

    def write(*extra: str) -> str:
        result = credentials(tmp_path, *extra)
        assert result.exit_code == 0, result.output
        return result.output

    write("--bridge-site", "annexe")
    laser = (agents / "laser-1.mqtt-password").read_text()
    old_printer = (agents / "printer-2.mqtt-password").read_text()
    assert (agents / "bridge-annexe.mqtt-password").exists()

    with Session(engine) as session:  # printer-2 is given away
        session.delete(session.exec(select(Machine).where(Machine.code == "printer-2")).one())
        session.commit()
    output = write()
    assert (
        "deleted the kept password of 1 account(s) no longer in the machines table: printer-2"
        in output
    )
    assert not (agents / "printer-2.mqtt-password").exists()
    assert "printer-2:" not in passwd.read_text()
    assert (agents / "laser-1.mqtt-password").read_text() == laser  # the others untouched
    # A bridge's password is kept, though this run left the annexe out: named again, the
    # annexe's broker gets its bridge account back with the password it has.
    assert (agents / "bridge-annexe.mqtt-password").exists()
    assert "deleted" not in write()  # nothing more to delete

    # A new machine named printer-2 gets a password of its own, not the old Pi's.
    with Session(engine) as session:
        seed_demo(session, site="lab")
        session.commit()
    write()
    assert (agents / "printer-2.mqtt-password").read_text() != old_printer
    engine.dispose()
