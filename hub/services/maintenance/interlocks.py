"""The safety interlocks' faults the maintenance page shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from hub.models import (
    Event,
)
from protocol.envelope import EventType

INTERLOCK_WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class InterlockFaults:
    """How often one interlock of one machine went into fault in the window."""

    machine: str
    interlock: str
    kind: str
    count: int
    last_at: datetime


def interlock_faults(
    session: Session, *, now: datetime, window: timedelta = INTERLOCK_WINDOW
) -> list[InterlockFaults]:
    """The interlock.fault events of the window, counted per machine and interlock, most
    frequent first: a chiller that trips every week wants servicing before it fails a job."""
    rows = session.exec(
        select(Event.machine, Event.ts, Event.data)
        .where(Event.type == EventType.INTERLOCK_FAULT.value)
        .where(col(Event.ts) >= now - window)
    ).all()
    counted: dict[tuple[str, str], tuple[str, int, datetime]] = {}
    for machine, ts, data in rows:
        key = (machine, str(data.get("interlock", "?")))
        kind, count, last = counted.get(key, (str(data.get("kind", "?")), 0, ts))
        counted[key] = (kind, count + 1, max(last, ts))
    return sorted(
        (
            InterlockFaults(machine, name, kind, count, last)
            for (machine, name), (kind, count, last) in counted.items()
        ),
        key=lambda f: (-f.count, f.machine, f.interlock),
    )
