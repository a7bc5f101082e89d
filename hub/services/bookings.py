"""Bookings: members book, move and cancel their own; staff book for anyone and block slots.

The rules are `hub.domain.bookings`'s; this module fetches what they take (the machine's
rules, its slots, the member's week, the maintenance due) and raises their refusal as a
HubError naming the field. The release worker (`release_due`) marks bookings used or released
as no-shows, prices the fee, cancels the bookings a lockout covers and tells their owners.
After a change the caller re-publishes the machine's allow-list, which carries its bookings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, Forbidden, HubError, InvalidValue, NotFound
from hub.domain.billing import NoRateError, price_session
from hub.domain.bookings import (
    BookingKind,
    BookingRequest,
    BookingRules,
    BookingStatus,
    MaintenanceWindow,
    Opening,
    Refusal,
    Slot,
    badge_counts,
    check_booking,
    covered_by_lockout,
    fee_record,
    is_no_show,
    late_cancellation,
    maintenance_windows,
    may_change,
    release_at,
)
from hub.domain.maintenance import DueStatus
from hub.domain.trainings import training_valid
from hub.models import (
    Booking,
    BookingPublic,
    BookingRuleRow,
    Machine,
    MachineSession,
    MachineType,
    Member,
    MemberStatus,
    Training,
)
from hub.services.billing.rates import all_rates
from hub.services.machine_views import known_machine
from hub.services.notification_triggers import to_member

log = logging.getLogger(__name__)

LIVE = (BookingStatus.BOOKED.value, BookingStatus.USED.value)
# A member is reminded of a booking this long before it starts.
REMINDER_BEFORE = timedelta(hours=1)
# Longest span a listing or a calendar feed may ask for.
MAX_LIST_DAYS = 400
MAX_LIST_ROWS = 5000


# --- rules -------------------------------------------------------------------------------
def rules_of(row: BookingRuleRow | None) -> BookingRules:
    """The domain's rules from a stored row (no row: not bookable)."""
    if row is None:
        return BookingRules()
    return BookingRules(
        bookable=row.bookable,
        slot_minutes=row.slot_minutes,
        min_minutes=row.min_minutes,
        max_minutes=row.max_minutes,
        ahead_days=dict(row.ahead_days),
        week_hours=dict(row.week_hours),
        opening=tuple(
            Opening(int(d), time.fromisoformat(o), time.fromisoformat(c)) for d, o, c in row.opening
        ),
        trained_only=row.trained_only,
        grace_minutes=row.grace_minutes,
        no_show_fee=row.no_show_fee,
        late_cancel_hours=row.late_cancel_hours,
    )


def rule_row(session: Session, machine: Machine) -> BookingRuleRow | None:
    """The machine's own rules, else its type's, else None."""
    own = session.exec(
        select(BookingRuleRow).where(BookingRuleRow.machine_id == machine.id)
    ).first()
    if own is not None:
        return own
    return session.exec(
        select(BookingRuleRow).where(BookingRuleRow.machine_type_id == machine.machine_type_id)
    ).first()


def rules_for(session: Session, machine: Machine) -> BookingRules:
    return rules_of(rule_row(session, machine))


RULE_FIELDS = (
    "bookable",
    "slot_minutes",
    "min_minutes",
    "max_minutes",
    "ahead_days",
    "week_hours",
    "opening",
    "trained_only",
    "grace_minutes",
    "no_show_fee",
    "late_cancel_hours",
)


