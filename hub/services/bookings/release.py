"""The release the booking watch runs: bookings used or overrun, no-shows released and
priced, the bookings a lockout covers cancelled, reminders; their owners told."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.audit import record
from hub.domain.bookings import (
    BookingKind,
    BookingStatus,
    badge_counts,
    covered_by_lockout,
    is_no_show,
    release_at,
)
from hub.models import (
    Booking,
    Machine,
    MachineSession,
)
from hub.services.bookings.booking import _fee
from hub.services.bookings.rules import rules_for
from hub.services.bookings.slots import (
    _refs,
    _slot,
)
from hub.services.notification_triggers import to_member

# A member is reminded of a booking this long before it starts.
REMINDER_BEFORE = timedelta(hours=1)


# --- the release worker ------------------------------------------------------------------
@dataclass
class ReleaseResult:
    used: list[int] = field(default_factory=list)
    no_shows: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    overruns: list[int] = field(default_factory=list)
    machines: set[str] = field(default_factory=set)  # whose allow-lists changed


def release_due(session: Session, *, now: datetime, tz: ZoneInfo) -> ReleaseResult:
    """One pass of the worker: bookings the booker badged on are marked used (and overrun
    when a session outlived the slot); bookings past their grace nobody badged on are
    released as no-shows, with the fee when the rules charge one; the bookings a lockout in
    force covers are cancelled and their owners told. Commits."""
    result = ReleaseResult()
    machines = {m.id: m for m in session.exec(select(Machine)).all()}
    rules = {mid: rules_for(session, m) for mid, m in machines.items()}
    started = session.exec(
        select(Booking).where(
            Booking.status == BookingStatus.BOOKED.value,
            Booking.kind == BookingKind.BOOKING.value,
            col(Booking.starts_at) <= now + timedelta(days=1),
        )
    ).all()
    refs = _refs(session, {b.member_id for b in started if b.member_id is not None})
    for row in started:
        machine = machines[row.machine_id]
        ref = refs.get(row.member_id) if row.member_id is not None else None
        rule = rules[row.machine_id]
        if machine.locked and row.ends_at > now:
            _cancel_for_lockout(session, row, machine, ref, now, tz, result)
            continue
        if now < row.starts_at <= now + REMINDER_BEFORE:
            _tell(session, row, machine, ref, "booking.reminder", now, tz, grace=rule.grace_minutes)
        if row.starts_at - timedelta(minutes=rule.grace_minutes) > now:
            continue
        sessions = session.exec(
            select(MachineSession).where(
                MachineSession.machine == machine.code,
                MachineSession.member_ref == (ref or ""),
                col(MachineSession.started_at)
                >= row.starts_at - timedelta(minutes=rule.grace_minutes),
                col(MachineSession.started_at) <= row.ends_at,
            )
        ).all()
        honoured = [
            s
            for s in sessions
            if s.started_at is not None
            and badge_counts(
                starts_at=row.starts_at,
                ends_at=row.ends_at,
                grace_minutes=rule.grace_minutes,
                badged_at=s.started_at,
            )
        ]
        if honoured:
            row.status = BookingStatus.USED.value
            row.session_id = honoured[0].id
            result.used.append(row.id or 0)
        elif is_no_show(
            rule,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            badged=[s.started_at for s in sessions if s.started_at is not None],
            now=now,
        ):
            row.status = BookingStatus.NO_SHOW.value
            row.released_at = now
            if rule.no_show_fee:
                row.fee_cents = _fee(session, row, machine, tz)
            result.no_shows.append(row.id or 0)
            result.machines.add(machine.code)
            _tell(session, row, machine, ref, "booking.no_show", now, tz)
            record(
                session,
                actor="hub:bookings",
                action="booking.no_show",
                entity="booking",
                entity_id=str(row.id),
                released_at=release_at(rule, row.starts_at).isoformat(),
                fee_cents=row.fee_cents,
            )
        session.add(row)
    _mark_overruns(session, now, result)
    session.commit()
    return result


def when(moment: datetime, tz: ZoneInfo) -> str:
    """A time as a person in the lab reads it: local, to the minute."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _tell(
    session: Session,
    row: Booking,
    machine: Machine,
    ref: str | None,
    kind: str,
    now: datetime,
    tz: ZoneInfo,
    **extra: Any,
) -> None:
    """Notify the booking's owner (once per booking and kind: the cause is the key)."""
    to_member(
        session,
        member_ref=ref,
        kind=kind,
        cause=f"{kind}:{row.id}",
        params={
            "machine": machine.name,
            "machine_code": machine.code,
            "when": when(row.starts_at, tz),
            "reason": machine.lock_reason or "",
            "member": ref or "",
            **extra,
        },
        now=now,
    )


def _cancel_for_lockout(
    session: Session,
    row: Booking,
    machine: Machine,
    ref: str | None,
    now: datetime,
    tz: ZoneInfo,
    result: ReleaseResult,
) -> None:
    if not covered_by_lockout([_slot(row, {})], now=now):
        return
    row.status = BookingStatus.CANCELLED.value
    row.cancelled_at = now
    row.cancel_reason = f"lockout: {machine.lock_reason or ''}"[:200]
    session.add(row)
    result.cancelled.append(row.id or 0)
    result.machines.add(machine.code)
    record(
        session,
        actor="hub:bookings",
        action="booking.cancel",
        entity="booking",
        entity_id=str(row.id),
        reason=row.cancel_reason,
    )
    _tell(session, row, machine, ref, "booking.cancelled", now, tz)


def _mark_overruns(session: Session, now: datetime, result: ReleaseResult) -> None:
    """A used booking whose session ran (or still runs) past the slot's end is an overrun."""
    rows = session.exec(
        select(Booking).where(
            Booking.status == BookingStatus.USED.value,
            col(Booking.overrun).is_(False),
            col(Booking.ends_at) < now,
            col(Booking.ends_at) > now - timedelta(days=2),
        )
    ).all()
    for row in rows:
        run = session.get(MachineSession, row.session_id) if row.session_id else None
        if run is None:
            continue
        if run.ended_at is None or run.ended_at > row.ends_at:
            row.overrun = True
            session.add(row)
            result.overruns.append(row.id or 0)
