"""How long the hub keeps telemetry, events and dead letters, and the purge that applies it.

The hub's settings give the defaults; an admin may override them (API, web or CLI), which is
kept in the `retention` table. Sessions, busy periods, print jobs, statements and the audit log
are never aged out: they are the lab's history and its money.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.db import rowcount
from hub.core.errors import InvalidValue
from hub.core.settings import Settings
from hub.models import DeadLetter, Event, RetentionRule, utcnow
from hub.telemetry import compact

KINDS = ("telemetry", "events", "dead_letters")
# An agent replays at most its last 10,000 sent events, within hours: an event must outlive
# any replay, or the hub would take a replayed one as new.
MIN_DAYS = {"telemetry": 1.0, "events": 30.0, "dead_letters": 1.0}
MAX_DAYS = 36_500.0  # a century: past it, say "forever" (and dates would overflow)


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
    """Keep `kind` so many days (None: for good); InvalidValue, on the field named by the
    kind, for a kind the hub does not keep or a number out of range (NaN included)."""
    if kind not in KINDS:
        raise InvalidValue(
            "retention.unknown_kind", field="kind", params={"kind": kind, "kinds": ", ".join(KINDS)}
        )
    if kind == "telemetry" and days is None:
        raise InvalidValue("retention.telemetry_forever", field=kind)
    if days is not None and not days <= MAX_DAYS:
        raise InvalidValue(
            "retention.too_long", field=kind, params={"kind": kind, "max": f"{MAX_DAYS:g}"}
        )
    if days is not None and days < MIN_DAYS[kind]:
        raise InvalidValue(
            "retention.events_too_short" if kind == "events" else "retention.too_short",
            field=kind,
            params={"kind": kind, "min": f"{MIN_DAYS[kind]:g}"},
        )
    rule = session.get(RetentionRule, kind) or RetentionRule(kind=kind)
    rule.days = days
    rule.changed_at = utcnow()
    session.add(rule)
    return rule


def change_policy(
    session: Session, *, settings: Settings, changes: dict[str, float | None], actor: str
) -> dict[str, float | None]:
    """Set the kinds given (the others unchanged), audited as `actor`, committed; the policy
    now in force. Nothing is saved when one of them is refused."""
    for kind, days in changes.items():
        set_rule(session, kind, days)
    record(
        session,
        actor=actor,
        action="retention.change",
        entity="retention",
        entity_id="policy",
        **changes,
    )
    session.commit()
    return policy(session, settings)


def apply_now(
    session: Session, engine: Engine, settings: Settings, *, now: datetime, actor: str
) -> dict[str, Any]:
    """Purge now (the hub also does it every hour), audited as `actor` in `session`."""
    counts = purge(engine, settings, now=now)
    record(
        session,
        actor=actor,
        action="retention.apply",
        entity="retention",
        entity_id="policy",
        **counts,
    )
    session.commit()
    return counts


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
