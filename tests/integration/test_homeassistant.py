"""Home Assistant MQTT discovery on a real Mosquitto: every machine's configs, retained,
checked against the discovery schema as Home Assistant documents it, their templates run on
the agents' real status messages, and published again when Home Assistant comes online."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from jinja2.sandbox import SandboxedEnvironment
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session

from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.notify.homeassistant import HomeAssistantDiscovery, MachineInfo, discovery_messages
from protocol.messages import Status, Telemetry
from tests.support.mosquitto import MosquittoBroker

# From Home Assistant's MQTT discovery documentation: the topic is
# <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, node_id and object_id in
# [a-zA-Z0-9_-]; a device needs identifiers (or connections) and its entities a unique_id;
# sensor and binary_sensor need a state_topic; an enum sensor lists its options and has no
# unit or state class; the options below are the documented ones each platform accepts.
TOPIC = re.compile(
    r"^homeassistant/(sensor|binary_sensor)/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$"
)
COMMON = {
    "name",
    "unique_id",
    "device",
    "origin",
    "availability_topic",
    "availability_template",
    "payload_available",
    "payload_not_available",
    "value_template",
    "state_topic",
    "device_class",
    "entity_category",
    "icon",
    "qos",
    "expire_after",
    "force_update",
    "json_attributes_topic",
    "json_attributes_template",
    "enabled_by_default",
    "object_id",
}
OPTIONS = {
    "sensor": COMMON
    | {
        "unit_of_measurement",
        "state_class",
        "options",
        "suggested_display_precision",
        "last_reset_value_template",
    },
    "binary_sensor": COMMON | {"payload_on", "payload_off", "off_delay"},
}
SENSOR_CLASSES = {"enum", "duration", "temperature", "power", "energy", None}
BINARY_CLASSES = {"running", "power", "problem", "occupancy", "connectivity", None}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "name",
    "manufacturer",
    "model",
    "sw_version",
    "hw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
}


def check_config(topic: str, payload: dict[str, Any]) -> str:
    match = TOPIC.match(topic)
    assert match, f"not a discovery topic: {topic}"
    component = match.group(1)
    assert set(payload) <= OPTIONS[component], set(payload) - OPTIONS[component]
    assert isinstance(payload["state_topic"], str) and "#" not in payload["state_topic"]
    assert payload["unique_id"] and isinstance(payload["unique_id"], str)
    device = payload["device"]
    assert set(device) <= DEVICE_KEYS and (device.get("identifiers") or device.get("connections"))
    if component == "sensor":
        assert payload.get("device_class") in SENSOR_CLASSES
        assert payload.get("state_class") in STATE_CLASSES | {None}
        if payload.get("device_class") == "enum":
            assert payload["options"] and "unit_of_measurement" not in payload
            assert "state_class" not in payload
    else:
        assert payload.get("device_class") in BINARY_CLASSES
    return component


def run_template(template: str, payload: str) -> str:
    # Home Assistant's templates are Jinja2 with value and value_json.
    env = SandboxedEnvironment()
    return env.from_string(template).render(value=payload, value_json=json.loads(payload)).strip()


MACHINES = [
    MachineInfo("printer-1", "Prusa MK4 #1", "lab", "printer"),
    MachineInfo("laser-1", "Laser", "lab", "laser"),
]


@pytest.mark.parametrize("personal_data", [False, True])
def test_every_config_follows_the_schema_and_its_templates_read_the_agents(
    personal_data: bool,
) -> None:
    messages = discovery_messages(MACHINES, personal_data=personal_data)
    assert len({t for t, _ in messages}) == len(messages) == 4 + 3  # no progress on the laser
    assert len({p["unique_id"] for _, p in messages}) == len(messages)
    in_use = Status(
        machine="printer-1",
        state="online",
        busy=True,
        locked=False,
        session={"session_id": "s1", "member": "m-1a2b", "badge": "04A1B2C3"},
    ).model_dump_json()
    free = Status(machine="printer-1", state="online", busy=False, locked=False).model_dump_json()
    locked = Status(machine="printer-1", state="online", locked=True).model_dump_json()
    offline = Status(machine="printer-1", state="offline").model_dump_json()
    sample = Telemetry.model_validate(
        {"machine": "printer-1", "ts": "2026-12-07T20:00:00Z", "values": {"progress": 42.5}}
    )
    for topic, payload in messages:
        component = check_config(topic, payload)
        assert (
            run_template(payload["availability_template"], in_use) == payload["payload_available"]
        )
        assert (
            run_template(payload["availability_template"], offline)
            == payload["payload_not_available"]
        )
        template = payload["value_template"]
        if topic.endswith("/state/config"):
            values = [run_template(template, s) for s in (free, in_use, locked, offline)]
            assert values == ["free", "in_use", "locked", "offline"]
            assert set(values) <= set(payload["options"])
        elif topic.endswith("/member/config"):
            assert run_template(template, in_use) == ("m-1a2b" if personal_data else "someone")
            assert run_template(template, free) == "none"
        elif component == "binary_sensor":
            assert run_template(template, in_use) == payload["payload_on"]
            assert run_template(template, free) == payload["payload_off"]
        else:
            assert float(run_template(template, sample.model_dump_json())) == 42.5
            idle = Telemetry.model_validate(
                {"machine": "printer-1", "ts": "2026-12-07T20:00:00Z", "values": {"progress": None}}
            )
            assert float(run_template(template, idle.model_dump_json())) == 0
    everything = json.dumps([p for _, p in messages])
    assert "04A1B2C3" not in everything and "m-1a2b" not in everything  # configs name nobody


class Watcher:
    def __init__(self, broker: MosquittoBroker) -> None:
        self.configs: dict[str, list[tuple[bool, dict[str, Any]]]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id="ha-test"
        )
        self.client.username_pw_set(broker.hub_user, broker.hub_password)
        self.client.on_message = self._message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("homeassistant/+/+/+/config", qos=1)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.configs.setdefault(message.topic, []).append(
                (message.retain, json.loads(message.payload))
            )

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.configs.values())

    def wait(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.count() < count:
            time.sleep(0.05)
        assert self.count() >= count, f"{self.count()} configs, {count} expected"

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def discovery(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[HomeAssistantDiscovery]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    settings = get_settings(
        None,
        database_url=url,
        data_dir=tmp_path,
        mqtt_port=mosquitto.port,
        mqtt_username=mosquitto.hub_user,
        mqtt_password=mosquitto.hub_password,
        homeassistant_discovery=True,
    )
    publisher = HomeAssistantDiscovery(settings, engine)
    yield publisher
    publisher.stop()
    engine.dispose()


def test_configs_are_retained_and_published_again_when_home_assistant_restarts(
    mosquitto: MosquittoBroker, discovery: HomeAssistantDiscovery
) -> None:
    discovery.start()
    expected = len(discovery_messages(discovery.machines()))
    deadline = time.monotonic() + 15
    while discovery.published < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert discovery.published == expected
    time.sleep(0.5)  # the broker has them: a late subscriber (Home Assistant) gets them retained
    watcher = Watcher(mosquitto)
    try:
        watcher.wait(expected)
        assert all(retained for seen in watcher.configs.values() for retained, _ in seen)
        for topic, seen in watcher.configs.items():
            check_config(topic, seen[0][1])
        assert any(t.endswith("atelier_lab_printer-1/progress/config") for t in watcher.configs)
        # Home Assistant restarts and says so: everything comes again.
        watcher.client.publish("homeassistant/status", "online", qos=1)
        watcher.wait(2 * expected)
        assert discovery.published == 2 * expected
        watcher.client.publish("homeassistant/status", "offline", qos=1)
        time.sleep(0.5)
        assert discovery.published == 2 * expected  # only "online" asks for them
    finally:
        watcher.stop()
