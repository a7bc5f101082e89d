"""The ingest acknowledges a stored batch in one write, on a real Mosquitto (MQTT 5 and 3.1.1)."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.ingest.consumer import mids_to_acknowledge, send_pubacks
from hub.ingest.writer import Incoming
from tests.support.mosquitto import MosquittoBroker

TOPIC = "atelier/v1/lab/laser-1/event"


class Subscriber:
    """A persistent-session subscriber that acknowledges only when told to."""

    def __init__(self, broker: MosquittoBroker, client_id: str, v5: bool) -> None:
        self.broker, self.client_id, self.v5 = broker, client_id, v5
        self.mids: list[int] = []
        self.arrived = threading.Condition()
        self.client: mqtt.Client | None = None

    def connect(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self.v5 else False,
            manual_ack=True,
        )
        client.username_pw_set(self.broker.hub_user, self.broker.hub_password)
        subscribed = threading.Event()
        client.on_subscribe = lambda *args: subscribed.set()
        client.on_message = self._on_message
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
        kwargs = {"clean_start": False, "properties": props} if self.v5 else {}
        client.connect(self.broker.host, self.broker.port, **kwargs)
        client.subscribe(TOPIC, qos=1)
        client.loop_start()
        assert subscribed.wait(10)
        self.client = client
        return client

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.mids.append(msg.mid)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[int]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.mids) >= count, timeout)
            return list(self.mids)

    def disconnect(self) -> None:
        assert self.client is not None
        self.client.disconnect()
        self.client.loop_stop()
        self.mids = []


def publish(broker: MosquittoBroker, count: int) -> None:
    user, password = broker.agent_credentials("laser-1")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="acks-pub")
    client.username_pw_set(user, password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    infos = [client.publish(TOPIC, f"message {i}".encode(), qos=1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_acknowledged_in_one_write_means_not_delivered_again(
    mosquitto: MosquittoBroker, v5: bool
) -> None:
    acked = Subscriber(mosquitto, f"acks-yes-{v5}", v5)
    unacked = Subscriber(mosquitto, f"acks-no-{v5}", v5)
    acked.connect()
    unacked.connect()
    publish(mosquitto, 40)
    mids = acked.wait_for(40)
    assert len(mids) == 40 and len(unacked.wait_for(40)) == 40
    assert acked.client is not None
    send_pubacks(acked.client, mids)
    time.sleep(0.5)  # the PUBACKs leave with paho's next write
    acked.disconnect()
    unacked.disconnect()
    # Back on their sessions: what was acknowledged is gone, the rest comes again.
    acked.connect()
    unacked.connect()
    assert len(unacked.wait_for(40)) == 40
    assert acked.wait_for(1, timeout=1.5) == []
    acked.disconnect()
    unacked.disconnect()


def test_only_the_current_connections_messages_are_acknowledged() -> None:
    batch = [
        Incoming(TOPIC, b"", mid=1, qos=1, connection=1),  # before a reconnect
        Incoming(TOPIC, b"", mid=1, qos=1, connection=2),  # its copy, delivered again
        Incoming(TOPIC, b"", mid=2, qos=0, connection=2),  # QoS 0: nothing to acknowledge
        Incoming(TOPIC, b"", mid=None, qos=1, connection=2),
        Incoming(TOPIC, b"", mid=7, qos=1, connection=2),
    ]
    assert mids_to_acknowledge(batch, connection=2) == [1, 7]
