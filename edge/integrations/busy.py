"""Busy sources (GPIO input, power plug, Ruida controller), reported to the agent one way.

A source watches one signal on its own thread and reports through a `BusyReport`, which
turns what it sees into what the hub reads the same way for every source:
- `machine.busy` / `machine.idle` with `source` (`power`, `ruida`; the GPIO input is `gpio`),
  enqueued as an `IntegrationEvent` (edge.inputs) exactly like OctoPrint's; the agent's loop makes
  the session machine account the busy time, so `busy_s` is computed in one place;
- `incident.reported` with `kind="source-offline"` when the source has said nothing for its
  `silent_after_s` (or never answered since the start), then `kind="source-online"` when it
  speaks again. A silent source is taken as idle: a dead plug must not keep a session open
  and billed for ever (the session machine never times out a busy machine).
The machine is busy while any of its sources says so (`AnyBusy`), so a laser with both the
beam-fire input and a Ruida controller is not made idle by the first one that stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from protocol.vocab import EventType

EmitEvent = Callable[[EventType, dict[str, Any]], None]
EmitTelemetry = Callable[[dict[str, Any]], None]

SOURCE_OFFLINE = "source-offline"
SOURCE_ONLINE = "source-online"


class BusySource(Protocol):
    """What the agent needs of a source: a name, and a thread to start and stop."""

    source: str

    def start(self) -> None: ...

    def stop(self, timeout: float = 10) -> None: ...


class BusyReport:
    """A source's busy state and reachability, emitted only when they change.

    Called from one thread at a time (the source holds its own lock); the callbacks only
    enqueue."""

    def __init__(self, source: str, emit_event: EmitEvent, emit_telemetry: EmitTelemetry) -> None:
        self.source = source
        self._emit_event = emit_event
        self._emit_telemetry = emit_telemetry
        self.busy = False
        self.online: bool | None = None  # None: not heard from yet

    def set_busy(self, busy: bool) -> None:
        if busy == self.busy:
            return
        self.busy = busy
        kind = EventType.MACHINE_BUSY if busy else EventType.MACHINE_IDLE
        self._emit_event(kind, {"source": self.source})

    def set_online(self, online: bool, note: str) -> None:
        if online == self.online:
            return
        was = self.online
        self.online = online
        if not online:
            self._emit_event(
                EventType.INCIDENT_REPORTED,
                {"source": self.source, "kind": SOURCE_OFFLINE, "note": note},
            )
            self.set_busy(False)
        elif was is False:
            self._emit_event(
                EventType.INCIDENT_REPORTED,
                {"source": self.source, "kind": SOURCE_ONLINE, "note": note},
            )

    def telemetry(self, values: dict[str, Any]) -> None:
        self._emit_telemetry(values)


class AnyBusy:
    """The machine works while at least one source says so."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    def update(self, source: str, busy: bool) -> bool:
        if busy:
            self._busy.add(source)
        else:
            self._busy.discard(source)
        return bool(self._busy)

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(self._busy)