def set_rules(
    session: Session,
    *,
    machine_type: str | None = None,
    machine: str | None = None,
    values: dict[str, Any],
    actor: str,
) -> BookingRuleRow:
    """Set a machine type's rules, or one machine's override (exactly one of the two), from
    `values` (the RULE_FIELDS; the rest keep their stored or default values), and commit.
    Refuses with InvalidValue naming the field."""
    if (machine_type is None) == (machine is None):
        raise InvalidValue("booking.rules_scope", field="machine")
    unknown = sorted(set(values) - set(RULE_FIELDS))
    if unknown:
        raise InvalidValue(
            "booking.rule_unknown",
            field=unknown[0],
            params={"name": unknown[0], "known": ", ".join(RULE_FIELDS)},
        )
    if machine is not None:
        target = known_machine(session, machine)
        row = session.exec(
            select(BookingRuleRow).where(BookingRuleRow.machine_id == target.id)
        ).first() or BookingRuleRow(machine_id=target.id)
        if row.id is None:  # an override starts from its type's rules
            inherited = rule_row(session, target)
            if inherited is not None:
                for name in RULE_FIELDS:
                    setattr(row, name, getattr(inherited, name))
    else:
        mtype = known_machine_type(session, machine_type or "")
        row = session.exec(
            select(BookingRuleRow).where(BookingRuleRow.machine_type_id == mtype.id)
        ).first() or BookingRuleRow(machine_type_id=mtype.id)
    for name, value in values.items():
        setattr(row, name, _rule_value(name, value))
    try:
        rules_of(row)
    except (ValueError, TypeError) as exc:
        raise InvalidValue(
            "booking.rules_invalid", field="rules", params={"reason": str(exc)}
        ) from None
    session.add(row)
    record(
        session,
        actor=actor,
        action="booking.rules",
        entity="machine" if machine else "machine_type",
        entity_id=machine or machine_type or "",
        **{name: getattr(row, name) for name in RULE_FIELDS},
    )
    session.commit()
    return row


def known_machine_type(session: Session, code: str) -> MachineType:
    """The machine type with this code, or NotFound naming the codes there are."""
    mtype = (
        session.exec(select(MachineType).where(MachineType.code == code)).first()
        if "\x00" not in code
        else None
    )
    if mtype is None:
        known = ", ".join(session.exec(select(MachineType.code).order_by(MachineType.code)))
        raise NotFound(
            "machine_type.unknown",
            field="machine_type",
            params={"machine_type": code[:100], "known": known or "-"},
        )
    return mtype


_INTS = {"slot_minutes", "min_minutes", "max_minutes", "grace_minutes", "late_cancel_hours"}
_BOOLS = {"bookable", "trained_only", "no_show_fee"}


def _rule_value(name: str, value: Any) -> Any:
    bad = InvalidValue(
        "booking.rule_invalid", field=name, params={"name": name, "value": str(value)[:100]}
    )
    if name in _INTS:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
            raise bad
        return value
    if name in _BOOLS:
        if not isinstance(value, bool):
            raise bad
        return value
    if name in ("ahead_days", "week_hours"):
        if not isinstance(value, dict):
            raise bad
        out: dict[str, Any] = {}
        for category, number in value.items():
            if (
                not isinstance(category, str)
                or not 0 < len(category) <= 20
                or "\x00" in category
                or isinstance(number, bool)
                or not isinstance(number, int | float)
                or number != number  # NaN
                or not 0 <= number <= 10_000
            ):
                raise bad
            out[category] = int(number) if name == "ahead_days" else float(number)
        return out
    # opening: [[weekday, "HH:MM", "HH:MM"], ...]
    if not isinstance(value, list) or len(value) > 100:
        raise bad
    spans = []
    for span in value:
        try:
            weekday, opens, closes = span
            Opening(int(weekday), time.fromisoformat(opens), time.fromisoformat(closes))
        except (TypeError, ValueError):
            raise bad from None
        spans.append([int(weekday), opens, closes])
    return spans


# --- reading -----------------------------------------------------------------------------
def _slot(row: Booking, refs: dict[int, str]) -> Slot:
    return Slot(
        row.id,
        row.starts_at,
        row.ends_at,
        refs.get(row.member_id) if row.member_id is not None else None,
        BookingKind(row.kind),
    )


def live_slots(
    session: Session, *, machine_id: int, since: datetime, until: datetime
) -> list[Booking]:
    """The machine's bookings and blocks not cancelled nor released, overlapping the span."""
    return list(
        session.exec(
            select(Booking)
            .where(
                Booking.machine_id == machine_id,
                col(Booking.status).in_(LIVE),
                col(Booking.ends_at) > since,
                col(Booking.starts_at) < until,
            )
            .order_by(col(Booking.starts_at), col(Booking.id))
        )
    )


