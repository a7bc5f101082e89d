"""The session machine's actions carried out on the machine's outputs (the relay, the LED, the
buzzer, the accessory relays), and a safety input's fault answered on them.

Every method runs under the agent's state lock (edge.agent): a read's actions switch the
relay in the reader's thread, before the events they emit are journaled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge.config import AgentConfig
from edge.domain.session import Action, Beep, CloseRelay, Emit, OpenRelay, SessionMachine
from edge.hardware.interlocks import SafetyBoard
from edge.hardware.outputs import Devices
from protocol.lite import AllowList
from protocol.vocab import EventType

log = logging.getLogger(__name__)

# on time, off time, count
BEEPS = {
    "grant": (0.1, 0.1, 1),
    "deny": (0.4, 0.1, 1),
    "warning": (0.1, 0.1, 3),
    "end": (0.1, 0.1, 2),
}

EmitEvent = Callable[[EventType, dict[str, Any]], None]


class Actuators:
    def __init__(
        self,
        config: AgentConfig,
        devices: Devices,
        safety: SafetyBoard | None,
        machine: SessionMachine,
        *,
        emit: EmitEvent,
        clock: Callable[[], datetime],
        allowlist: Callable[[], AllowList | None],
    ) -> None:
        self._config = config
        self._devices = devices
        self._safety = safety
        self._machine = machine
        self._emit = emit
        self._clock = clock
        self._allowlist = allowlist

    def run(self, actions: list[Action]) -> bool:
        """Carry the actions out in order; True when the status changed (the relay switched,
        a session started or ended)."""
        devices = self._devices
        changed = False
        for action in actions:
            if isinstance(action, CloseRelay):
                devices.close_relay()
                changed = True
                if devices.led is not None:
                    devices.led.on()
                self._accessories_follow(True)
            elif isinstance(action, OpenRelay):
                devices.open_relay()
                changed = True
                if devices.led is not None:
                    devices.led.off()
                self._accessories_follow(False)
            elif isinstance(action, Beep):
                self.beep(action.kind)
            elif isinstance(action, Emit):
                self._emit(action.type, action.data)
                if action.type in (EventType.SESSION_STARTED, EventType.SESSION_ENDED):
                    changed = True
        return changed

    def _accessories_follow(self, relay_closed: bool) -> None:
        """Accessory relays follow the machine's; one needing its own training stays off for
        a member without it, and says so (accessory.refused)."""
        if self._safety is None:
            return
        now = self._clock()
        if not relay_closed:
            self._safety.machine_off(now)
            return
        session = self._machine.session
        allowlist = self._allowlist()
        entry = allowlist.by_badge().get(session.badge) if session and allowlist else None
        for accessory, reason in self._safety.machine_on(entry, now):
            assert accessory.training is not None
            self._emit(
                EventType.ACCESSORY_REFUSED,
                {
                    "accessory": accessory.name,
                    "training": accessory.training,
                    "reason": reason.value,
                    "member": session.member if session else "",
                    "session_id": session.session_id if session else None,
                },
            )

    def check_interlocks(self, now: datetime, apply: Callable[[list[Action]], None]) -> bool:
        """A safety input in fault while the relay is closed: an event, a warning on the
        buzzer and LED, and (by default) the session ends, through `apply`; the relay opens
        once the machine is not busy, or at once with session.cut_while_busy. True when an
        input went into fault or out of it."""
        if self._safety is None:
            return False
        led = self._devices.led
        new, cleared = self._safety.fault_changes(now)
        for interlock in new:
            session = self._machine.session
            action = "warned"
            if session is not None and self._config.safety.on_fault == "end-session":
                action = "session-ended"
            elif session is None:
                action = "none"
            self._emit(
                EventType.INTERLOCK_FAULT,
                {
                    "interlock": interlock.name,
                    "kind": interlock.kind,
                    "action": action,
                    "session_id": session.session_id if session else None,
                    "member": session.member if session else None,
                },
            )
            log.warning("interlock %s (%s) in fault: %s", interlock.name, interlock.kind, action)
            self.beep("warning")
            if led is not None:
                led.blink(on_time=0.2, off_time=0.2, background=True)
            if action == "session-ended":
                apply(self._machine.end_session(now, "interlock"))
        for interlock in cleared:
            self._emit(
                EventType.INTERLOCK_CLEARED, {"interlock": interlock.name, "kind": interlock.kind}
            )
            if led is not None:
                (led.on if self._machine.relay_closed else led.off)()
        return bool(new or cleared)

    def beep(self, kind: str) -> None:
        buzzer = self._devices.buzzer
        if buzzer is None:
            return
        on_time, off_time, count = BEEPS[kind]
        buzzer.beep(on_time=on_time, off_time=off_time, n=count, background=True)
