"""The agent's clock: the wall clock, but a held one only moves with the monotonic clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.clock import SteadyClock

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Clocks:
    def __init__(self) -> None:
        self.wall = T0
        self.mono = 100.0


def test_held_clock_ignores_wall_jumps_and_released_one_follows_them() -> None:
    c = Clocks()
    clock = SteadyClock(lambda: c.wall, lambda: c.mono)
    assert clock() == T0
    clock.hold(True)  # a session starts at T0
    c.wall += timedelta(hours=2)  # NTP corrects a Pi without a real-time clock
    c.mono += 30
    assert clock() == T0 + timedelta(seconds=30)
    c.wall -= timedelta(hours=5)
    c.mono += 30
    assert clock() == T0 + timedelta(seconds=60)
    clock.hold(True)  # still the same session: the anchor does not move
    assert clock() == T0 + timedelta(seconds=60)
    clock.hold(False)
    assert clock() == c.wall


def test_hold_anchors_at_the_last_time_given() -> None:
    c = Clocks()
    clock = SteadyClock(lambda: c.wall, lambda: c.mono)
    started = clock()
    c.wall += timedelta(days=1)  # the jump lands between the decision and the hold
    clock.hold(True)
    assert clock() == started