def _refs(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(
        session.execute(select(Member.id, Member.ref).where(col(Member.id).in_(ids))).tuples().all()
    )


def maintenance_for(
    session: Session, machine: Machine, *, now: datetime, tz: ZoneInfo
) -> list[MaintenanceWindow]:
    """The days maintenance falls due on the machine (today for what is due or overdue)."""
    from hub.services.maintenance.tasks import task_states

    today = now.astimezone(tz).date()
    days: list[tuple[str, date]] = []
    for state in task_states(session, now=now, machine_codes=[machine.code]):
        if state.state.status in (DueStatus.DUE, DueStatus.OVERDUE):
            days.append((state.task.title, today))
        elif state.due_on is not None:
            days.append((state.task.title, max(state.due_on, today)))
    return maintenance_windows(days, tz)


def public(session: Session, row: Booking, machine_code: str | None = None) -> BookingPublic:
    if machine_code is None:
        machine = session.get(Machine, row.machine_id)
        machine_code = machine.code if machine is not None else ""
    ref = None
    if row.member_id is not None:
        member = session.get(Member, row.member_id)
        ref = member.ref if member is not None else None
    assert row.id is not None
    return BookingPublic(
        id=row.id,
        machine=machine_code,
        member_id=row.member_id,
        member_ref=ref,
        kind=row.kind,
        status=row.status,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        note=row.note,
        created_by=row.created_by,
        cancelled_at=row.cancelled_at,
        cancel_reason=row.cancel_reason,
        overrun=row.overrun,
        fee_cents=row.fee_cents,
    )


def list_bookings(
    session: Session,
    *,
    machine: str | None = None,
    member_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    limit: int = 500,
) -> list[Booking]:
    """Bookings overlapping [since, until), filtered, in start order."""
    if since is not None and until is not None:
        if until <= since:
            raise InvalidValue(
                "booking.period_empty", field="until", params={"since": since.isoformat()}
            )
        if until - since > timedelta(days=MAX_LIST_DAYS):
            raise InvalidValue(
                "booking.period_too_long", field="until", params={"days": MAX_LIST_DAYS}
            )
    if status is not None and status not in {s.value for s in BookingStatus}:
        raise InvalidValue(
            "booking.status_unknown",
            field="status",
            params={"status": status, "known": ", ".join(s.value for s in BookingStatus)},
        )
    if not 1 <= limit <= MAX_LIST_ROWS:
        raise InvalidValue("booking.limit", field="limit", params={"max": MAX_LIST_ROWS})
    query = select(Booking)
    if machine is not None:
        query = query.where(Booking.machine_id == known_machine(session, machine).id)
    if member_id is not None:
        query = query.where(Booking.member_id == member_id)
    if since is not None:
        query = query.where(col(Booking.ends_at) > since)
    if until is not None:
        query = query.where(col(Booking.starts_at) < until)
    if status is not None:
        query = query.where(Booking.status == status)
    return list(session.exec(query.order_by(col(Booking.starts_at), col(Booking.id)).limit(limit)))


def get_booking(session: Session, booking_id: int) -> Booking:
    row = session.get(Booking, booking_id)
    if row is None:
        raise NotFound("booking.unknown", field="booking", params={"booking": booking_id})
    return row


# --- booking -----------------------------------------------------------------------------
@dataclass
class Actor:
    """Who asks: their audit name, the member they are (None: a staff login with no member),
    and whether they are staff (trainer, manager, admin: may book for anyone and block)."""

    name: str
    member_id: int | None = None
    staff: bool = False
    refs: dict[int, str] = field(default_factory=dict)


def _raise(refusal: Refusal) -> None:
    kind: type[HubError]
    if refusal.code in ("booking.taken", "booking.blocked", "booking.maintenance_due"):
        kind = Conflict
    elif refusal.code in ("booking.not_yours",):
        kind = Forbidden
    elif refusal.code in ("booking.not_booked", "booking.started"):
        kind = Conflict
    else:
        kind = InvalidValue
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in refusal.params.items()}
    raise kind(refusal.code, field=refusal.field, params=params)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValue("booking.naive_time", field=name)
    try:
        moment = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidValue("booking.time_range", field=name) from None
    if not datetime(2000, 1, 1, tzinfo=UTC) <= moment <= datetime(2200, 1, 1, tzinfo=UTC):
        raise InvalidValue("booking.time_range", field=name)
    return moment


