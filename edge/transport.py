"""paho-mqtt behind a small publish/subscribe seam; callbacks only report, never decide."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes


class MqttTransport:
    """One broker connection with a retained last will, reconnecting by itself.

    `on_connected`, `on_disconnected`, `on_message(topic, payload)` and `on_acked(mid)` are
    called from paho's network thread and must only enqueue.
    """

    def __init__(
        self,
        *,
        client_id: str,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        protocol: str,
        keepalive: int,
        will: Will,
        subscriptions: list[str],
        on_connected: Callable[[], None],
        on_disconnected: Callable[[], None],
        on_message: Callable[[str, bytes], None],
        on_acked: Callable[[int], None],
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls: bool = False,
    ) -> None:
        self.v5 = protocol == "5"
        self._host, self._port, self._keepalive = host, port, keepalive
        self._subscriptions = subscriptions
        self._on_connected, self._on_disconnected = on_connected, on_disconnected
        self._on_message, self._on_acked = on_message, on_acked
        self.connected = False
        self._stopping = False
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
            # A persistent session: QoS 1 messages for us (commands) wait at the broker.
            clean_session=None if self.v5 else False,
        )
        if username:
            self._client.username_pw_set(username, password)
        if tls or tls_ca:
            self._client.tls_set(
                ca_certs=tls_ca, certfile=tls_cert, keyfile=tls_key, cert_reqs=ssl.CERT_REQUIRED
            )
        self._client.will_set(will.topic, will.payload, qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_publish = self._handle_publish

    def start(self) -> None:
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 7 * 24 * 3600
        self._client.connect_async(
            self._host,
            self._port,
            keepalive=self._keepalive,
            clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self._client.loop_start()

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Disconnect cleanly (after publishing `final` retained, e.g. an offline status)."""
        self._stopping = True
        if final is not None and self.connected:
            info = self._client.publish(final[0], final[1], qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> int | None:
        """The message id to expect in `on_acked`, or None when not connected."""
        if not self.connected:
            return None
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return int(info.mid)

    # paho callbacks (network thread)
    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        self.connected = True
        for sub in self._subscriptions:
            client.subscribe(sub, qos=1)
        self._on_connected()

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        was = self.connected
        self.connected = False
        if was and not self._stopping:
            log.warning("disconnected from the broker (%s); will reconnect", reason_code)
            self._on_disconnected()

    def _handle_message(
        self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        self._on_message(message.topic, bytes(message.payload))

    def _handle_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if not reason_code.is_failure:
            self._on_acked(mid)
