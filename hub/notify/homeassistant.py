"""Home Assistant MQTT discovery: every machine as a device with its state, current member,
busy and print progress, read by Home Assistant from the agents' own retained topics.

The configs are published retained, and again whenever Home Assistant says "online" on
`homeassistant/status` (it has restarted and may have lost them).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub import __version__
from hub.core.mqtt import hub_client
from hub.core.settings import Settings
from hub.models import Machine
from protocol.topics import TopicKind, topic

log = logging.getLogger(__name__)
BIRTH_TOPIC = "homeassistant/status"


@dataclass(frozen=True)
class MachineInfo:
    code: str
    name: str
    site: str
    kind: str


def _node(site: str, code: str) -> str:
    # node_id and object_id: [a-zA-Z0-9_-] only, as the discovery topic requires.
    return f"atelier_{site}_{code}".replace(".", "_")


def discovery_messages(
    machines: list[MachineInfo], *, prefix: str = "homeassistant", personal_data: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config payload) for each entity of each machine."""
    out: list[tuple[str, dict[str, Any]]] = []
    for machine in machines:
        node = _node(machine.site, machine.code)
        status = topic(machine.site, machine.code, TopicKind.STATUS)
        telemetry = topic(machine.site, machine.code, TopicKind.TELEMETRY)
        device = {
            "identifiers": [node],
            "name": machine.name,
            "manufacturer": "Atelier",
            "model": machine.kind,
            "sw_version": __version__,
        }
        common: dict[str, Any] = {
            "device": device,
            "origin": {"name": "Atelier hub", "sw_version": __version__},
            "availability_topic": status,
            "availability_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
        member = (
            "{{ value_json.session.member if value_json.session else 'none' }}"
            if personal_data
            # Without the admin's leave, Home Assistant learns only that someone is on it.
            else "{{ 'someone' if value_json.session else 'none' }}"
        )
        entities: list[tuple[str, str, dict[str, Any]]] = [
            (
                "sensor",
                "state",
                {
                    "name": "State",
                    "state_topic": status,
                    "device_class": "enum",
                    "options": ["free", "in_use", "locked", "offline"],
                    "value_template": (
                        "{% if value_json.state == 'offline' %}offline"
                        "{% elif value_json.locked %}locked"
                        "{% elif value_json.session %}in_use{% else %}free{% endif %}"
                    ),
                },
            ),
            (
                "sensor",
                "member",
                {"name": "Current member", "state_topic": status, "value_template": member},
            ),
            (
                "binary_sensor",
                "busy",
                {
                    "name": "Busy",
                    "state_topic": status,
                    "device_class": "running",
                    "value_template": "{{ 'ON' if value_json.busy else 'OFF' }}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                },
            ),
            (
                "sensor",
                "progress",
                {
                    "name": "Print progress",
                    "state_topic": telemetry,
                    "unit_of_measurement": "%",
                    "state_class": "measurement",
                    "value_template": "{{ value_json['values'].progress | default(0, true) }}",
                },
            ),
        ]
        for component, object_id, specific in entities:
            if object_id == "progress" and machine.kind != "printer":
                continue
            payload = {**specific, **common, "unique_id": f"{node}_{object_id}"}
            out.append((f"{prefix}/{component}/{node}/{object_id}/config", payload))
    return out


class HomeAssistantDiscovery:
    """Publishes the configs on a connection of its own (client id `<hub>-ha`)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.published = 0  # configs sent, for the tests and /metrics
        self._lock = threading.Lock()
        self._client = hub_client(settings, f"{settings.mqtt_client_id}-ha")
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def machines(self) -> list[MachineInfo]:
        with Session(self.engine) as session:
            rows = session.exec(select(Machine).order_by(col(Machine.code))).all()
            return [MachineInfo(m.code, m.name, m.site, m.kind.value) for m in rows]

    def publish_all(self) -> int:
        messages = discovery_messages(
            self.machines(),
            prefix=self.settings.homeassistant_prefix,
            personal_data=self.settings.homeassistant_personal_data,
        )
        with self._lock:
            for config_topic, payload in messages:
                self._client.publish(config_topic, json.dumps(payload), qos=1, retain=True)
            self.published += len(messages)
        return len(messages)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the Home Assistant publisher: %s", reason_code)
            return
        client.subscribe(BIRTH_TOPIC, qos=1)
        self.publish_all()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == BIRTH_TOPIC and message.payload == b"online":
            log.info("Home Assistant is online: discovery published again")
            self.publish_all()

    def start(self) -> None:
        self._client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