def _member_facts(
    session: Session, member: Member, machine: Machine, at: datetime
) -> tuple[str, bool]:
    """The member's category and whether they hold a training on the type valid at `at`."""
    trainings = session.exec(
        select(Training.expires_at).where(
            Training.member_id == member.id, Training.machine_type_id == machine.machine_type_id
        )
    ).all()
    return member.category.value, any(training_valid(exp, at) for exp in trainings)


def _check(
    session: Session,
    *,
    machine: Machine,
    member: Member | None,
    starts_at: datetime,
    ends_at: datetime,
    actor: Actor,
    block: bool,
    moving: int | None,
    now: datetime,
    tz: ZoneInfo,
) -> None:
    rules = rules_for(session, machine)
    assert machine.id is not None
    span_start = min(starts_at, ends_at)
    slots = live_slots(
        session,
        machine_id=machine.id,
        since=span_start - timedelta(days=1),
        until=max(starts_at, ends_at) + timedelta(days=1),
    )
    category, trained = ("", False)
    member_slots: list[Slot] = []
    if member is not None:
        category, trained = _member_facts(session, member, machine, starts_at)
        week_from = span_start - timedelta(days=8)
        same_rules = [
            m.id
            for m in session.exec(select(Machine)).all()
            if rule_row(session, m) is rule_row(session, machine) or m.id == machine.id
        ]
        member_slots = [
            _slot(row, {})
            for row in session.exec(
                select(Booking).where(
                    Booking.member_id == member.id,
                    col(Booking.machine_id).in_(same_rules),
                    col(Booking.status).in_(LIVE),
                    col(Booking.ends_at) > week_from,
                    col(Booking.starts_at) < span_start + timedelta(days=8),
                )
            )
        ]
    request = BookingRequest(
        starts_at,
        ends_at,
        member.ref if member is not None else None,
        category=category,
        trained=trained,
        by_staff=actor.staff,
        kind=BookingKind.BLOCK if block else BookingKind.BOOKING,
        moving=moving,
    )
    refusal = check_booking(
        rules,
        request,
        machine_slots=[_slot(s, {}) for s in slots],
        member_slots=member_slots,
        maintenance=maintenance_for(session, machine, now=now, tz=tz),
        now=now,
        tz=tz,
    )
    if refusal is not None:
        _raise(refusal)


def book(
    session: Session,
    *,
    machine: str,
    starts_at: datetime,
    ends_at: datetime,
    actor: Actor,
    member_id: int | None = None,
    block: bool = False,
    note: str = "",
    now: datetime,
    tz: ZoneInfo,
) -> Booking:
    """Book `machine` for the actor (or, staff only, for `member_id`), or block it (staff
    only), and commit. Refuses with the domain's reason as a HubError."""
    starts_at, ends_at = _aware(starts_at, "starts_at"), _aware(ends_at, "ends_at")
    note = _note(note)
    target = known_machine(session, machine)
    if (block or (member_id is not None and member_id != actor.member_id)) and not actor.staff:
        raise Forbidden("booking.staff_only", field="member_id" if not block else "block")
    member: Member | None = None
    if not block:
        wanted = member_id if member_id is not None else actor.member_id
        if wanted is None:
            raise InvalidValue("booking.member_missing", field="member_id")
        member = session.get(Member, wanted)
        if member is None:
            raise NotFound("member.unknown_id", field="member_id", params={"member": wanted})
        if member.status != MemberStatus.ACTIVE:
            raise Conflict(
                "booking.member_inactive",
                field="member_id",
                params={"member": member.name, "status": member.status.value},
            )
    _lock_machine(session, target)
    _check(
        session,
        machine=target,
        member=member,
        starts_at=starts_at,
        ends_at=ends_at,
        actor=actor,
        block=block,
        moving=None,
        now=now,
        tz=tz,
    )
    row = Booking(
        machine_id=target.id,  # type: ignore[arg-type]
        member_id=member.id if member is not None else None,
        kind=(BookingKind.BLOCK if block else BookingKind.BOOKING).value,
        starts_at=starts_at,
        ends_at=ends_at,
        note=note,
        created_by=actor.name[:100],
        created_at=now,
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor.name,
        action="booking.block" if block else "booking.create",
        entity="booking",
        entity_id=str(row.id),
        machine=target.code,
        starts_at=starts_at.isoformat(),
        ends_at=ends_at.isoformat(),
    )
    session.commit()
    return row


