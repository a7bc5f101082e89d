"""A site's bridge to the regional broker: how fast its backlog reaches the region after an outage.

One regional Mosquitto and one site Mosquitto bridged to it with deploy/mosquitto/bridge.conf.j2
through a TCP relay (the site's link). A counting paho subscriber on the regional broker (the
hub's place) receives, in the same run:
- live, direct and bridged: a burst published straight to the regional broker, then to the
  site broker with the link up (both bound by the one publisher),
- backlog, direct (the baseline): the burst queued by the regional broker while the counter
  is away, drained when it comes back,
- backlog, bridged: the burst published to the site broker while the link is cut (the site
  broker takes and queues it), drained when the link is restored.
Drain rates run from the first message received to the last.

Run: .venv/bin/python -m bench.bench_bridge [--count 20000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import EventType, encode_envelope, new_envelope
from tests.support.bridge import TcpLink, regional_broker, site_broker
from tests.support.mosquitto import MosquittoBroker

SITE, MACHINE = "north", "laser-1"


class Counter:
    """The hub's place: a persistent QoS 1 subscription to every site's events, counting."""

    def __init__(self, broker: MosquittoBroker, target: int = 0) -> None:
        self.count = 0
        self.first = 0.0
        self.done = threading.Event()
        self.target = target
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="bench-counter",
            clean_session=False,
        )
        self.client.username_pw_set("hub", broker.hub_password)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("atelier/v1/+/+/event", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the counter could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, message: object) -> None:
        if self.count == 0:
            self.first = time.monotonic()
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def expect(self, n: int) -> None:
        self.count, self.target = 0, n
        self.done.clear()

    def wait(self, timeout: float = 300) -> None:
        if not self.done.wait(timeout):
            raise RuntimeError(f"received {self.count} of {self.target}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish(broker: MosquittoBroker, user: str, password: str, payloads: list[bytes]) -> None:
    """All of them at QoS 1, returning once the broker has acknowledged every one."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pub-{user}")
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    topic = f"atelier/v1/{SITE}/{MACHINE}/event"
    # In chunks: MQTT has 65,535 packet ids for the messages one client has in flight.
    for start in range(0, len(payloads), 10_000):
        infos = [client.publish(topic, p, qos=1) for p in payloads[start : start + 10_000]]
        for info in infos:
            info.wait_for_publish(timeout=120)
    client.loop_stop()
    client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    n = args.count
    payloads = [
        encode_envelope(
            new_envelope(
                machine=MACHINE,
                type=EventType.SESSION_STARTED,
                seq=i + 1,
                data={"session_id": f"{MACHINE}-{i}", "member": "m-1", "badge": "04A1B2C3"},
            )
        )
        for i in range(n)
    ]
    workdir = Path(tempfile.mkdtemp(prefix="atelier-bridge-"))
    regional, passwords = regional_broker(workdir / "regional", [SITE])
    regional.start()
    link = TcpLink(regional.port)
    link.restore()
    site = site_broker(workdir / "site", SITE, regional_port=link.port, password=passwords[SITE])
    site.start()
    user, password = site.agent_credentials(MACHINE)
    counter = Counter(regional)
    rates: dict[str, float] = {}
    try:
        time.sleep(2)  # the bridge connects
        counter.expect(n)
        started = time.monotonic()
        publish(regional, "hub", regional.hub_password, payloads)
        counter.wait()
        rates["live, direct"] = n / (time.monotonic() - started)

        counter.expect(n)
        started = time.monotonic()
        publish(site, user, password, payloads)
        counter.wait()
        rates["live, bridged"] = n / (time.monotonic() - started)

        counter.close()
        publish(regional, "hub", regional.hub_password, payloads)  # queued for the counter
        counter = Counter(regional, target=n)
        counter.wait()
        rates["backlog, direct"] = n / (time.monotonic() - counter.first)

        link.cut()
        time.sleep(1)
        counter.expect(n)
        publish(site, user, password, payloads)  # taken and queued by the site broker
        assert counter.count == 0, "the link was not cut"
        started = time.monotonic()
        link.restore()
        counter.wait()
        ended = time.monotonic()
        reconnect = counter.first - started
        rates["backlog, bridged"] = n / (ended - counter.first)
    finally:
        counter.close()
        link.cut()
        site.stop()
        regional.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"bridge: {n} events (QoS 1) to a counting subscriber on the regional broker")
    for name, rate in rates.items():
        baseline = rates["live, direct" if name.startswith("live") else "backlog, direct"]
        print(f"  {name:<17} {rate:>8.0f} msg/s   {rate / baseline:4.2f}x direct")
    print(
        f"backlog: first event {reconnect:.1f} s after the link came back (the bridge's"
        " reconnection delay), then the rate above"
    )


if __name__ == "__main__":
    main()
