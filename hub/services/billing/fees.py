"""Booking fees on the month's statements: a no-show or a late cancellation charged by the
bookings (`Booking.fee_cents`, priced as a session of the booked slot) becomes a line of its
own on the payer's statement, beside the sessions.

A fee belongs to the month of its booking's start in the lab's time zone, as a session does.
Its line carries the booking as `booking-<id>` where a session line carries its session id,
so a credit note gives it back by that name; it is drawn from a prepaid balance and counted
in the statement's total, CSV and PDF like any line. Read in one query per close.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from hub.core.errors import N_, Conflict
from hub.domain.billing import Statement, StatementLine
from hub.domain.bookings import BookingStatus
from hub.models import Booking, Machine, Member
from hub.services.billing.usage import _utc_bounds

FEE_LINE_PREFIX = "booking-"
MAX_TOTAL_CENTS = 2**31 - 1
# The explanation stored on the line is the English text; the PDF says it again in the
# payer's language (fee_explanation_in).
FEE_WORDS = {
    BookingStatus.NO_SHOW.value: N_("no-show fee: booked %(slot)s, nobody came"),
    BookingStatus.CANCELLED.value: N_("late cancellation fee: booked %(slot)s, cancelled late"),
}


@dataclass(frozen=True, slots=True)
class BookingFee:
    booking_id: int
    status: str
    member_ref: str
    payer_ref: str
    machine: str
    starts_at: datetime
    ends_at: datetime
    cents: int


def fee_line_id(booking_id: int) -> str:
    return f"{FEE_LINE_PREFIX}{booking_id}"


def slot_text(starts_at: datetime, ends_at: datetime, tz: ZoneInfo) -> str:
    start, end = starts_at.astimezone(tz), ends_at.astimezone(tz)
    tail = end.strftime("%H:%M") if end.date() == start.date() else end.strftime("%Y-%m-%d %H:%M")
    return f"{start:%Y-%m-%d %H:%M}–{tail}"


def fee_explanation(status: str, slot: str, gettext: Callable[[str], str] = str) -> str:
    return gettext(FEE_WORDS[status]) % {"slot": slot}


def fee_explanation_in(line_id: str, explanation: str, gettext: Callable[[str], str]) -> str:
    """A fee line's explanation said in another language (the English one as stored if the
    line is not a fee's)."""
    if not line_id.startswith(FEE_LINE_PREFIX):
        return explanation
    for status, words in FEE_WORDS.items():
        head, _, tail = words.partition("%(slot)s")
        if explanation.startswith(head) and explanation.endswith(tail):
            slot = explanation[len(head) : len(explanation) - len(tail)]
            return fee_explanation(status, slot, gettext)
    return explanation


def month_fees(session: Session, first: date, nxt: date, tz: ZoneInfo) -> list[BookingFee]:
    """The month's charged fees (bookings starting in it, lab time), each with its payer: the
    member's company or school, else the member. One query. A negative fee is refused: the
    bookings never make one, so it is a hand-edited row, and billing it would pay the member."""
    start, end = _utc_bounds(first, nxt, tz)
    member, payer = aliased(Member), aliased(Member)
    rows = session.execute(
        sa.select(
            col(Booking.id),
            col(Booking.status),
            col(member.ref),
            sa.func.coalesce(col(payer.ref), col(member.ref)),
            col(Machine.code),
            col(Booking.starts_at),
            col(Booking.ends_at),
            col(Booking.fee_cents),
        )
        .join(member, col(member.id) == col(Booking.member_id))
        .outerjoin(payer, col(payer.id) == col(member.payer_id))
        .join(Machine, col(Machine.id) == col(Booking.machine_id))
        .where(
            col(Booking.fee_cents).is_not(None),
            col(Booking.fee_cents) != 0,
            col(Booking.status).in_(list(FEE_WORDS)),
            col(Booking.starts_at) >= start,
            col(Booking.starts_at) < end,
        )
        .order_by(col(Booking.starts_at), col(Booking.id))
    ).all()
    fees = [BookingFee(*row) for row in rows]
    for fee in fees:
        if fee.cents < 0:
            raise Conflict(
                "billing.negative_fee",
                field="fee_cents",
                params={"booking": fee.booking_id, "cents": fee.cents},
            )
    return fees


def add_booking_fees(
    statements: Sequence[Statement],
    fees: Sequence[BookingFee],
    month: str,
    tz: ZoneInfo,
    stored_starts: dict[str, str] | None,
    as_stored: Callable[[datetime], str],
) -> list[Statement]:
    """`statements` with each fee as a line after its payer's sessions; a payer with only
    fees gets a statement of them. Sorted by payer, as bill_month sorts them. On SQLite each
    fee line's start is added to `stored_starts` as the driver takes it (`as_stored`)."""
    if not fees:
        return list(statements)
    added: dict[str, list[StatementLine]] = defaultdict(list)
    for fee in fees:
        line_id = fee_line_id(fee.booking_id)
        added[fee.payer_ref].append(
            StatementLine(
                line_id,
                fee.member_ref,
                fee.machine,
                fee.starts_at,
                max(0, round((fee.ends_at - fee.starts_at).total_seconds() / 60)),
                fee.cents,
                fee_explanation(fee.status, slot_text(fee.starts_at, fee.ends_at, tz)),
            )
        )
        if stored_starts is not None:
            stored_starts[line_id] = as_stored(fee.starts_at)
    by_payer = {s.payer_ref: s for s in statements}
    for payer_ref, lines in added.items():
        before = by_payer.get(payer_ref)
        grown = by_payer[payer_ref] = Statement(
            payer_ref, month, (before.lines if before else ()) + tuple(lines)
        )
        if grown.total_cents > MAX_TOTAL_CENTS:
            # A statement's total is a 32-bit column: refused by name, not as a database error.
            raise Conflict(
                "billing.fee_too_large",
                field="fee_cents",
                params={"payer": payer_ref, "cents": grown.total_cents},
            )
    return [by_payer[ref] for ref in sorted(by_payer)]
