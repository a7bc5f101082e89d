"""A gpiozero mock pin that records when its state really changed (perf_counter)."""

from __future__ import annotations

import threading
import time
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin


class TimedPin(MockPin):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed_at: list[float] = []
        self.changed = threading.Event()

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            self.changed_at.append(time.perf_counter())
            self.changed.set()
        return changed


def timed_factory() -> MockFactory:
    return MockFactory(pin_class=TimedPin)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
