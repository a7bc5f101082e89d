"""The journal forwarder: events go to the journal first, then to the broker, in seq order.

The agent's decisions put their events on the outbox (under its state lock, with their time);
the loop thread journals them and publishes the unsent rows, a bounded number in flight, and
marks a row sent only when the broker acknowledges it. Samples of telemetry go out at once
(QoS 0), or are kept in the journal while the broker is away and sent after the events.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime
from typing import Any

from edge.journal import Journal, JournalFull
from edge.transport import MqttTransport
from protocol.vocab import EventType

log = logging.getLogger(__name__)

MAX_INFLIGHT = 200
# Sent events kept for a hub that asks for them again (a `sync` command), then pruned.
JOURNAL_KEEP_SENT = 10_000


class Forwarder:
    """Set `journal` before the first `drain`, and `transport` once the broker is configured;
    every method but `emit` is the loop thread's (or, before the loop runs, the starting
    thread's)."""

    def __init__(self, *, event_topic: str, telemetry_topic: str) -> None:
        self.event_topic = event_topic
        self.telemetry_topic = telemetry_topic
        self.journal: Journal | None = None
        self.transport: MqttTransport | None = None
        # Events emitted under the agent's state lock, in order, with their time.
        self._outbox: deque[tuple[EventType, dict[str, Any], datetime]] = deque()
        self._inflight: dict[int, int] = {}  # message id -> seq, until the broker acks it
        self._published_upto = 0

    @property
    def inflight(self) -> int:
        """Events published and not yet acknowledged."""
        return len(self._inflight)

    def emit(self, type: EventType, data: dict[str, Any], at: datetime) -> None:
        """Called under the state lock: the event takes its place and its time now, so a
        decision never waits for the disk."""
        self._outbox.append((type, data, at))

    def drain(self) -> None:
        """Journal the emitted events in order, then publish them."""
        assert self.journal is not None
        wrote = False
        while self._outbox:
            type, data, at = self._outbox.popleft()
            try:
                self.journal.append(type, data, at=at)
                wrote = True
            except JournalFull:
                # Disk full and the memory reserve used up: the decision stands (the relay
                # has already switched), the event cannot be kept. Said loudly, once per event.
                log.error("journal full, disk and memory: %s event lost", type.value)
        if wrote:
            self.pump()

    def pump(self) -> None:
        """Publish unsent journal rows in seq order, a bounded number in flight at a time."""
        if self.transport is None or not self.transport.connected or self.journal is None:
            return
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        for seq, payload in self.journal.unsent(limit=room, after_seq=self._published_upto):
            mid = self.transport.publish(self.event_topic, payload, qos=1)
            if mid is None:
                return
            self._inflight[mid] = seq
            self._published_upto = seq

    def sync(self, from_seq: object) -> None:
        """The hub's `sync` command: what it asks for again, then every unsent row anew."""
        if isinstance(from_seq, int) and from_seq > 0:
            self._resend(from_seq)
        self._restart()
        self.pump()

    def _resend(self, from_seq: int) -> None:
        """Publish again what the journal still holds from `from_seq` on (the hub dedupes)."""
        if self.transport is None or not self.transport.connected or self.journal is None:
            return
        rows = self.journal.since(from_seq, limit=JOURNAL_KEEP_SENT)
        for _seq, payload in rows:
            self.transport.publish(self.event_topic, payload, qos=1)
        log.info("the hub asked for events from seq %d: %d sent again", from_seq, len(rows))

    def _restart(self) -> None:
        """Forget what was in flight: unacknowledged rows are published again from the first."""
        self._inflight.clear()
        self._published_upto = 0

    def acked(self, mid: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None and self.journal is not None:
            self.journal.mark_sent(seq)
        self.pump()

    def connected(self) -> None:
        self._restart()
        self.pump()
        self._send_kept_telemetry()

    def disconnected(self) -> None:
        self._restart()

    def telemetry(self, payload: bytes) -> None:
        """A sample: to the broker now, or kept for the hub's history while it is away."""
        if self.transport is not None and self.transport.connected:
            self.transport.publish(self.telemetry_topic, payload, qos=0)
        elif self.journal is not None:
            # Shed first on a full disk (the journal's choice).
            self.journal.keep_telemetry(payload)

    def _send_kept_telemetry(self) -> None:
        """Samples taken while the broker was away, after the events (QoS 0, oldest first)."""
        while self.journal is not None and self.transport is not None:
            rows = self.journal.kept_telemetry(limit=500)
            if not rows:
                return
            for _id, payload in rows:
                if self.transport.publish(self.telemetry_topic, payload, qos=0) is None:
                    return
            self.journal.forget_telemetry(rows[-1][0])