def _note(note: str) -> str:
    note = (note or "").strip()
    if "\x00" in note or len(note) > 200:
        raise InvalidValue("booking.note_invalid", field="note", params={"max": 200})
    return note


def _lock_machine(session: Session, machine: Machine) -> None:
    """Hold the machine's row until commit (PostgreSQL), so two bookings checked at once
    cannot both pass the overlap check; SQLite serialises writers anyway."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(select(Machine.id).where(Machine.id == machine.id).with_for_update())


def move(
    session: Session,
    *,
    booking_id: int,
    starts_at: datetime | None,
    ends_at: datetime | None,
    note: str | None = None,
    actor: Actor,
    now: datetime,
    tz: ZoneInfo,
) -> Booking:
    """Move a booking (its owner before it starts, or staff) and commit."""
    row = get_booking(session, booking_id)
    _may_change(session, row, actor, now)
    start = _aware(starts_at, "starts_at") if starts_at is not None else row.starts_at
    end = _aware(ends_at, "ends_at") if ends_at is not None else row.ends_at
    machine = session.get(Machine, row.machine_id)
    assert machine is not None
    member = session.get(Member, row.member_id) if row.member_id is not None else None
    _lock_machine(session, machine)
    _check(
        session,
        machine=machine,
        member=member,
        starts_at=start,
        ends_at=end,
        actor=actor,
        block=row.kind == BookingKind.BLOCK.value,
        moving=row.id,
        now=now,
        tz=tz,
    )
    before = (row.starts_at.isoformat(), row.ends_at.isoformat())
    row.starts_at, row.ends_at = start, end
    if note is not None:
        row.note = _note(note)
    session.add(row)
    record(
        session,
        actor=actor.name,
        action="booking.move",
        entity="booking",
        entity_id=str(row.id),
        before=list(before),
        after=[start.isoformat(), end.isoformat()],
    )
    session.commit()
    return row


def _may_change(session: Session, row: Booking, actor: Actor, now: datetime) -> None:
    refs = _refs(session, {i for i in (row.member_id, actor.member_id) if i is not None})
    refusal = may_change(
        owner=refs.get(row.member_id) if row.member_id is not None else None,
        actor=refs.get(actor.member_id) if actor.member_id is not None else None,
        by_staff=actor.staff,
        status=BookingStatus(row.status),
        starts_at=row.starts_at,
        now=now,
    )
    if refusal is not None:
        _raise(refusal)


def cancel(
    session: Session,
    *,
    booking_id: int,
    actor: Actor,
    reason: str = "",
    now: datetime,
    tz: ZoneInfo,
) -> Booking:
    """Cancel a booking (its owner before it starts, or staff) and commit; a member's own
    cancellation within the rules' notice period is charged the no-show fee."""
    row = get_booking(session, booking_id)
    _may_change(session, row, actor, now)
    machine = session.get(Machine, row.machine_id)
    assert machine is not None
    row.status = BookingStatus.CANCELLED.value
    row.cancelled_at = now
    row.cancel_reason = _note(reason) or None
    own = row.member_id is not None and row.member_id == actor.member_id
    if own and late_cancellation(rules_for(session, machine), starts_at=row.starts_at, now=now):
        row.fee_cents = _fee(session, row, machine, tz)
    session.add(row)
    record(
        session,
        actor=actor.name,
        action="booking.cancel",
        entity="booking",
        entity_id=str(row.id),
        fee_cents=row.fee_cents,
    )
    session.commit()
    return row


def _fee(session: Session, row: Booking, machine: Machine, tz: ZoneInfo) -> int | None:
    """The no-show fee: the booked slot priced as a session of the member by billing's rates.
    None when no rate covers it (logged; the lab must add one)."""
    member = session.get(Member, row.member_id) if row.member_id is not None else None
    mtype = session.get(MachineType, machine.machine_type_id)
    if member is None or mtype is None:
        return None
    payer = session.get(Member, member.payer_id) if member.payer_id else None
    usage = fee_record(
        booking_id=row.id or 0,
        member=member.ref,
        machine=machine.code,
        machine_type=mtype.code,
        category=member.category.value,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        payer=payer.ref if payer else None,
    )
    try:
        charge = price_session(
            usage,
            all_rates(session),
            tz=tz,
            already_used_included_minutes=0,
            charged_today_cents={},
        )
    except NoRateError as exc:
        log.warning("booking %s: no-show fee not priced: %s", row.id, exc)
        return None
    return charge.cents


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


