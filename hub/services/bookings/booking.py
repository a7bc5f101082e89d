"""Booking, moving and cancelling: the domain's refusals raised as HubErrors, the fee of a
late cancellation priced by billing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, Forbidden, HubError, InvalidValue, NotFound
from hub.domain.billing import NoRateError, price_session
from hub.domain.bookings import (
    BookingKind,
    BookingRequest,
    BookingStatus,
    Refusal,
    Slot,
    check_booking,
    fee_record,
    late_cancellation,
    may_change,
)
from hub.domain.trainings import training_valid
from hub.models import (
    Booking,
    Machine,
    MachineType,
    Member,
    MemberStatus,
    Training,
)
from hub.services.billing.rates import all_rates
from hub.services.bookings.rules import rule_row, rules_for
from hub.services.bookings.slots import (
    LIVE,
    _refs,
    _slot,
    get_booking,
    live_slots,
    maintenance_for,
)
from hub.services.machine_views import known_machine

log = logging.getLogger(__name__)


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
