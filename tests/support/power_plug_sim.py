"""A smart plug on a real broker: publishes Tasmota or Shelly power messages from a watts script."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

# (seconds, watts): hold `watts` for `seconds`, publishing every `interval_s`.
Script = list[tuple[float, float]]


def tasmota_sensor(watts: float, total_kwh: float = 12.5) -> bytes:
    """What Tasmota 13/14 publishes on tele/<topic>/SENSOR every TelePeriod."""
    volts = 231.0
    return json.dumps(
        {
            "Time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "ENERGY": {
                "TotalStartTime": "2026-01-10T09:12:44",
                "Total": round(total_kwh, 3),
                "Yesterday": 1.204,
                "Today": 0.318,
                "Period": 0,
                "Power": round(watts),
                "ApparentPower": round(watts * 1.05),
                "ReactivePower": round(watts * 0.3),
                "Factor": 0.95 if watts else 0.0,
                "Voltage": round(volts),
                "Current": round(watts / volts, 3),
            },
        }
    ).encode()


def shelly_gen2_switch(watts: float, channel: int = 0, total_wh: float = 12500.0) -> bytes:
    """What a Shelly Plus/Pro plug publishes on <prefix>/status/switch:<id>."""
    volts = 230.4
    return json.dumps(
        {
            "id": channel,
            "source": "timer",
            "output": True,
            "apower": round(watts, 1),
            "voltage": volts,
            "freq": 50.0,
            "current": round(watts / volts, 3),
            "aenergy": {
                "total": round(total_wh, 3),
                "by_minute": [0.0, 0.0, 0.0],
                "minute_ts": int(time.time()),
            },
            "temperature": {"tC": 41.2, "tF": 106.2},
        }
    ).encode()


def shelly_gen1_power(watts: float) -> bytes:
    """Gen1 (Shelly Plug S, 1PM) publishes the bare number on shellies/<id>/relay/<n>/power."""
    return f"{watts:.2f}".encode()


class PowerPlugSim:
    """One plug: `publish(watts)` once, or `play(script)` on a thread until `silence()`."""

    def __init__(
        self,
        kind: str,
        topic: str,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        channel: int = 0,
        interval_s: float = 0.2,
    ) -> None:
        self.kind = kind
        self.topic = topic
        self.channel = channel
        self.interval_s = interval_s
        self.published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"plug-sim-{topic}",
            protocol=MQTTProtocolVersion.MQTTv311,  # what the firmware speaks
        )
        self._client.username_pw_set(username, password)
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        deadline = time.monotonic() + 10
        while not self._client.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError(f"plug simulator could not connect to {host}:{port}")
            time.sleep(0.02)

    @property
    def mqtt_topic(self) -> str:
        if self.kind == "tasmota":
            return f"tele/{self.topic}/SENSOR"
        if self.kind == "shelly-gen2":
            return f"{self.topic}/status/switch:{self.channel}"
        return f"shellies/{self.topic}/relay/{self.channel}/power"

    def payload(self, watts: float) -> bytes:
        if self.kind == "tasmota":
            return tasmota_sensor(watts)
        if self.kind == "shelly-gen2":
            return shelly_gen2_switch(watts, self.channel)
        return shelly_gen1_power(watts)

    def publish(self, watts: float) -> None:
        info = self._client.publish(self.mqtt_topic, self.payload(watts), qos=0)
        info.wait_for_publish(timeout=5)
        self.published += 1

    def publish_raw(self, payload: bytes) -> None:
        self._client.publish(self.mqtt_topic, payload, qos=0).wait_for_publish(timeout=5)

    def play(self, script: Script, *, then: float | None = None) -> None:
        """Publish the script on a thread; afterwards keep publishing `then` (None: go silent)."""
        self.silence()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._play, args=(list(script), then), name="plug-sim", daemon=True
        )
        self._thread.start()

    def wait_played(self, timeout: float = 60) -> None:
        """Block until a script without `then` has finished."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _play(self, script: Script, then: float | None) -> None:
        for seconds, watts in script:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if self._stop.is_set():
                    return
                self.publish(watts)
                self._stop.wait(min(self.interval_s, max(0.0, end - time.monotonic())))
        while then is not None and not self._stop.is_set():
            self.publish(then)
            self._stop.wait(self.interval_s)

    def silence(self) -> None:
        """The plug stops publishing (unplugged, Wi-Fi down)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def close(self) -> None:
        self.silence()
        self._client.disconnect()
        self._client.loop_stop()
