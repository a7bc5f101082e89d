"""Interlocks and accessories as pure rules: which safety inputs hold a badge back, which fault
ends a session, and which accessory relay is on. Plain values in, decisions out; the agent
feeds them the inputs' states and its clock (edge/hardware/interlocks.py does the GPIO)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from edge.domain.access import Decision
from protocol.lite import AllowEntry
from protocol.vocab import DenyReason


@dataclass(frozen=True, slots=True)
class Interlock:
    name: str
    kind: str
    grace_s: float = 0.0  # time it may take to come up once the relay closed


@dataclass(frozen=True, slots=True)
class Accessory:
    name: str
    run_on_s: float = 0.0
    training: str | None = None


def not_ok_at_start(interlocks: list[Interlock], ok: dict[str, bool]) -> list[str]:
    """The interlocks that must hold before the relay closes and do not."""
    return [i.name for i in interlocks if i.grace_s == 0 and not ok.get(i.name, False)]


def gate(decision: Decision, interlocks: list[Interlock], ok: dict[str, bool]) -> Decision:
    """No relay without its interlocks: a grant becomes a denial while one is not OK. For
    everybody, maintainers included: a lockout is the lab's rule, an interlock is physics."""
    if decision.granted and not_ok_at_start(interlocks, ok):
        return Decision(False, DenyReason.INTERLOCK_OPEN, decision.entry)
    return decision


def faults(
    interlocks: list[Interlock],
    ok: dict[str, bool],
    *,
    relay_closed_at: datetime | None,
    now: datetime,
) -> list[str]:
    """The interlocks in fault while the relay is closed: not OK and past their grace."""
    if relay_closed_at is None:
        return []
    return [
        i.name
        for i in interlocks
        if not ok.get(i.name, False) and now - relay_closed_at >= timedelta(seconds=i.grace_s)
    ]


def training_refusal(
    accessory: Accessory, entry: AllowEntry | None, now: datetime
) -> DenyReason | None:
    """Why this member may not use the accessory, or None when they may."""
    if accessory.training is None:
        return None
    trainings = entry.trainings if entry is not None else {}
    if accessory.training not in trainings:
        return DenyReason.NOT_TRAINED
    expires = trainings[accessory.training]
    if expires is not None and expires <= now:
        return DenyReason.TRAINING_EXPIRED
    return None


def accessory_on(
    accessory: Accessory,
    *,
    relay_closed: bool,
    allowed: bool,
    was_on: bool,
    relay_opened_at: datetime | None,
    now: datetime,
) -> bool:
    """On with the machine's relay (for a member allowed to use it), then on for its run-on
    after the relay opens if it was on."""
    if relay_closed:
        return allowed
    if not was_on or relay_opened_at is None or accessory.run_on_s <= 0:
        return False
    return now - relay_opened_at < timedelta(seconds=accessory.run_on_s)
