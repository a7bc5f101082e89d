"""Agents whose allow-list is not the hub's current one: shown, logged, counted, re-sent.

An agent reports in its status the list version it holds and, when it refused one, why
(`acl_refused`) and which version was offered (`acl_offered`). A machine whose agent holds
another version than the hub last issued keeps deciding from an old list: a badge revoked
since may still open it. Right after a publish that is normal for a moment, so a machine
counts as behind once the difference has lasted `settle_s`; then the hub logs it (a warning
naming the machine, the versions and the reason), counts it for /metrics and publishes the
machine's list once more, numbered above the version the agent holds (hub/allowlist.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.models import Machine

log = logging.getLogger(__name__)

Publish = Callable[[list[str]], object]


@dataclass(frozen=True, slots=True)
class ListState:
    """What the hub knows of one machine's list: its own version and the agent's report."""

    current: int
    held: int | None
    refused: str | None
    offered: int | None

    @property
    def is_current(self) -> bool:
        return self.held == self.current and self.refused is None


def list_state(machine: Machine) -> ListState | None:
    """The machine's list as its agent last reported it; None when it is offline or has not
    said (an agent too old to report its version)."""
    # A row written by hand or by an older hub may hold any JSON, not an object.
    status = machine.last_status if isinstance(machine.last_status, dict) else {}
    if not machine.online:
        return None
    held, refused, offered = (
        status.get("acl_version"),
        status.get("acl_refused"),
        status.get("acl_offered"),
    )
    if not _is_int(held) and not isinstance(refused, str):
        return None
    return ListState(
        current=machine.acl_version,
        held=held if _is_int(held) else None,
        refused=refused if isinstance(refused, str) else None,
        offered=offered if _is_int(offered) else None,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class AllowListWatch:
    """Checks every `period_s` in the hub process; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        publish: Publish | None,
        *,
        period_s: float = 30,
        settle_s: float = 30,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine, self.publish, self.clock = engine, publish, clock
        self.period_s, self.settle = period_s, timedelta(seconds=settle_s)
        # Machine code -> when its agent was first seen holding another list than the hub's.
        self._since: dict[str, datetime] = {}
        # Machines already alerted on (and re-sent) in the current episode.
        self._alerted: set[str] = set()
        self.alerts = 0  # since start, for /metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="allowlist-watch", daemon=True)

    @property
    def behind(self) -> list[str]:
        """The machines alerted on and still not holding the current list."""
        return sorted(self._alerted)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def check_once(self) -> list[str]:
        """The machines newly found behind at this check (each alerted on once)."""
        now = self.clock()
        with Session(self.engine) as session:
            states = {m.code: list_state(m) for m in session.exec(select(Machine))}
        newly: list[str] = []
        for code, state in sorted(states.items()):
            if state is None or state.is_current:
                self._since.pop(code, None)
                if code in self._alerted:
                    self._alerted.discard(code)
                    log.info("machine %s holds the current allow-list again", code)
                continue
            since = self._since.setdefault(code, now)
            if code in self._alerted or now - since < self.settle:
                continue
            self._alerted.add(code)
            self.alerts += 1
            newly.append(code)
            log.warning(
                "machine %s holds allow-list version %s, not the current %d%s: publishing it "
                "again above the agent's version",
                code,
                state.held if state.held is not None else "none",
                state.current,
                f" (it refused version {state.offered}: {state.refused})" if state.refused else "",
            )
        if newly and self.publish is not None:
            self.publish(newly)
        return newly

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.check_once()
            except Exception:
                log.exception("allow-list check failed; will retry")
