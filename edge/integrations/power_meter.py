"""Busy from a smart plug's power reading (Tasmota or Shelly over MQTT), with hysteresis.

Topics and payloads read (one plug, `topic` and `channel` from [power_meter]):
- Tasmota:     `tele/<topic>/SENSOR`, JSON `{"ENERGY": {"Power": 812, "Total": 12.503, ...}}` (a
               list of powers on multi-channel devices: `channel` picks one), every TelePeriod
               (set it to 10 s);
- Shelly Gen2: `<topic>/status/switch:<channel>`, JSON `{"apower": 812.4, "aenergy": {"total":
               12503.1}}` (Wh), on change;
- Shelly Gen1: `shellies/<topic>/relay/<channel>/power`, the watts as plain text (no energy
               total on that topic: a Gen1 plug meters no kWh).

Besides the watts, the energy counter (kWh) of each message goes to the agent
(`emit_energy`), which shares it out between sessions and busy periods
(edge.domain.energy: the counter's resets are handled there).

The plug may publish on the lab's broker (the agent's own connection subscribes to it; the
broker ACL must let the machine's account read that topic) or on a broker of its own
([power_meter.broker], a separate paho client). Either way readings reach `feed()`, and a
ticker thread applies the hold times and the silence rule; the pure `advance()` decides, so
the rules are tested without a broker. Busy time runs from one confirmation to the next: with
equal `busy_after_s` and `idle_after_s` the two delays cancel out.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from edge.config import PowerMeterOptions
from edge.integrations.busy import BusyReport, EmitEvent, EmitTelemetry

log = logging.getLogger(__name__)

SOURCE = "power"
TICK_S = 0.2


def plug_topic(options: PowerMeterOptions) -> str:
    """The one topic the plug publishes its power on."""
    if options.kind == "tasmota":
        return f"tele/{options.topic}/SENSOR"
    if options.kind == "shelly-gen2":
        return f"{options.topic}/status/switch:{options.channel}"
    return f"shellies/{options.topic}/relay/{options.channel}/power"


def parse_watts(
    kind: Literal["tasmota", "shelly-gen2", "shelly-gen1"], payload: bytes, channel: int = 0
) -> float | None:
    """The watts in one message, or None when it carries none (or cannot be read)."""
    try:
        text = payload.decode("utf-8").strip()
        if kind == "shelly-gen1":
            return _watts(float(text))
        body = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    if kind == "shelly-gen2":
        return _watts(body.get("apower"))
    energy = body.get("ENERGY")
    if not isinstance(energy, dict):
        return None  # a SENSOR message of a plug without metering, or of another sensor
    power = energy.get("Power")
    if isinstance(power, list):
        power = power[channel] if channel < len(power) else None
    return _watts(power)


def parse_energy_total(
    kind: Literal["tasmota", "shelly-gen2", "shelly-gen1"], payload: bytes, channel: int = 0
) -> float | None:
    """The plug's energy counter in one message, in kWh, or None when it carries none."""
    if kind == "shelly-gen1":
        return None
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    if kind == "shelly-gen2":
        energy = body.get("aenergy")
        total = _watts(energy.get("total")) if isinstance(energy, dict) else None
        return None if total is None else total / 1000.0  # Wh
    energy = body.get("ENERGY")
    if not isinstance(energy, dict):
        return None
    total = energy.get("Total")
    if isinstance(total, list):  # per channel, on multi-channel devices (SetOption129)
        total = total[channel] if channel < len(total) else None
    return _watts(total)


