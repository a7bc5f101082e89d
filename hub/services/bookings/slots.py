"""Reading bookings: the live slots of a machine, listings, what the API shows of one,
the maintenance due that blocks a day, and the slots an allow-list carries."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.core.errors import InvalidValue, NotFound
from hub.domain.bookings import (
    BookingKind,
    BookingStatus,
    MaintenanceWindow,
    Slot,
    maintenance_windows,
)
from hub.domain.maintenance import DueStatus
from hub.models import (
    Booking,
    BookingPublic,
    Machine,
    Member,
)
from hub.services.machine_views import known_machine

LIVE = (BookingStatus.BOOKED.value, BookingStatus.USED.value)
# Longest span a listing or a calendar feed may ask for.
MAX_LIST_DAYS = 400
MAX_LIST_ROWS = 5000


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