# --- for the allow-list ------------------------------------------------------------------
def allowlist_slots(
    session: Session, *, machine_id: int, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """The machine's live bookings and blocks overlapping the list's validity, as the list
    carries them (`protocol.allowlist.BookedSlot`)."""
    from protocol.envelope import utc_iso

    rows = live_slots(session, machine_id=machine_id, since=since, until=until)
    refs = _refs(session, {r.member_id for r in rows if r.member_id is not None})
    return [
        {
            "starts_at": utc_iso(r.starts_at),
            "ends_at": utc_iso(r.ends_at),
            "member": refs.get(r.member_id) if r.member_id is not None else None,
        }
        for r in rows
    ]


# --- calendar feeds ----------------------------------------------------------------------
FEED_PAST = timedelta(days=30)
FEED_AHEAD = timedelta(days=MAX_LIST_DAYS - 31)


def _feed_rows(session: Session, query: Any, now: datetime) -> list[Booking]:
    return list(
        session.exec(
            query.where(
                col(Booking.ends_at) > now - FEED_PAST,
                col(Booking.starts_at) < now + FEED_AHEAD,
            ).order_by(col(Booking.starts_at))
        )
    )


def member_feed(session: Session, *, member_id: int, now: datetime, site: str) -> str:
    """The member's bookings (a month back, a year ahead) as an iCalendar feed."""
    from hub.domain.bookings import FeedItem, ical_feed

    member = session.get(Member, member_id)
    if member is None:
        raise NotFound("member.unknown_id", field="member_id", params={"member": member_id})
    names = {m.id: m.name for m in session.exec(select(Machine))}
    rows = _feed_rows(session, select(Booking).where(Booking.member_id == member_id), now)
    items = [
        FeedItem(
            r.id or 0,
            names.get(r.machine_id, "?"),
            r.starts_at,
            r.ends_at,
            names.get(r.machine_id, "?") + (f": {r.note}" if r.note else ""),
            r.status,
        )
        for r in rows
    ]
    return ical_feed(items, name=f"Atelier: {member.name}", site=site, generated_at=now)


def machine_feed(session: Session, *, machine: str, now: datetime, site: str) -> str:
    """The machine's bookings and blocks as an iCalendar feed, without members' names (a
    booking says "Booked", a block its note)."""
    from hub.domain.bookings import FeedItem, ical_feed

    target = known_machine(session, machine)
    rows = _feed_rows(session, select(Booking).where(Booking.machine_id == target.id), now)
    items = [
        FeedItem(
            r.id or 0,
            target.name,
            r.starts_at,
            r.ends_at,
            (r.note or "Held") if r.kind == BookingKind.BLOCK.value else "Booked",
            r.status,
        )
        for r in rows
    ]
    return ical_feed(items, name=f"Atelier: {target.name}", site=site, generated_at=now)


# --- statistics --------------------------------------------------------------------------
def figures(session: Session, *, since: datetime, until: datetime, tz: ZoneInfo) -> Any:
    """`hub.domain.bookings.booking_figures` of the members' bookings starting in
    [since, until): booked against used hours, no-shows, peak demand."""
    from hub.domain.bookings import BookingFact, booking_figures

    if until <= since:
        raise InvalidValue(
            "booking.period_empty", field="until", params={"since": since.isoformat()}
        )
    codes = {m.id: m.code for m in session.exec(select(Machine))}
    import sqlalchemy as sa

    rows = session.execute(
        sa.select(
            col(Booking.machine_id),
            col(Booking.starts_at),
            col(Booking.ends_at),
            col(Booking.status),
            col(Booking.overrun),
            col(MachineSession.duration_s),
        )
        .outerjoin(MachineSession, col(MachineSession.id) == col(Booking.session_id))
        .where(
            col(Booking.kind) == BookingKind.BOOKING.value,
            col(Booking.starts_at) >= since,
            col(Booking.starts_at) < until,
        )
    ).all()
    return booking_figures(
        (
            BookingFact(codes.get(mid, "?"), start, end, status, float(used or 0), bool(over))
            for mid, start, end, status, over, used in rows
        ),
        tz,
    )
