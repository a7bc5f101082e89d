"""The hub's paho clients: one construction for the ingest and the allow-list publisher."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.core.settings import Settings


def hub_client(
    settings: Settings, client_id: str, *, persistent: bool = False, manual_ack: bool = False
) -> mqtt.Client:
    """A client with the hub's account, TLS and protocol version from the settings.

    `persistent`: a session the broker keeps while the hub is away (MQTT 3.1.1 needs
    clean_session off here; MQTT 5 sets it with clean_start at connect).
    """
    v5 = settings.mqtt_protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    if settings.mqtt_username:
        client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
    if settings.mqtt_tls_ca:
        client.tls_set(ca_certs=str(settings.mqtt_tls_ca))
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client
