"""The booking watch, a worker the runtime starts: every minute, `release_due`
(hub/services/bookings/) in its own transaction (bookings used, no-shows released and
priced, lockouts' bookings cancelled, reminders), then the allow-lists of the machines whose
bookings changed published, so a released slot is free at the machine too."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.services.bookings import ReleaseResult, release_due

log = logging.getLogger(__name__)

Publish = Callable[[list[str]], object]


def run_release(
    engine: Engine, *, now: datetime, tz: ZoneInfo, publish: Publish | None = None
) -> ReleaseResult:
    """One pass in its own transaction, then the changed machines' lists published."""
    with Session(engine) as session:
        result = release_due(session, now=now, tz=tz)
    for booking in result.no_shows:
        log.info("booking %s released: a no-show", booking)
    for booking in result.cancelled:
        log.info("booking %s cancelled: its machine is locked out", booking)
    if result.machines and publish is not None:
        publish(sorted(result.machines))
    return result


class BookingWatch:
    """Runs the release every `period_s` in the hub process (first run soon after start)."""

    def __init__(
        self,
        engine: Engine,
        publish: Publish | None,
        *,
        tz: ZoneInfo,
        period_s: float = 60,
        first_after_s: float = 5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine, self.publish, self.clock, self.tz = engine, publish, clock, tz
        self.period_s, self.first_after_s = period_s, first_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="booking-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        wait = self.first_after_s
        while not self._stop.wait(wait):
            wait = self.period_s
            try:
                run_release(self.engine, now=self.clock(), tz=self.tz, publish=self.publish)
            except Exception:
                log.exception("booking release failed; will retry")
