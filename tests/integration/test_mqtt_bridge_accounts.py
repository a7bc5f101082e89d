"""`atelier hub mqtt-credentials --bridges` on a regional broker: each site's bridge account.

Real Mosquittos on loopback: a regional broker running only on the files the command writes,
a site broker bridged to it with deploy/mosquitto/bridge.conf.j2 and the generated password,
and a rogue site broker using the same account but bridging the whole atelier/v1/# tree. The
bridge delivers its own site's events and receives its own site's allow-lists; what it sends
into another site's tree, or as an allow-list of its own site, the hub never hears; another
site's allow-lists never reach it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlmodel import Session, select
from typer.testing import CliRunner, Result

from atelier_cli import app as cli
from hub.core.db import make_engine, migrate
from hub.core.errors import Conflict, InvalidValue
from hub.demo.seed import seed_demo
from hub.models import Machine
from hub.services.broker_accounts import BridgeAccount, acl_text, bridge_accounts
from tests.support.bridge import site_broker
from tests.support.mosquitto import MOSQUITTO_HINT, MosquittoBroker, find_binary
from tests.support.processes import wait_until

HUB_PASSWORD = "hub-secret"


def credentials(tmp_path: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        cli,
        [
            "hub",
            "mqtt-credentials",
            "--password-file",
            str(tmp_path / "passwd"),
            "--acl-file",
            str(tmp_path / "acl"),
            "--secrets-dir",
            str(tmp_path / "secrets"),
            *extra,
        ],
    )


@pytest.fixture
def two_sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The demo machines at site north, printer-1 moved to site south; the CLI's settings."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="north")
        printer = session.exec(select(Machine).where(Machine.code == "printer-1")).one()
        printer.site = "south"
        session.add(printer)
        session.commit()
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", url)
    monkeypatch.setenv("ATELIER_MQTT_USERNAME", "hub")
    monkeypatch.setenv("ATELIER_MQTT_PASSWORD", HUB_PASSWORD)
    yield url


def test_a_bridge_account_is_its_sites_streams_out_and_its_acl_and_cmd_in() -> None:
    assert bridge_accounts(["south", "north", "north"]) == [
        BridgeAccount("bridge-north", "north"),
        BridgeAccount("bridge-south", "south"),
    ]
    blocks = [b.splitlines() for b in acl_text("hub", [], bridge_accounts(["north"])).split("\n\n")]
    assert [
        "user bridge-north",
        "topic write atelier/v1/north/+/event",
        "topic write atelier/v1/north/+/telemetry",
        "topic write atelier/v1/north/+/status",
        "topic read atelier/v1/north/+/acl",
        "topic read atelier/v1/north/+/cmd",
    ] in blocks
    for site in ("North", "north/#", "+", "", "a b"):
        with pytest.raises(InvalidValue, match="is not a site id") as refused:
            bridge_accounts([site])
        assert refused.value.field == "bridge_site"  # the flag: --bridge-site
    with pytest.raises(Conflict, match="'bridge-north' would be both the hub"):
        acl_text("bridge-north", [], bridge_accounts(["north"]))


def test_bridges_for_the_sites_of_the_machines_table_or_named(
    tmp_path: Path, two_sites: str
) -> None:
    out = tmp_path / "out"
    result = credentials(out, "--bridges", "--bridge-site", "east")
    assert result.exit_code == 0, result.output
    assert "3 bridge account(s)" in result.output
    for site in ("east", "north", "south"):
        secret = out / "secrets" / f"bridge-{site}.mqtt-password"
        assert f"MQTT user bridge-{site}," in result.output
        assert f"password in {secret} " in result.output
        assert secret.stat().st_mode & 0o777 == 0o600
        assert f"bridge-{site}:$7$" in (out / "passwd").read_text()
    assert "user bridge-south\n" in (out / "acl").read_text()
    # Kept on a re-run (also without --bridges for the named site), rotated when asked.
    north = (out / "secrets" / "bridge-north.mqtt-password").read_text()
    east = (out / "secrets" / "bridge-east.mqtt-password").read_text()
    assert credentials(out, "--bridge-site", "east").exit_code == 0
    assert "bridge-north" not in (out / "acl").read_text()  # not asked for: not written
    assert (out / "secrets" / "bridge-east.mqtt-password").read_text() == east
    assert credentials(out, "--bridges", "--rotate", "bridge-north").exit_code == 0
    assert (out / "secrets" / "bridge-north.mqtt-password").read_text() != north
    assert (out / "secrets" / "bridge-east.mqtt-password").read_text() == east
    # Without the options the output is as before: no bridge accounts.
    plain = credentials(tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    assert "bridge account" not in plain.output and "MQTT user bridge-" not in plain.output
    assert "user bridge-" not in (tmp_path / "plain" / "acl").read_text()


def test_a_bridge_name_taken_or_a_bad_site_writes_nothing(tmp_path: Path, two_sites: str) -> None:
    engine = make_engine(two_sites)
    with Session(engine) as session:
        laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        laser.agent_id = "bridge-south"  # would share south's bridge account
        session.add(laser)
        session.commit()
    engine.dispose()
    clash = credentials(tmp_path / "clash", "--bridges")
    assert clash.exit_code == 2
    assert "'bridge-south' would be both site south's bridge and machine laser-1's agent" in (
        clash.output
    )
    bad = credentials(tmp_path / "bad", "--bridge-site", "north/#")
    assert bad.exit_code == 2 and "--bridge-site: 'north/#' is not a site id" in bad.output
    for run in ("clash", "bad"):
        assert not (tmp_path / run).exists()  # no password, no ACL, no secret
    # Without --bridges the same machines are fine: the name is only taken with a bridge.
    assert credentials(tmp_path / "fine").exit_code == 0


class Listener:
    """A client recording (topic, payload) of what it receives on `filter`."""

    _ids = itertools.count()

    def __init__(self, broker: MosquittoBroker, user: str, password: str, filter: str) -> None:
        self.heard: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"listener-{next(self._ids)}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(filter, qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(5), f"no SUBACK from {broker.url}"

    def _on_message(self, c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.heard.append((message.topic, bytes(message.payload)))

    def has(self, topic: str, payload: bytes) -> bool:
        with self._lock:
            return (topic, payload) in self.heard

    def payloads(self) -> set[bytes]:
        with self._lock:
            return {payload for _, payload in self.heard}

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def bridged(site: Listener, hub: Listener, topic: str, name: str) -> bool:
    """Publish one more event at the site; true once any of them reached the hub."""
    site.publish(topic, f"{name}-up".encode())
    return hub.has(topic, f"{name}-up".encode())


def test_a_site_bridge_carries_its_own_site_and_nothing_else(
    tmp_path: Path, two_sites: str
) -> None:
    if find_binary("mosquitto") is None:
        pytest.skip(MOSQUITTO_HINT)
    result = credentials(tmp_path, "--bridges")
    assert result.exit_code == 0, result.output
    password = (tmp_path / "secrets" / "bridge-north.mqtt-password").read_text().strip()
    regional = MosquittoBroker(
        tmp_path / "regional", password_file=tmp_path / "passwd", acl_file=tmp_path / "acl"
    )
    north = site_broker(tmp_path / "north", "north", regional_port=regional.port, password=password)
    # A site broker holding north's bridge password but bridging every site's tree both ways.
    rogue = site_broker(tmp_path / "rogue", "north", regional_port=regional.port, password=password)
    config = rogue.config_file.read_text()
    assert "topic atelier/v1/north/# both 1" in config
    rogue.config_file.write_text(
        config.replace("topic atelier/v1/north/# both 1", "topic atelier/v1/# both 1").replace(
            "clientid atelier-north", "clientid atelier-rogue"
        )
    )
    started: list[MosquittoBroker | Listener] = []
    try:
        for broker in (regional, north, rogue):
            broker.start()
            started.append(broker)
        hub = Listener(regional, "hub", HUB_PASSWORD, "atelier/v1/#")
        started.append(hub)
        # On each site broker, a client with the site's all-topics account stands for its agents.
        sites = {
            name: Listener(broker, broker.hub_user, broker.hub_password, "atelier/v1/#")
            for name, broker in (("north", north), ("rogue", rogue))
        }
        started += sites.values()

        event = "atelier/v1/north/laser-1/event"
        for name, site in sites.items():
            # Both bridges connect with the generated account: their site's events reach the hub.
            wait_until(
                lambda site=site, name=name: bridged(site, hub, event, name),
                timeout=30,
                interval=0.5,
                what=f"the {name} bridge to the regional broker",
            )

        # The hub's allow-list for north crosses the bridge inwards; south's does not.
        north_acl, south_acl = "atelier/v1/north/laser-1/acl", "atelier/v1/south/printer-1/acl"
        hub.publish(south_acl, b"south-list", retain=True)
        hub.publish("atelier/v1/north/laser-1/cmd", b"north-cmd")
        hub.publish(north_acl, b"north-list", retain=True)
        for site in sites.values():
            wait_until(
                lambda site=site: site.has(north_acl, b"north-list"),
                timeout=10,
                what="north's allow-list on the site broker",
            )
            assert site.has("atelier/v1/north/laser-1/cmd", b"north-cmd")
        assert not sites["rogue"].has(south_acl, b"south-list")

        # Into another site's tree, or an allow-list of its own: the regional broker drops it.
        forged = [
            ("atelier/v1/south/printer-1/event", b"forged-event"),
            ("atelier/v1/south/printer-1/status", b"forged-status"),
            ("atelier/v1/south/printer-1/cmd", b"forged-cmd"),
            (north_acl, b"forged-list"),
        ]
        for topic, payload in forged:
            sites["rogue"].publish(topic, payload)
        sites["north"].publish(north_acl, b"forged-list-north")
        for name, site in sites.items():
            # Published after the forged ones on the same link: once it is in, they were handled.
            site.publish(event, f"{name}-marker".encode())
            site.publish("atelier/v1/north/laser-1/status", f"{name}-status".encode())
            wait_until(
                lambda name=name: (
                    hub.has(event, f"{name}-marker".encode())
                    and hub.has("atelier/v1/north/laser-1/status", f"{name}-status".encode())
                ),
                timeout=10,
                what=f"the {name} marker at the hub",
            )
        heard = hub.payloads()
        assert not {p for _, p in forged} & heard
        assert b"forged-list-north" not in heard
        # The south site's tree on the regional broker holds only what the hub put there.
        assert [t for t, _ in hub.heard if t.startswith("atelier/v1/south/")] == [south_acl]
    finally:
        for part in reversed(started):
            if isinstance(part, Listener):
                part.close()
            else:
                part.stop()


def test_a_site_broker_gets_its_own_sites_accounts_and_a_regional_one_none(
    tmp_path: Path, two_sites: str
) -> None:
    out = tmp_path / "out"
    everyone = credentials(out)
    assert everyone.exit_code == 0, everyone.output
    south_secret = (out / "secrets" / "printer-1.mqtt-password").read_text()

    south = credentials(out, "--site", "south")  # south's broker: printer-1 only
    assert south.exit_code == 0, south.output
    users = [line.split(":")[0] for line in (out / "passwd").read_text().splitlines()]
    assert users == ["hub", "printer-1"]
    assert "user laser-1" not in (out / "acl").read_text()
    # North's machines keep their passwords for north's own run: only a gone machine loses it.
    assert "deleted" not in south.output
    assert (out / "secrets" / "laser-1.mqtt-password").exists()
    assert (out / "secrets" / "printer-1.mqtt-password").read_text() == south_secret

    regional = credentials(out, "--bridges", "--no-agents")
    assert regional.exit_code == 0, regional.output
    assert "0 agent account(s), 0 plug account(s), 2 bridge account(s)" in regional.output
    users = [line.split(":")[0] for line in (out / "passwd").read_text().splitlines()]
    assert users == ["hub", "bridge-north", "bridge-south"]

    nowhere = credentials(out, "--site", "east")
    assert nowhere.exit_code == 0
    assert "--site east: no machine of that site" in nowhere.output
    both = credentials(out, "--site", "north", "--no-agents")
    assert both.exit_code == 2 and "give one or the other" in both.output
    bad = credentials(out, "--site", "North!")
    assert bad.exit_code == 2 and "--site: 'North!' is not a site id" in bad.output
