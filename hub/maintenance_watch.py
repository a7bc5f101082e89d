"""The maintenance watch, a worker the runtime starts: every few minutes, the lockout check
(`hub.services.maintenance.lockout.check_lockouts`) in its own transaction, then the allow-lists of
the machines it locked or released published."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.services.maintenance.lockout import CHECK_ACTOR, CheckResult, check_lockouts

log = logging.getLogger(__name__)

Publish = Callable[[list[str]], object]


def run_check(
    engine: Engine, *, now: datetime, actor: str = CHECK_ACTOR, publish: Publish | None = None
) -> CheckResult:
    """One check in its own transaction, then the changed machines' lists published."""
    with Session(engine) as session:
        result = check_lockouts(session, now=now, actor=actor)
        session.commit()
    for code in result.locked:
        log.warning("%s locked out: %s", code, "; ".join(result.overdue_critical[code]))
    for code in result.released:
        log.info("%s released: no critical maintenance overdue", code)
    if result.changed and publish is not None:
        publish(result.changed)
    return result


class MaintenanceWatch:
    """Runs the check every `period_s` in the hub process (first run soon after start)."""

    def __init__(
        self,
        engine: Engine,
        publish: Publish | None,
        *,
        period_s: float = 300,
        first_after_s: float = 5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine, self.publish, self.clock = engine, publish, clock
        self.period_s, self.first_after_s = period_s, first_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maintenance-check", daemon=True)

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
                run_check(self.engine, now=self.clock(), publish=self.publish)
            except Exception:
                log.exception("maintenance check failed; will retry")