def _watts(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    # NaN and negative readings (a plug's calibration noise) are no reading.
    return value if value == value and value >= 0 else None


# -- the rules -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PowerRules:
    busy_above_w: float
    busy_after_s: float
    idle_below_w: float
    idle_after_s: float
    silent_after_s: float

    @classmethod
    def from_options(cls, options: PowerMeterOptions) -> PowerRules:
        return cls(
            busy_above_w=options.busy_above_w,
            busy_after_s=options.busy_after_s,
            idle_below_w=options.idle_below_w,
            idle_after_s=options.idle_after_s,
            silent_after_s=options.silent_after_s,
        )


@dataclass(frozen=True, slots=True)
class MeterState:
    """`last_heard` starts at the start time, so a plug that never speaks is also silent."""

    last_heard: float
    busy: bool = False
    online: bool | None = None
    watts: float | None = None
    # Since when the readings have stood on the far side of the band (None: they do not).
    crossing_since: float | None = None


Change = Literal["busy", "idle", "online", "offline"]


def advance(
    state: MeterState, rules: PowerRules, now: float, watts: float | None = None
) -> tuple[MeterState, list[Change]]:
    """Apply a reading (`watts`) or just the passing of time (`watts=None`) at `now`.

    A reading holds until the next one, so a spike above the threshold that the next reading
    contradicts before `busy_after_s` never makes the machine busy."""
    changes: list[Change] = []
    if watts is not None:
        if state.online is not True:
            changes.append("online")
        beyond = watts < rules.idle_below_w if state.busy else watts > rules.busy_above_w
        crossing = (
            (state.crossing_since if state.crossing_since is not None else now) if beyond else None
        )
        state = MeterState(
            last_heard=now, busy=state.busy, online=True, watts=watts, crossing_since=crossing
        )
    elif state.online is not False and now - state.last_heard >= rules.silent_after_s:
        changes.append("offline")
        if state.busy:
            changes.append("idle")
        return replace(state, online=False, busy=False, watts=None, crossing_since=None), changes
    if state.online and state.crossing_since is not None:
        hold = rules.idle_after_s if state.busy else rules.busy_after_s
        if now - state.crossing_since >= hold:
            state = replace(state, busy=not state.busy, crossing_since=None)
            changes.append("busy" if state.busy else "idle")
    return state, changes


# -- the source ----------------------------------------------------------------------------


class PowerMeter:
    """One plug: readings in through `feed()` (from any thread), events out through callbacks."""

    source = SOURCE

    def __init__(
        self,
        options: PowerMeterOptions,
        *,
        emit_event: EmitEvent,
        emit_telemetry: EmitTelemetry,
        monotonic: Callable[[], float] = time.monotonic,
        client_id: str = "atelier-plug",
        emit_energy: Callable[[float], None] | None = None,
    ) -> None:
        self.options = options
        self._emit_energy = emit_energy
        self.topic = plug_topic(options)
        self._rules = PowerRules.from_options(options)
        self._report = BusyReport(SOURCE, emit_event, emit_telemetry)
        self._monotonic = monotonic
        self._client_id = client_id
        self._lock = threading.Lock()
        self._state = MeterState(last_heard=monotonic())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._last_telemetry: float | None = None
        self._unreadable = 0
        self._energy_total: float | None = None

    @property
    def uses_agent_broker(self) -> bool:
        return self.options.broker is None

    @property
    def state(self) -> MeterState:
        with self._lock:
            return self._state

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        with self._lock:
            self._state = MeterState(last_heard=self._monotonic())
        self._thread = threading.Thread(target=self._run, name="power-meter", daemon=True)
        self._thread.start()
        if not self.uses_agent_broker:
            self._client = self._own_client()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def feed(self, topic: str, payload: bytes) -> None:
        if topic != self.topic:
            return
        total = parse_energy_total(self.options.kind, payload, self.options.channel)
        if total is not None and total == total and total != float("inf"):
            self._energy_total = total
            if self._emit_energy is not None:
                self._emit_energy(total)
        watts = parse_watts(self.options.kind, payload, self.options.channel)
        if watts is None:
            self._unreadable += 1
            if self._unreadable in (1, 100):
                log.warning("%s: no power reading in %r", topic, payload[:120])
            return
        self._step(watts)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self._step(None)
            except Exception:
                log.exception("power meter tick failed; going on")

    def _step(self, watts: float | None) -> None:
        now = self._monotonic()
        with self._lock:
            self._state, changes = advance(self._state, self._rules, now, watts)
            for change in changes:
                if change == "online":
                    self._report.set_online(True, f"plug {self.topic} speaking")
                elif change == "offline":
                    hint = (
                        " (is the plug on, and may this machine's broker account read that topic?)"
                        if self.uses_agent_broker
                        else ""
                    )
                    self._report.set_online(
                        False,
                        f"no power reading on {self.topic} for {self._rules.silent_after_s:g} s"
                        + hint,
                    )
                else:
                    self._report.set_busy(change == "busy")
            self._maybe_telemetry(now, watts, bool(changes))

    def _maybe_telemetry(self, now: float, watts: float | None, changed: bool) -> None:
        if watts is None and not changed:
            return
        due = (
            changed
            or self._last_telemetry is None
            or now - self._last_telemetry >= self.options.telemetry_min_interval_s
        )
        if not due:
            return
        self._last_telemetry = now
        self._report.telemetry(
            {
                "power_w": self._state.watts,
                "power_busy": self._state.busy,
                "power_meter_online": bool(self._state.online),
                "energy_total_kwh": self._energy_total,
            }
        )

    def _own_client(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        broker = self.options.broker
        assert broker is not None
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=MQTTProtocolVersion.MQTTv5
            if broker.protocol == "5"
            else MQTTProtocolVersion.MQTTv311,
        )
        if broker.username:
            client.username_pw_set(broker.username, broker.resolve_password())
        if broker.tls or broker.ca_file:
            client.tls_set(
                ca_certs=str(broker.ca_file) if broker.ca_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )

        def on_connect(c: Any, userdata: object, flags: object, reason: Any, props: object) -> None:
            if reason.is_failure:
                log.warning("plug broker %s refused the connection: %s", broker.host, reason)
                return
            c.subscribe(self.topic, qos=0)

        client.on_connect = on_connect
        client.on_message = lambda c, u, message: self.feed(message.topic, bytes(message.payload))
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.connect_async(broker.host, broker.port, keepalive=30)
        client.loop_start()
        return client
