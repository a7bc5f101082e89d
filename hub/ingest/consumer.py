"""The MQTT consumer: a persistent session, messages acknowledged only after they are committed.

paho's callback only queues a message; one writer thread drains the queue into batches
(up to `ingest_batch_max` messages or `ingest_batch_ms`), writes each batch in one
transaction, and then acknowledges its messages. A crash before the commit means the broker
delivers them again; the envelope id makes that harmless.

Acknowledgements name a packet id, which is only meaningful on the connection that
delivered the message: after a reconnect the broker delivers the unacknowledged messages
again (and may give a freed id to a new message). So a message is acknowledged only if it
arrived on the current connection; one from before is acknowledged through its new copy,
which the writer dedupes.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from hub.core.mqtt import hub_client
from hub.core.settings import Settings
from hub.ingest.writer import Incoming, IngestStats, IngestWriter, SessionsEnded
from protocol.topics import TopicKind, subscription

log = logging.getLogger(__name__)


class IngestConsumer:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        shared_group: str | None = None,
        client_id: str | None = None,
        stats: IngestStats | None = None,
        on_sessions_ended: SessionsEnded | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats or IngestStats()
        self.writer = IngestWriter(engine, self.stats, on_sessions_ended)
        self.shared_group = shared_group
        self.connected = False
        # paho's thread appends, the writer pops: a deque needs no lock for either.
        self._incoming: deque[Incoming] = deque()
        self._batch_max = settings.ingest_batch_max
        self._arrived = threading.Event()
        # The connection a message came on; acks and reconnects take turns (see the docstring).
        self._connection = 0
        self._ack_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # For /health and /metrics (monotonic seconds): the last commit, and since when the
        # batch being written (or, between batches, the oldest waiting message) has waited.
        self.last_commit: float | None = None
        self._writing_since: float | None = None
        self._writing_count = 0
        v5 = settings.mqtt_protocol == "5"
        if shared_group and not v5:
            raise ValueError('shared subscriptions need mqtt_protocol = "5"')
        self._v5 = v5
        self._client = hub_client(
            settings, client_id or settings.mqtt_client_id, persistent=True, manual_ack=True
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._event_sub_mid: int | None = None
        self.subscribed = threading.Event()

    def event_subscription(self) -> str:
        topic = subscription(TopicKind.EVENT)
        return f"$share/{self.shared_group}/{topic}" if self.shared_group else topic

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_writer, name="ingest-writer", daemon=True)
        self._thread.start()
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 7 * 24 * 3600  # keep our queue while we restart
        self._client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=30,
            clean_start=not self._v5,
            properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._client.disconnect()
        self._client.loop_stop()

    # paho thread
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the hub's connection: %s", reason_code)
            return
        with self._ack_lock:
            self._connection += 1
        self.connected = True
        if self.shared_group:
            # A persistent session keeps its subscriptions: one that used to take every
            # event must stop, or this worker would still receive all of them.
            client.unsubscribe(subscription(TopicKind.EVENT))
        _, self._event_sub_mid = client.subscribe(self.event_subscription(), qos=1)
        client.subscribe(subscription(TopicKind.STATUS), qos=1)
        client.subscribe(subscription(TopicKind.TELEMETRY), qos=0)
        log.info("ingest connected to %s:%s", self.settings.mqtt_host, self.settings.mqtt_port)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: object,
    ) -> None:
        if mid != self._event_sub_mid:
            return
        if any(code.is_failure for code in reason_codes):
            log.error(
                "the broker refused the event subscription %s: %s",
                self.event_subscription(),
                reason_codes,
            )
            return
        self.subscribed.set()
        log.info("ingest subscribed to %s", self.event_subscription())

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self.connected = False
        self.subscribed.clear()
        log.warning("ingest disconnected from the broker: %s", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        incoming = self._incoming
        # paho's annotation allows a bytearray; it hands bytes (no cast: this runs per message)
        payload: bytes = message.payload  # type: ignore[assignment]
        incoming.append(
            Incoming(
                message.topic,
                payload,
                message.mid,
                message.qos,
                self._connection,
                time.monotonic(),
            )
        )
        # The writer is woken by the first message and by a full batch, not by every one:
        # in a burst each wake-up would cost a thread switch per message.
        waiting = len(incoming)
        if (waiting == 1 or waiting >= self._batch_max) and not self._arrived.is_set():
            self._arrived.set()

    def _take_batch(self) -> list[Incoming]:
        """Up to `ingest_batch_max` messages, waiting at most `ingest_batch_ms` after the
        first for the batch to fill."""
        incoming, limit = self._incoming, self._batch_max
        if not incoming:
            self._arrived.clear()
            if not incoming and not self._arrived.wait(0.2):
                return []
        deadline = time.monotonic() + self.settings.ingest_batch_ms / 1000
        while len(incoming) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            if len(incoming) < limit:
                self._arrived.wait(remaining)  # woken when a full batch is waiting
        return [incoming.popleft() for _ in range(min(limit, len(incoming)))]

    # health: read from the web threads
    def writer_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def waiting(self) -> int:
        """Messages received and not yet committed (queued, or in the batch being written)."""
        return len(self._incoming) + (self._writing_count if self._writing_since is not None else 0)

    def lag_s(self) -> float:
        """How long the oldest message not yet committed has waited (0 when none waits)."""
        since = self._writing_since
        if since is None:
            try:
                since = self._incoming[0].arrived
            except IndexError:
                return 0.0
        return max(0.0, time.monotonic() - since)

    def since_commit_s(self) -> float | None:
        """Seconds since the writer last committed a batch (None before its first)."""
        return None if self.last_commit is None else time.monotonic() - self.last_commit

    # writer thread
    def _run_writer(self) -> None:
        while not (self._stop.is_set() and not self._incoming):
            batch = self._take_batch()
            if not batch:
                continue
            self._writing_count = len(batch)
            self._writing_since = min(item.arrived for item in batch)
            if not self._write_until_done(batch):
                return  # not stored: not acknowledged, the broker delivers it again
            self.last_commit = time.monotonic()
            self._writing_since = None
            self._acknowledge(batch)

    def _acknowledge(self, batch: list[Incoming]) -> None:
        """PUBACK each stored QoS 1 message of the current connection, all in one write."""
        with self._ack_lock:
            mids = mids_to_acknowledge(batch, self._connection)
            if mids:
                send_pubacks(self._client, mids)

    def _write_until_done(self, batch: list[Incoming]) -> bool:
        delay = 0.5
        while True:
            try:
                self.writer.write_batch(batch)
                return True
            except Exception as exc:
                # The writer dead-letters whatever a message holds; what reaches here is the
                # database being away (or a fault of the hub's own): keep the batch,
                # unacknowledged, and try again. The thread never dies of it.
                self.stats.add(db_retries=1)
                log.warning(
                    "database write failed (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    getattr(exc, "orig", None) or exc,
                    delay,
                    exc_info=not isinstance(exc, DBAPIError),
                )
                if self._stop.wait(delay):
                    log.error(
                        "stopping with %d unstored message(s); the broker keeps them", len(batch)
                    )
                    return False
                delay = min(delay * 2, 10)


def mids_to_acknowledge(batch: list[Incoming], connection: int) -> list[int]:
    """The packet ids to acknowledge: QoS 1 messages that came on `connection` (QoS 2 is
    not subscribed to; an earlier connection's ids may now name other messages)."""
    return [
        item.mid
        for item in batch
        if item.qos == 1 and item.mid is not None and item.connection == connection
    ]


_PUBACK = struct.Struct("!BBH")


def send_pubacks(client: mqtt.Client, mids: list[int]) -> None:
    """Acknowledge QoS 1 messages in one write to the socket.

    `Client.ack` queues one packet per message and wakes paho's network thread for each
    (a write to its socket pair): per message, that cost as much as storing the message. A
    PUBACK is 4 bytes (type, length 2, packet id), so a batch's acknowledgements are packed
    into one buffer and queued once, through paho's own packet queue (its `ack` does the
    same for one). Without that internal (another paho version), one `ack` each."""
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None or getattr(client, "_protocol", None) not in (
        mqtt.MQTTv311,
        mqtt.MQTTv5,
        mqtt.MQTTv31,
    ):
        for mid in mids:
            client.ack(mid, 1)
        return
    packets = b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
    queue_packet(mqtt.PUBACK, packets, 0, 0)
