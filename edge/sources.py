"""Where the agent's inputs come from: the broker link, the GPIO inputs, the integrations and
the badge reader, each wired to put its input (edge.inputs) on the agent's queue.

Nothing here decides: paho, gpiozero and the integrations' threads only enqueue, and the
agent's loop thread applies every input in order (the reader is the exception: its reads are
decided in its own thread, see edge.agent).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge.config import AgentConfig
from edge.domain.session import ActiveSession
from edge.hardware.outputs import Devices
from edge.hardware.readers import BadgeReader
from edge.inputs import (
    Acked,
    BusyChanged,
    Connected,
    Disconnected,
    EnergyRead,
    IncidentPressed,
    Input,
    IntegrationEvent,
    Message,
    Readings,
)
from edge.integrations.busy import BusySource
from edge.transport import MqttTransport, Will
from protocol import lite
from protocol.topics import TopicKind, topic
from protocol.vocab import EventType

Put = Callable[[Input], None]


def broker_link(config: AgentConfig, put: Put, *, plug_topics: list[str]) -> MqttTransport:
    """The agent's one broker connection: its acl and cmd topics (and a plug's, when the plug
    publishes on the lab's broker); a retained `offline` status as its last will."""
    cfg = config

    def machine_topic(kind: TopicKind) -> str:
        return topic(cfg.agent.site, cfg.agent.machine, kind)

    offline = lite.status(machine=cfg.agent.machine, state="offline").encode()
    return MqttTransport(
        client_id=f"atelier-edge-{cfg.agent.machine}",
        host=cfg.mqtt.host,
        port=cfg.mqtt.port,
        username=cfg.mqtt.username or cfg.agent.machine,
        password=cfg.mqtt.resolve_password(),
        protocol=cfg.mqtt.protocol,
        keepalive=cfg.mqtt.keepalive_s,
        will=Will(machine_topic(TopicKind.STATUS), offline),
        subscriptions=[machine_topic(TopicKind.ACL), machine_topic(TopicKind.CMD)] + plug_topics,
        on_connected=lambda: put(Connected()),
        on_disconnected=lambda: put(Disconnected()),
        on_message=lambda t, p: put(Message(t, p)),
        on_acked=lambda mid: put(Acked(mid)),
        tls=cfg.mqtt.tls,
        tls_ca=str(cfg.mqtt.ca_file) if cfg.mqtt.ca_file else None,
        tls_cert=str(cfg.mqtt.cert_file) if cfg.mqtt.cert_file else None,
        tls_key=str(cfg.mqtt.key_file) if cfg.mqtt.key_file else None,
    )


def wire_gpio(devices: Devices, put: Put) -> None:
    """The busy input and the incident button; a machine already busy at start says so."""
    busy = devices.busy_input
    if busy is not None:
        busy.when_activated = lambda: put(BusyChanged(True))
        busy.when_deactivated = lambda: put(BusyChanged(False))
        if busy.is_active:
            put(BusyChanged(True))
    button = devices.incident_button
    if button is not None:
        button.when_activated = lambda: put(IncidentPressed())


def reader_for(
    config: AgentConfig,
    *,
    tap: Callable[..., dict[str, Any]],
    state: Callable[[], dict[str, Any]],
) -> BadgeReader:
    """The reader the config names, imported only then (a Pi loads one reader's code); the
    sim reader's socket is answered by the agent's `tap` and `state`."""
    kind = config.reader.type
    if kind == "sim":
        from edge.hardware.sim_reader import SimReader, answer

        return SimReader(config.sim_socket, lambda request: answer(request, tap=tap, state=state))
    if kind == "mfrc522":
        from edge.hardware.mfrc522_reader import MFRC522Reader

        return MFRC522Reader.from_config(config)
    from edge.hardware.keyboard_reader import KeyboardReader

    return KeyboardReader.from_config(config)


class Integrations:
    """OctoPrint and the busy sources (power plug, Ruida controller), each running when its
    TOML section is present. Each watches on its own thread and only enqueues."""

    def __init__(
        self,
        config: AgentConfig,
        put: Put,
        *,
        session_provider: Callable[[], ActiveSession | None],
        clock: Callable[[], datetime],
    ) -> None:
        self._config = config
        self._put = put
        self._session_provider = session_provider
        self._clock = clock
        self._octoprint: Any = None
        self._power_meter: Any = None
        self._busy_sources: list[BusySource] = []

    def plug_topics(self) -> list[str]:
        """A plug publishing on the lab's broker is read through the agent's own connection."""
        options = self._config.power_meter
        if options is None or options.broker is not None:
            return []
        from edge.integrations.power_meter import plug_topic

        return [plug_topic(options)]

    def start(self) -> None:
        self._start_busy_sources()
        options = self._config.octoprint
        if options is None:
            return
        from edge.integrations.octoprint import OctoPrintWatcher

        # The watcher polls on its own thread and only enqueues; the loop decides.
        self._octoprint = OctoPrintWatcher(
            options,
            session_provider=self._session_provider,
            emit_event=self._emit_event,
            emit_telemetry=self._emit_telemetry,
            clock=self._clock,
        )
        self._octoprint.start()

    def _emit_event(self, kind: EventType, data: dict[str, Any]) -> None:
        self._put(IntegrationEvent(kind, data))

    def _emit_telemetry(self, values: dict[str, Any]) -> None:
        self._put(Readings(values))

    def _start_busy_sources(self) -> None:
        config = self._config
        if config.power_meter is not None:
            from edge.integrations.power_meter import PowerMeter

            self._power_meter = PowerMeter(
                config.power_meter,
                emit_event=self._emit_event,
                emit_telemetry=self._emit_telemetry,
                client_id=f"atelier-edge-{config.agent.machine}-plug",
                emit_energy=lambda total: self._put(EnergyRead(total)),
            )
            self._busy_sources.append(self._power_meter)
        if config.ruida is not None:
            from edge.integrations.ruida import RuidaWatcher

            ruida = RuidaWatcher(
                config.ruida, emit_event=self._emit_event, emit_telemetry=self._emit_telemetry
            )
            self._busy_sources.append(ruida)
        for source in self._busy_sources:
            source.start()

    def feed(self, topic_name: str, payload: bytes) -> bool:
        """A message on the agent's connection for the plug: True when it was the plug's."""
        if self._power_meter is None or topic_name != self._power_meter.topic:
            return False
        self._power_meter.feed(topic_name, payload)
        return True

    def stop(self) -> None:
        if self._octoprint is not None:
            self._octoprint.stop()
        for source in self._busy_sources:
            source.stop()
