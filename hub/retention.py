"""How long the hub keeps telemetry, events and dead letters, and the purge that applies it.

The hub's settings give the defaults; an admin may override them (API or CLI), which is kept
in the `retention` table. Sessions, busy periods, print jobs, statements and the audit log
are never aged out: they are the lab's history and its money.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.core.db import rowcount
from hub.core.settings import Settings
from hub.models import DeadLetter, Event, RetentionRule, utcnow
from hub.telemetry import compact

KINDS = ("telemetry", "events", "dead_letters")
# An agent replays at most its last 10,000 sent events, within hours: an event must outlive
# any replay, or the hub would take a replayed one as new.
MIN_DAYS = {"telemetry": 1.0, "events": 30.0, "dead_letters": 1.0}
MAX_DAYS = 36_500.0  # a century: past it, say "forever" (and dates would overflow)


class RetentionError(ValueError):
    """A person's mistake: the message names the kind or the number and the fix."""


def defaults(settings: Settings) -> dict[str, float | None]:
    return {
        "telemetry": settings.telemetry_keep_days,
        "events": settings.event_keep_days,
        "dead_letters": settings.dead_letter_keep_days,
    }


def policy(session: Session, settings: Settings) -> dict[str, float | None]:
    """The days each kind is kept (None: for good), the admin's choice over the settings."""
    rules = defaults(settings)
    for rule in session.exec(select(RetentionRule)):
        if rule.kind in rules:
            rules[rule.kind] = rule.days
    return rules


def set_rule(session: Session, kind: str, days: float | None) -> RetentionRule:
    if kind not in KINDS:
        raise RetentionError(f"{kind!r} is not kept by the hub: use {', '.join(KINDS)}")
    if kind == "telemetry" and days is None:
        raise RetentionError("telemetry cannot be kept for good: give a number of days")
    if days is not None and not days <= MAX_DAYS:
        raise RetentionError(f"{kind}: at most {MAX_DAYS:g} days; to keep them for good, say so")
    if days is not None and days < MIN_DAYS[kind]:
        raise RetentionError(
            f"{kind}: keep them at least {MIN_DAYS[kind]:g} days"
            + (" (an agent may still replay them)" if kind == "events" else "")
        )
    rule = session.get(RetentionRule, kind) or RetentionRule(kind=kind)
    rule.days = days
    rule.changed_at = utcnow()
    session.add(rule)
    return rule


def purge(engine: Engine, settings: Settings, *, now: datetime) -> dict[str, Any]:
    """Apply the policy once: telemetry downsampled and aged out, old events and dead letters
    deleted. Returns what was removed."""
    with Session(engine) as session:
        rules = policy(session, settings)
    counts: dict[str, Any] = {}
    telemetry_days = rules["telemetry"] or settings.telemetry_keep_days
    counts["telemetry"] = compact(
        engine,
        now=now,
        raw_hours=settings.telemetry_raw_hours,
        bucket_s=settings.telemetry_downsample_s,
        keep_days=telemetry_days,
    )
    with Session(engine) as session:
        events = dead = 0
        if rules["events"] is not None:
            cutoff = now - timedelta(days=rules["events"])
            events = rowcount(session.execute(delete(Event).where(col(Event.ts) < cutoff)))
        if rules["dead_letters"] is not None:
            cutoff = now - timedelta(days=rules["dead_letters"])
            dead = rowcount(
                session.execute(delete(DeadLetter).where(col(DeadLetter.received_at) < cutoff))
            )
        session.commit()
    counts["events"] = int(events)
    counts["dead_letters"] = int(dead)
    return counts
