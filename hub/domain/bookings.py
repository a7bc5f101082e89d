"""Pure booking rules: whether a slot may be booked, no-shows, late cancellations, fees.

Plain values in, a `Refusal` (code, field, params) or a decision out; the clock is the `now`
the caller passes. `hub/services/bookings/` fetches the values and raises the refusal as a
HubError; the machine applies the same slots offline from its allow-list
(`edge/domain/access.py`).

Times are UTC-aware datetimes; opening hours and weeks are the lab's local time (`tz`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from hub.domain.billing import UsageRecord
from hub.domain.maintenance import ical_escape, ical_fold

# The key of a per-category map that applies to every category not named.
ANY_CATEGORY = "*"
# Longest a rule may say, so a typo cannot make a year-long slot or a century ahead.
MAX_SLOT_MINUTES = 24 * 60
MAX_BOOKING_MINUTES = 7 * 24 * 60
MAX_AHEAD_DAYS = 366
MAX_WEEK_HOURS = 7 * 24


class BookingKind(StrEnum):
    BOOKING = "booking"  # a member's
    BLOCK = "block"  # staff holding the machine: a training session, an event


class BookingStatus(StrEnum):
    BOOKED = "booked"
    USED = "used"  # the booker badged on it in time
    NO_SHOW = "no_show"  # released after the grace period, nobody badged
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Opening:
    """One span of opening hours in the lab's local time: weekday 0 is Monday."""

    weekday: int
    opens: time
    closes: time  # after `opens`; 00:00 means midnight at the end of the day

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ValueError("weekday is 0 (Monday) to 6 (Sunday)")
        if self.closes != time(0) and self.closes <= self.opens:
            raise ValueError("an opening closes after it opens")


@dataclass(frozen=True)
class BookingRules:
    """A machine type's rules, or one machine's override of them (which replaces them whole)."""

    bookable: bool = False
    slot_minutes: int = 30
    min_minutes: int = 30
    max_minutes: int = 240
    # By member category (ANY_CATEGORY for the rest); a category in neither may not book.
    ahead_days: Mapping[str, int] = field(default_factory=lambda: {ANY_CATEGORY: 14})
    # Hours a member may have booked on machines under these rules per week (Monday to Sunday,
    # lab time); a category in neither has no limit.
    week_hours: Mapping[str, float] = field(default_factory=dict)
    # Empty: bookable at any hour.
    opening: tuple[Opening, ...] = ()
    trained_only: bool = True
    grace_minutes: int = 15
    # A no-show, or a cancellation less than `late_cancel_hours` before the start, is charged
    # as a session of the booked length (billing prices it with the machine's rate).
    no_show_fee: bool = False
    late_cancel_hours: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.slot_minutes <= MAX_SLOT_MINUTES:
            raise ValueError(f"slot_minutes is 1 to {MAX_SLOT_MINUTES}")
        if not self.slot_minutes <= self.min_minutes <= self.max_minutes <= MAX_BOOKING_MINUTES:
            raise ValueError("slot_minutes <= min_minutes <= max_minutes <= a week")
        if any(not 0 <= d <= MAX_AHEAD_DAYS for d in self.ahead_days.values()):
            raise ValueError(f"ahead_days is 0 to {MAX_AHEAD_DAYS}")
        if any(not 0 <= h <= MAX_WEEK_HOURS for h in self.week_hours.values()):
            raise ValueError(f"week_hours is 0 to {MAX_WEEK_HOURS}")
        if not 0 <= self.grace_minutes <= 24 * 60:
            raise ValueError("grace_minutes is 0 to a day")
        if not 0 <= self.late_cancel_hours <= 24 * 14:
            raise ValueError("late_cancel_hours is 0 to two weeks")


@dataclass(frozen=True)
class Slot:
    """A booking or block already on a machine (or another of the member's)."""

    id: int | None
    starts_at: datetime
    ends_at: datetime
    member: str | None  # member ref; None for a block
    kind: BookingKind = BookingKind.BOOKING
    machine: str = ""


@dataclass(frozen=True)
class BookingRequest:
    """What someone asks for. `member` None with kind BLOCK: staff holding the machine."""

    starts_at: datetime
    ends_at: datetime
    member: str | None
    category: str = ""
    trained: bool = False
    by_staff: bool = False
    kind: BookingKind = BookingKind.BOOKING
    moving: int | None = None  # the id of the booking being moved (not a conflict with itself)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: a HubError's code, field and params."""

    code: str
    field: str | None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class MaintenanceWindow:
    """A span in which maintenance is due on the machine: no booking may cover it."""

    starts_at: datetime
    ends_at: datetime
    task: str


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def _overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def category_value(values: Mapping[str, Any], category: str) -> Any | None:
    """A per-category setting: the category's own, else the default, else None."""
    if category in values:
        return values[category]
    return values.get(ANY_CATEGORY)


