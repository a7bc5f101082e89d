"""How long the hub keeps telemetry, events and dead letters, and the purge that applies it.

The hub's settings give the defaults; an admin may override them (API, web or CLI), which is
kept in the `retention` table. Sessions, busy periods, print jobs, statements and the audit log
are never aged out: they are the lab's history and its money. Two rules follow the CNIL's
guidance for access control (docs/rgpd.md): raw badge reads and refusals (`badge.granted`,
`badge.denied` events) go after `badge_events` days (90 by default), and sessions of a billed
(closed) month older than `sessions` days (548) keep their figures but lose their member: the
member's reference becomes a pseudonym, the badge's UID is cleared.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.db import rowcount
from hub.core.errors import InvalidValue
from hub.core.settings import Settings
from hub.models import (
    BillingMonth,
    BusyPeriod,
    DeadLetter,
    Event,
    LabSetting,
    MachineSession,
    PrintJob,
    RetentionRule,
    utcnow,
)
from hub.telemetry import compact
from protocol import limits

KINDS = ("telemetry", "events", "dead_letters", "badge_events", "sessions")
# An agent replays at most its last 10,000 sent events, within hours: an event must outlive
# any replay, or the hub would take a replayed one as new. A badge event too: 1 day.
MIN_DAYS = {
    "telemetry": 1.0,
    "events": 30.0,
    "dead_letters": 1.0,
    "badge_events": 1.0,
    "sessions": 30.0,
}
BADGE_EVENT_TYPES = ("badge.granted", "badge.denied")
PSEUDONYM_PREFIX = "p-"
MAX_DAYS = 36_500.0  # a century: past it, say "forever" (and dates would overflow)


def defaults(settings: Settings) -> dict[str, float | None]:
    return {
        "telemetry": settings.telemetry_keep_days,
        "events": settings.event_keep_days,
        "dead_letters": settings.dead_letter_keep_days,
        "badge_events": settings.badge_event_keep_days,
        "sessions": settings.session_pseudonymise_days,
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
    counts["badge_events"] = _purge_badge_events(engine, rules["badge_events"], now)
    counts["sessions"] = _pseudonymise_sessions(engine, settings, rules["sessions"], now)
    return counts


def _purge_badge_events(engine: Engine, days: float | None, now: datetime) -> int:
    if days is None:
        return 0
    cutoff = now - timedelta(days=days)
    with Session(engine) as session:
        gone = rowcount(
            session.execute(
                delete(Event).where(col(Event.type).in_(BADGE_EVENT_TYPES), col(Event.ts) < cutoff)
            )
        )
        session.commit()
    return int(gone)


def pseudonym(salt: str, ref: str) -> str:
    """A member's stable stand-in: the same member gets the same one (counts per member
    still add up), and it cannot be turned back into the member without the lab's salt."""
    digest = hmac.new(salt.encode(), ref.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[: limits.MEMBER_REF_MAX_CHARS - len(PSEUDONYM_PREFIX)]


def _salt(session: Session) -> str:
    row = session.get(LabSetting, "pseudonym_salt")
    if row is None:
        row = LabSetting(key="pseudonym_salt", value=secrets.token_hex(32), changed_by="hub")
        session.add(row)
        session.flush()
    return row.value


def _pseudonymise_sessions(
    engine: Engine, settings: Settings, days: float | None, now: datetime
) -> int:
    """Sessions of closed months that started before `now - days`: member and supervisor
    references become pseudonyms (on their busy periods and print jobs too), the badge UID
    goes. A session of a month not closed yet is left: it still has to be billed."""
    if days is None:
        return 0
    cutoff = now - timedelta(days=days)
    tz = ZoneInfo(settings.timezone)
    done = 0
    with Session(engine) as session:
        closed = set(session.exec(select(BillingMonth.month)).all())
        if not closed:
            return 0
        salt = _salt(session)
        candidates = session.exec(
            select(MachineSession).where(
                col(MachineSession.started_at) < cutoff,
                col(MachineSession.ended_at).is_not(None),
                ~col(MachineSession.member_ref).startswith(PSEUDONYM_PREFIX),
            )
        ).all()
        for row in candidates:
            assert row.started_at is not None
            if row.started_at.astimezone(tz).strftime("%Y-%m") not in closed:
                continue
            ref = row.member_ref
            row.member_ref = pseudonym(salt, ref)
            if row.supervisor_ref and not row.supervisor_ref.startswith(PSEUDONYM_PREFIX):
                row.supervisor_ref = pseudonym(salt, row.supervisor_ref)
            row.badge = ""
            session.add(row)
            for table in (BusyPeriod, PrintJob):
                session.execute(
                    update(table)
                    .where(col(table.session_id) == row.id, col(table.member_ref) == ref)
                    .values(member_ref=row.member_ref)
                )
            done += 1
        session.commit()
    return done
