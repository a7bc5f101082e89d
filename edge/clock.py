"""The agent's steady clock: the wall clock, but one that a held session reads monotonically."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta


class SteadyClock:
    """The wall clock, except while held: then it advances with the monotonic clock from
    the last time it gave (the session's start), so a jump of the wall clock can neither
    stretch nor reverse a session. Released (no session open), it follows the wall clock
    again, jumps included."""

    def __init__(
        self, wall: Callable[[], datetime], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._anchor: tuple[datetime, float] | None = None
        self._last: tuple[datetime, float] | None = None
        self._lock = threading.Lock()  # read by the reader, loop and integration threads

    def __call__(self) -> datetime:
        with self._lock:
            mono = self._monotonic()
            if self._anchor is None:
                now = self._wall()
            else:
                wall, start = self._anchor
                now = wall + timedelta(seconds=mono - start)
            self._last = (now, mono)
            return now

    def hold(self, held: bool) -> None:
        with self._lock:
            if held and self._anchor is None:
                self._anchor = self._last or (self._wall(), self._monotonic())
            elif not held:
                self._anchor = None