def week_start(moment: datetime, tz: ZoneInfo) -> datetime:
    """Monday 00:00 (lab time) of the week holding `moment`, as UTC."""
    local = moment.astimezone(tz)
    monday = local.date() - timedelta(days=local.weekday())
    return datetime.combine(monday, time(0), tz).astimezone(UTC)


def within_opening(
    starts_at: datetime, ends_at: datetime, opening: Sequence[Opening], tz: ZoneInfo
) -> bool:
    """Whether the whole span lies in opening hours (contiguous spans join: a lab open until
    midnight and from midnight is open across it). Empty `opening`: always open."""
    if not opening:
        return True
    cursor = starts_at
    # Walk the span a local day at a time; each step must be inside one opening span.
    for _ in range(400):
        local = cursor.astimezone(tz)
        day = local.date()
        covered_until: datetime | None = None
        for span in opening:
            if span.weekday != local.weekday():
                continue
            opens = datetime.combine(day, span.opens, tz)
            closes = (
                datetime.combine(day + timedelta(days=1), time(0), tz)
                if span.closes == time(0)
                else datetime.combine(day, span.closes, tz)
            )
            if opens <= local < closes:
                covered_until = max(covered_until or closes, closes)
        if covered_until is None:
            return False
        if covered_until >= ends_at:
            return True
        cursor = covered_until.astimezone(UTC)
    return False


def check_booking(
    rules: BookingRules,
    request: BookingRequest,
    *,
    machine_slots: Iterable[Slot],
    member_slots: Iterable[Slot] = (),
    maintenance: Iterable[MaintenanceWindow] = (),
    now: datetime,
    tz: ZoneInfo,
) -> Refusal | None:
    """Why `request` may not be booked, or None.

    `machine_slots`: the machine's live bookings and blocks (cancelled and released ones left
    out); `member_slots`: the member's live bookings on any machine under the same rules, for
    the weekly hours. Staff (`by_staff`) are not held to how far ahead, the weekly hours nor
    the opening hours (an event may run late); a block (kind BLOCK) is held to none of the
    member's rules, only to not overlapping and to maintenance. Nobody books into the past.
    """
    start, end = request.starts_at, request.ends_at
    if end <= start:
        return Refusal("booking.end_before_start", "ends_at", {"starts_at": start, "ends_at": end})
    if end <= now:
        return Refusal("booking.in_past", "starts_at", {"now": now})
    if request.kind is BookingKind.BOOKING:
        refusal = _member_rules(rules, request, member_slots, now, tz)
        if refusal is not None:
            return refusal
    elif _minutes(end - start) > MAX_BOOKING_MINUTES:
        return Refusal("booking.too_long", "ends_at", {"max_minutes": MAX_BOOKING_MINUTES})
    for window in maintenance:
        if _overlaps(start, end, window.starts_at, window.ends_at):
            return Refusal(
                "booking.maintenance_due",
                "starts_at",
                {"task": window.task, "starts_at": window.starts_at, "ends_at": window.ends_at},
            )
    for slot in machine_slots:
        if slot.id is not None and slot.id == request.moving:
            continue
        if _overlaps(start, end, slot.starts_at, slot.ends_at):
            return Refusal(
                "booking.blocked" if slot.kind is BookingKind.BLOCK else "booking.taken",
                "starts_at",
                {"starts_at": slot.starts_at, "ends_at": slot.ends_at},
            )
    return None


