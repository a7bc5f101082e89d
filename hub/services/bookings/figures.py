"""The bookings as calendars (iCalendar feeds) and as figures (statistics, yearly review)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.core.errors import InvalidValue, NotFound
from hub.domain.bookings import (
    BookingKind,
)
from hub.models import (
    Booking,
    Machine,
    MachineSession,
    Member,
)
from hub.services.bookings.slots import (
    MAX_LIST_DAYS,
)
from hub.services.machine_views import known_machine

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
