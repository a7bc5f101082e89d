"""The booking rules, pure: plain values and an injected clock (hub/domain/bookings.py)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.bookings import (
    BookingKind,
    BookingRequest,
    BookingRules,
    BookingStatus,
    MaintenanceWindow,
    Opening,
    Slot,
    check_booking,
    covered_by_lockout,
    is_no_show,
    late_cancellation,
    may_change,
    within_opening,
)

TZ = ZoneInfo("Europe/Paris")
# Monday 7 December 2026, 09:00 in Paris (08:00 UTC).
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
RULES = BookingRules(
    bookable=True,
    slot_minutes=30,
    min_minutes=30,
    max_minutes=180,
    ahead_days={"*": 14, "professional": 30},
    week_hours={"*": 4},
    opening=tuple(Opening(d, time(9), time(21)) for d in range(5)),
    grace_minutes=15,
    no_show_fee=True,
    late_cancel_hours=24,
)


def at(hours: float, days: int = 0) -> datetime:
    return NOW + timedelta(days=days, hours=hours)


def ask(start: datetime, end: datetime, **kw: object) -> BookingRequest:
    values: dict[str, object] = {"member": "m-alice", "category": "individual", "trained": True}
    values.update(kw)
    return BookingRequest(start, end, **values)  # type: ignore[arg-type]


def code(request: BookingRequest, **kw: object) -> str | None:
    kw.setdefault("machine_slots", ())
    refusal = check_booking(RULES, request, now=NOW, tz=TZ, **kw)  # type: ignore[arg-type]
    return refusal.code if refusal else None


def test_a_trained_member_books_an_open_free_slot() -> None:
    assert code(ask(at(1), at(2))) is None


@pytest.mark.parametrize(
    ("start", "end", "kw", "expected"),
    [
        (at(2), at(1), {}, "booking.end_before_start"),
        (at(-3), at(-2), {}, "booking.in_past"),
        (at(-0.5), at(1), {}, "booking.in_past"),
        (at(1), at(2), {"trained": False}, "booking.not_trained"),
        (at(1.25), at(2.25), {}, "booking.off_slot"),
        (at(1), at(1.75), {}, "booking.off_slot"),
        (at(1), at(5), {}, "booking.too_long"),
        (at(1, days=15), at(2, days=15), {}, "booking.too_far_ahead"),
        (at(13), at(14), {}, "booking.closed"),  # 22:00 Paris
        (at(1, days=5), at(2, days=5), {}, "booking.closed"),  # Saturday
        (at(1), at(2), {"member": None}, "booking.member_missing"),
    ],
)
def test_member_rules_refuse_with_their_reason(
    start: datetime, end: datetime, kw: dict[str, object], expected: str
) -> None:
    assert code(ask(start, end, **kw)) == expected


def test_how_far_ahead_depends_on_the_category() -> None:
    assert code(ask(at(1, days=21), at(2, days=21), category="professional")) is None
    assert code(ask(at(1, days=21), at(2, days=21))) == "booking.too_far_ahead"


def test_a_category_with_no_setting_and_no_default_may_not_book() -> None:
    rules = BookingRules(bookable=True, ahead_days={"staff": 7})
    refusal = check_booking(rules, ask(at(1), at(2)), machine_slots=(), now=NOW, tz=TZ)
    assert refusal is not None and refusal.code == "booking.category_may_not_book"


def test_a_machine_not_bookable_refuses_members_but_takes_staff_blocks() -> None:
    rules = BookingRules(bookable=False)
    assert check_booking(rules, ask(at(1), at(2)), machine_slots=(), now=NOW, tz=TZ) is not None
    block = BookingRequest(at(1), at(9), None, kind=BookingKind.BLOCK, by_staff=True)
    assert check_booking(rules, block, machine_slots=(), now=NOW, tz=TZ) is None


def test_weekly_hours_count_the_members_other_bookings_of_the_week() -> None:
    mine = [Slot(1, at(1, days=1), at(4, days=1), "m-alice")]  # 3 h on Tuesday
    assert code(ask(at(1), at(2)), member_slots=mine) is None  # 4 h: the limit
    refusal = check_booking(
        RULES, ask(at(1), at(2.5)), machine_slots=(), member_slots=mine, now=NOW, tz=TZ
    )
    assert refusal is not None and refusal.code == "booking.week_hours"
    assert refusal.params == {"hours": 4, "booked_hours": 3.0}
    # Last week's bookings do not count.
    old = [Slot(2, at(1, days=-7), at(4, days=-7), "m-alice")]
    assert code(ask(at(1), at(2.5)), member_slots=old) is None


def test_staff_book_for_a_member_beyond_ahead_hours_and_week_limits() -> None:
    far = ask(at(1, days=40), at(2, days=40), by_staff=True)
    assert code(far) is None
    assert code(ask(at(1), at(2), by_staff=True, trained=False)) == "booking.not_trained"


def test_overlaps_are_refused_naming_the_slot_held() -> None:
    taken = [Slot(5, at(1), at(2), "m-bob")]
    refusal = check_booking(RULES, ask(at(1.5), at(2.5)), machine_slots=taken, now=NOW, tz=TZ)
    assert refusal is not None and refusal.code == "booking.taken"
    assert refusal.params == {"starts_at": at(1), "ends_at": at(2)}
    # Back to back is no overlap.
    assert code(ask(at(2), at(3)), machine_slots=taken) is None
    blocked = [Slot(6, at(1), at(5), None, BookingKind.BLOCK)]
    assert code(ask(at(2), at(3)), machine_slots=blocked) == "booking.blocked"


def test_moving_a_booking_does_not_conflict_with_itself() -> None:
    mine = [Slot(5, at(1), at(2), "m-alice")]
    assert code(ask(at(1.5), at(2.5), moving=5), machine_slots=mine, member_slots=mine) is None


def test_maintenance_due_blocks_its_window() -> None:
    window = MaintenanceWindow(at(0, days=1), at(24, days=1), "lens cleaning")
    refusal = check_booking(
        RULES,
        ask(at(1, days=1), at(2, days=1)),
        machine_slots=(),
        maintenance=[window],
        now=NOW,
        tz=TZ,
    )
    assert refusal is not None and refusal.code == "booking.maintenance_due"
    assert refusal.params["task"] == "lens cleaning"


def test_opening_hours_join_across_midnight() -> None:
    late = (Opening(0, time(18), time(0)), Opening(1, time(0), time(2)))
    monday_22 = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    assert within_opening(monday_22, monday_22 + timedelta(hours=4), late, TZ)
    assert not within_opening(monday_22, monday_22 + timedelta(hours=5), late, TZ)
    assert within_opening(monday_22, monday_22 + timedelta(hours=5), (), TZ)


def test_a_no_show_is_released_only_after_the_grace_period() -> None:
    start, end = at(1), at(2)
    assert not is_no_show(RULES, starts_at=start, ends_at=end, badged=[], now=at(1.2))
    assert is_no_show(RULES, starts_at=start, ends_at=end, badged=[], now=at(1.25))
    # Badged ten minutes early or late: the booking is used.
    for badge in (at(1) - timedelta(minutes=10), at(1) + timedelta(minutes=10)):
        assert not is_no_show(RULES, starts_at=start, ends_at=end, badged=[badge], now=at(3))
    # A session the day before does not honour it.
    assert is_no_show(RULES, starts_at=start, ends_at=end, badged=[at(1, days=-1)], now=at(3))


def test_late_cancellation_is_within_the_notice_period_only() -> None:
    assert late_cancellation(RULES, starts_at=at(23), now=NOW)
    assert not late_cancellation(RULES, starts_at=at(25), now=NOW)
    free = BookingRules(bookable=True, no_show_fee=False, late_cancel_hours=24)
    assert not late_cancellation(free, starts_at=at(1), now=NOW)


def test_only_the_owner_or_staff_change_a_booking_before_it_starts() -> None:
    kw = {"owner": "m-alice", "status": BookingStatus.BOOKED, "starts_at": at(1), "now": NOW}
    assert may_change(actor="m-alice", by_staff=False, **kw) is None  # type: ignore[arg-type]
    refused = may_change(actor="m-bob", by_staff=False, **kw)  # type: ignore[arg-type]
    assert refused is not None and refused.code == "booking.not_yours"
    assert may_change(actor=None, by_staff=True, **kw) is None  # type: ignore[arg-type]
    started = dict(kw, now=at(1.5))
    refused = may_change(actor="m-alice", by_staff=False, **started)  # type: ignore[arg-type]
    assert refused is not None and refused.code == "booking.started"
    gone = dict(kw, status=BookingStatus.CANCELLED)
    refused = may_change(actor=None, by_staff=True, **gone)  # type: ignore[arg-type]
    assert refused is not None and refused.code == "booking.not_booked"


def test_a_lockout_cancels_the_members_bookings_of_the_next_day() -> None:
    slots = [
        Slot(1, at(-1), at(1), "m-a"),  # running
        Slot(2, at(5), at(6), "m-b"),
        Slot(3, at(30), at(31), "m-c"),  # beyond the horizon
        Slot(4, at(2), at(3), None, BookingKind.BLOCK),
        Slot(5, at(-3), at(-2), "m-d"),  # over
    ]
    assert [s.id for s in covered_by_lockout(slots, now=NOW)] == [1, 2]


@given(
    start=st.integers(min_value=-10_000, max_value=100_000),
    length=st.integers(min_value=-1_000, max_value=20_000),
    taken=st.lists(st.tuples(st.integers(-10_000, 100_000), st.integers(1, 2_000)), max_size=6),
)
def test_a_granted_request_never_overlaps_a_slot_held(
    start: int, length: int, taken: list[tuple[int, int]]
) -> None:
    slots = [
        Slot(i, NOW + timedelta(minutes=s), NOW + timedelta(minutes=s + n), "m-x")
        for i, (s, n) in enumerate(taken)
    ]
    begin = NOW + timedelta(minutes=start)
    request = ask(begin, begin + timedelta(minutes=length), by_staff=True)
    refusal = check_booking(RULES, request, machine_slots=slots, now=NOW, tz=TZ)
    if refusal is None:
        assert length > 0 and begin >= NOW
        assert all(
            not (s.starts_at < request.ends_at and request.starts_at < s.ends_at) for s in slots
        )


def test_figures_count_booked_against_used_hours_no_shows_and_peak() -> None:
    from hub.domain.bookings import BookingFact, booking_figures

    facts = [
        BookingFact("laser-1", at(1), at(3), "used", used_seconds=5400, overrun=True),
        BookingFact("laser-1", at(1, days=7), at(2, days=7), "no_show"),
        BookingFact("printer-1", at(1.5), at(2), "booked"),
        BookingFact("printer-1", at(4), at(6), "cancelled"),
    ]
    found = booking_figures(facts, TZ)
    assert found.booked_hours == {"laser-1": 3.0, "printer-1": 0.5}
    assert found.used_hours == {"laser-1": 1.5, "printer-1": 0.0}
    assert (found.bookings, found.no_shows, found.cancelled, found.overruns) == (4, 1, 1, 1)
    assert found.no_show_rate == round(1 / 3, 4)
    # Monday 10:00 Paris (hour of week 10) is booked twice over (two Mondays) plus printer.
    assert found.peak[0] == (10, 2.5)
    assert booking_figures([], TZ).no_show_rate == 0.0