def _member_rules(
    rules: BookingRules,
    request: BookingRequest,
    member_slots: Iterable[Slot],
    now: datetime,
    tz: ZoneInfo,
) -> Refusal | None:
    start, end = request.starts_at, request.ends_at
    if not rules.bookable:
        return Refusal("booking.not_bookable", "machine")
    if request.member is None:
        return Refusal("booking.member_missing", "member")
    if start < now and request.moving is None:
        return Refusal("booking.in_past", "starts_at", {"now": now})
    if rules.trained_only and not request.trained:
        return Refusal("booking.not_trained", "member", {"member": request.member})
    length = _minutes(end - start)
    slot = rules.slot_minutes
    local_start = start.astimezone(tz)
    offset = local_start.hour * 60 + local_start.minute
    if local_start.second or local_start.microsecond or offset % slot or length % slot:
        return Refusal("booking.off_slot", "starts_at", {"slot_minutes": slot})
    if length < rules.min_minutes:
        return Refusal("booking.too_short", "ends_at", {"min_minutes": rules.min_minutes})
    if length > rules.max_minutes:
        return Refusal("booking.too_long", "ends_at", {"max_minutes": rules.max_minutes})
    if request.by_staff:
        return None
    ahead = category_value(rules.ahead_days, request.category)
    if ahead is None:
        return Refusal("booking.category_may_not_book", "member", {"category": request.category})
    if start > now + timedelta(days=ahead):
        return Refusal(
            "booking.too_far_ahead", "starts_at", {"days": ahead, "category": request.category}
        )
    if not within_opening(start, end, rules.opening, tz):
        return Refusal("booking.closed", "starts_at", {})
    limit = category_value(rules.week_hours, request.category)
    if limit is not None:
        week = week_start(start, tz)
        week_end = week + timedelta(days=7)
        booked = sum(
            _minutes(min(s.ends_at, week_end) - max(s.starts_at, week))
            for s in member_slots
            if s.id != request.moving and _overlaps(s.starts_at, s.ends_at, week, week_end)
        )
        # A booking that crosses into next week counts in the week it starts.
        if booked + length > limit * 60:
            return Refusal(
                "booking.week_hours",
                "ends_at",
                {"hours": limit, "booked_hours": round(booked / 60, 2)},
            )
    return None


def may_change(
    *,
    owner: str | None,
    actor: str | None,
    by_staff: bool,
    status: BookingStatus,
    starts_at: datetime,
    now: datetime,
) -> Refusal | None:
    """Whether `actor` (a member ref) may move or cancel this booking now: its owner or staff,
    while it is still booked; a member cannot change a booking that has already started."""
    if status is not BookingStatus.BOOKED:
        return Refusal("booking.not_booked", None, {"status": status.value})
    if not by_staff and (actor is None or actor != owner):
        return Refusal("booking.not_yours", None, {})
    if not by_staff and starts_at <= now:
        return Refusal("booking.started", None, {"starts_at": starts_at})
    return None


def late_cancellation(rules: BookingRules, *, starts_at: datetime, now: datetime) -> bool:
    """A cancellation this close to the start is charged (when the rules charge no-shows and
    set a notice period)."""
    return (
        rules.no_show_fee
        and rules.late_cancel_hours > 0
        and starts_at - now < timedelta(hours=rules.late_cancel_hours)
    )


def release_at(rules: BookingRules, starts_at: datetime) -> datetime:
    """When a booking nobody badged on is released as a no-show."""
    return starts_at + timedelta(minutes=rules.grace_minutes)


def badge_counts(
    *, starts_at: datetime, ends_at: datetime, grace_minutes: int, badged_at: datetime
) -> bool:
    """Whether a session the booker started at `badged_at` honours the booking: from a
    grace period before the start (they may start a little early) to the grace after it."""
    grace = timedelta(minutes=grace_minutes)
    return starts_at - grace <= badged_at <= min(ends_at, starts_at + grace)


def is_no_show(
    rules: BookingRules,
    *,
    starts_at: datetime,
    ends_at: datetime,
    badged: Iterable[datetime],
    now: datetime,
) -> bool:
    """Released as a no-show: the grace period is over and the booker started no session that
    counts (see `badge_counts`)."""
    if now < release_at(rules, starts_at):
        return False
    return not any(
        badge_counts(
            starts_at=starts_at, ends_at=ends_at, grace_minutes=rules.grace_minutes, badged_at=at
        )
        for at in badged
    )


def fee_record(
    *,
    booking_id: int,
    member: str,
    machine: str,
    machine_type: str,
    category: str,
    starts_at: datetime,
    ends_at: datetime,
    payer: str | None = None,
) -> UsageRecord:
    """A no-show or late cancellation as billing prices it: a session over the booked slot."""
    return UsageRecord(
        session_id=f"booking-{booking_id}",
        member_ref=member,
        machine=machine,
        machine_type=machine_type,
        category=category,
        started_at=starts_at,
        ended_at=ends_at,
        payer_ref=payer,
    )


# How far ahead a lockout cancels bookings: a lockout has no planned end, and the maintainers
# often lift it within the day, so later bookings stay until they come this close.
LOCKOUT_HORIZON = timedelta(hours=24)


def covered_by_lockout(slots: Iterable[Slot], *, now: datetime) -> list[Slot]:
    """The members' bookings a lockout in force at `now` cancels: those not yet over that
    start within LOCKOUT_HORIZON (blocks stay: staff hold them on purpose)."""
    return [
        s
        for s in slots
        if s.kind is BookingKind.BOOKING and s.ends_at > now and s.starts_at < now + LOCKOUT_HORIZON
    ]


