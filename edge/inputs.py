"""The agent's inputs: what GPIO callbacks, paho, integrations and timers put on its queue.

One frozen class per kind, as the session machine's actions are (edge.domain.session): the
event-loop thread dispatches on the type, and mypy checks each input's fields where it is
made and where it is read. A card read is not here: it is decided in the reader's thread
(edge.agent), and only its answer (`Decided`) goes through the queue.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from protocol.vocab import EventType

# A caller waiting for an answer: `Agent.tap` and `Agent.state` block on one of these.
Reply: TypeAlias = queue.Queue[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BusyChanged:
    """The busy GPIO input went up or down, or `Agent.set_busy` (a simulated machine)."""

    busy: bool


@dataclass(frozen=True, slots=True)
class IncidentPressed:
    """The incident button was pressed."""


@dataclass(frozen=True, slots=True)
class InterlockChanged:
    """A safety input changed (door, airflow, e-stop); the board says which are in fault."""

    name: str
    ok: bool


@dataclass(frozen=True, slots=True)
class IntegrationEvent:
    """An event from an integration (OctoPrint, a power plug, a laser controller)."""

    type: EventType
    data: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class EnergyRead:
    """A smart plug's energy counter (kWh), shared out between sessions by the session machine."""

    total_kwh: float


@dataclass(frozen=True, slots=True)
class Readings:
    """Readings from an integration: published at once, or kept while the broker is away."""

    values: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class Message:
    """A message from the broker, as paho delivered it: the allow-list, a command, a plug."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Acked:
    """The broker acknowledged the QoS 1 publish with this message id."""

    mid: int


@dataclass(frozen=True, slots=True)
class Connected:
    """The link to the broker is up (again)."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The link to the broker is down."""


@dataclass(frozen=True, slots=True)
class StateAsked:
    """`Agent.state`: the machine's state, answered on `reply`."""

    reply: Reply = field(hash=False)


@dataclass(frozen=True, slots=True)
class Decided:
    """A card read was decided in the reader's thread: its events are on the outbox, and
    `answer` goes to `reply` (a tap's caller) once they are journaled."""

    reply: Reply | None = field(hash=False)
    answer: dict[str, Any] | None = field(hash=False)


@dataclass(frozen=True, slots=True)
class Tick:
    """Nothing arrived for a tick: time to run the timers."""


@dataclass(frozen=True, slots=True)
class Stop:
    """`Agent.stop`: end the session, journal, flush and leave the loop."""


Input: TypeAlias = (
    BusyChanged
    | IncidentPressed
    | InterlockChanged
    | IntegrationEvent
    | EnergyRead
    | Readings
    | Message
    | Acked
    | Connected
    | Disconnected
    | StateAsked
    | Decided
    | Tick
    | Stop
)

# The broker link's own inputs: the only ones still handled while stopping (`Agent._flush`).
LINK = (Acked, Connected, Disconnected)
