"""sd_notify for the agent under systemd: READY once started, WATCHDOG while the loop runs,
STOPPING on the way out. Silent when systemd did not ask (no NOTIFY_SOCKET)."""

from __future__ import annotations

import os
from typing import Any


class Notifier:
    def __init__(self) -> None:
        self._notifier: Any = None

    def notify(self, message: str) -> None:
        if not os.environ.get("NOTIFY_SOCKET"):
            return
        if self._notifier is None:
            try:
                import sdnotify

                self._notifier = sdnotify.SystemdNotifier()
            except ImportError:
                return
        self._notifier.notify(message)