def maintenance_windows(
    due_days: Iterable[tuple[str, Any]], tz: ZoneInfo
) -> list[MaintenanceWindow]:
    """The lab-local day each task falls due on, as a window no booking may cover (the
    maintainers' day for it): `due_days` pairs a task's title with its `date`."""
    windows = []
    for title, day in due_days:
        opens = datetime.combine(day, time(0), tz).astimezone(UTC)
        windows.append(MaintenanceWindow(opens, opens + timedelta(days=1), title))
    return windows


@dataclass(frozen=True)
class FeedItem:
    """One booking as a calendar shows it."""

    id: int
    machine: str  # the machine's name
    starts_at: datetime
    ends_at: datetime
    summary: str
    status: str = "booked"


def ical_feed(items: Iterable[FeedItem], *, name: str, site: str, generated_at: datetime) -> str:
    """A VCALENDAR (RFC 5545) with one VEVENT per booking, in UTC; a cancelled or released
    booking stays in the feed as STATUS:CANCELLED so a subscribed calendar removes it. The
    UID is the booking's id, so a moved booking updates its event."""
    stamp = generated_at.strftime("%Y%m%dT%H%M%SZ")
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Atelier//Bookings//EN",
        "CALSCALE:GREGORIAN",
        f"X-WR-CALNAME:{ical_escape(name)}",
    ]
    for item in sorted(items, key=lambda i: (i.starts_at, i.id)):
        live = item.status in (BookingStatus.BOOKED.value, BookingStatus.USED.value)
        lines += [
            "BEGIN:VEVENT",
            f"UID:booking-{item.id}@atelier.{site}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{item.starts_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}",
            f"DTEND:{item.ends_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}",
            f"SUMMARY:{ical_escape(item.summary)}",
            f"LOCATION:{ical_escape(item.machine)}",
            f"STATUS:{'CONFIRMED' if live else 'CANCELLED'}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(folded + "\r\n" for line in lines for folded in ical_fold(line))


@dataclass(frozen=True)
class BookingFact:
    """One booking as the statistics see it: its slot, what became of it, and how long the
    session that honoured it ran (0 when none)."""

    machine: str
    starts_at: datetime
    ends_at: datetime
    status: str
    used_seconds: float = 0.0
    overrun: bool = False


@dataclass(frozen=True)
class BookingFigures:
    """Booked against used hours per machine, no-shows, cancellations, overruns, and the
    hours of the week most booked (peak demand: hour of week 0 is Monday 00:00 lab time)."""

    booked_hours: dict[str, float]
    used_hours: dict[str, float]
    bookings: int
    no_shows: int
    cancelled: int
    overruns: int
    peak: list[tuple[int, float]]  # (hour of week, booked hours), the busiest first

    @property
    def no_show_rate(self) -> float:
        held = self.bookings - self.cancelled
        return round(self.no_shows / held, 4) if held else 0.0


def booking_figures(facts: Iterable[BookingFact], tz: ZoneInfo, *, top: int = 5) -> BookingFigures:
    """The figures of `facts` (bookings of members, blocks left out by the caller); a
    cancelled booking counts as a cancellation only, not as booked hours."""
    booked: dict[str, float] = {}
    used: dict[str, float] = {}
    by_hour: dict[int, float] = {}
    count = no_shows = cancelled = overruns = 0
    for fact in facts:
        count += 1
        if fact.status == BookingStatus.CANCELLED.value:
            cancelled += 1
            continue
        no_shows += fact.status == BookingStatus.NO_SHOW.value
        overruns += fact.overrun
        hours = (fact.ends_at - fact.starts_at).total_seconds() / 3600
        booked[fact.machine] = booked.get(fact.machine, 0.0) + hours
        used[fact.machine] = used.get(fact.machine, 0.0) + fact.used_seconds / 3600
        cursor = fact.starts_at
        # Spread the slot over the hours of the week it covers (lab time).
        while cursor < fact.ends_at:
            local = cursor.astimezone(tz)
            hour_start = local.replace(minute=0, second=0, microsecond=0)
            step_end = min(fact.ends_at, (hour_start + timedelta(hours=1)).astimezone(UTC))
            key = local.weekday() * 24 + local.hour
            by_hour[key] = by_hour.get(key, 0.0) + (step_end - cursor).total_seconds() / 3600
            cursor = step_end
    peak = sorted(by_hour.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return BookingFigures(
        booked_hours={k: round(v, 2) for k, v in sorted(booked.items())},
        used_hours={k: round(v, 2) for k, v in sorted(used.items())},
        bookings=count,
        no_shows=no_shows,
        cancelled=cancelled,
        overruns=overruns,
        peak=[(h, round(v, 2)) for h, v in peak],
    )
