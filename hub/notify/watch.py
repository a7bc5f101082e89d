"""Runs hub/services/notification_watch.py every few minutes in the hub."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.core.settings import Settings
from hub.services.notification_watch import look, stale_lists

log = logging.getLogger(__name__)


class NotificationWatch:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        with Session(self.engine) as session:
            made = look(
                session,
                now=self.clock(),
                offline_after_s=self.settings.notify_offline_after_s,
                dead_letters_per_hour=self.settings.notify_dead_letters_per_hour,
                low_balance_cents=self.settings.notify_low_balance_cents,
            )
            session.commit()
        return made

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.notify_watch_s):
            try:
                self.run_once()
            except Exception:  # the database away for a moment: look again next time
                log.exception("the notification watch could not look")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="notify-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def telling_stale_lists(
    engine: Engine, publish: Callable[[list[str]], object]
) -> Callable[[list[str]], object]:
    """The allow-list watch's re-publish, which also tells staff which machines lag."""

    def publish_and_tell(codes: list[str]) -> object:
        result = publish(codes)
        try:
            with Session(engine) as session:
                stale_lists(session, machine_codes=codes, now=datetime.now(UTC))
                session.commit()
        except Exception:  # the list matters more than the message
            log.exception("could not tell staff of machines holding an older allow-list")
        return result

    return publish_and_tell
