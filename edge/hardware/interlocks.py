"""A machine's safety inputs ([[interlock]]) and accessory relays ([[accessory]]) on gpiozero.

Plain DigitalInputDevice and OutputDevice built with the agent's pin factory; the rules are
edge/domain/interlocks.py. The inputs' callbacks only report (the agent queues them); every
other call comes from the agent under its state lock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge.config import AgentConfig
from edge.domain.interlocks import (
    Accessory,
    Interlock,
    accessory_on,
    faults,
    training_refusal,
)
from protocol.lite import AllowEntry
from protocol.vocab import DenyReason


class SafetyBoard:
    def __init__(
        self,
        config: AgentConfig,
        pin_factory: Any,
        on_change: Callable[[str, bool], None],
    ) -> None:
        from gpiozero import DigitalInputDevice, OutputDevice

        self.interlocks = [Interlock(i.name, i.kind, i.grace_s) for i in config.interlock]
        self.accessories = [Accessory(a.name, a.run_on_s, a.training) for a in config.accessory]
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self._relay_closed_at: datetime | None = None
        self._relay_opened_at: datetime | None = None
        self._allowed: dict[str, bool] = {}
        self._was_on: dict[str, bool] = {}
        self._faulted: set[str] = set()
        self._closed = False
        try:
            for spec in config.interlock:
                device = DigitalInputDevice(
                    spec.pin,
                    pull_up=spec.pull_up,
                    active_state=spec.active_state,
                    bounce_time=spec.bounce_s or None,
                    pin_factory=pin_factory,
                )
                device.when_activated = lambda name=spec.name: on_change(name, True)
                device.when_deactivated = lambda name=spec.name: on_change(name, False)
                self.inputs[spec.name] = device
            for acc in config.accessory:
                self.outputs[acc.name] = OutputDevice(
                    acc.pin,
                    active_high=acc.active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
        except BaseException:
            self.close()
            raise

    def ok(self) -> dict[str, bool]:
        """Each interlock by name: True when its input says the condition holds."""
        return {name: bool(device.is_active) for name, device in self.inputs.items()}

    def accessories_on(self) -> dict[str, bool]:
        return {name: bool(device.value) for name, device in self.outputs.items()}

    def machine_on(
        self, entry: AllowEntry | None, now: datetime
    ) -> list[tuple[Accessory, DenyReason]]:
        """The machine's relay closed for `entry`'s holder: the accessories they may use
        follow it; the others are returned with the reason, and stay off."""
        self._relay_closed_at, self._relay_opened_at = now, None
        refused = []
        for accessory in self.accessories:
            reason = training_refusal(accessory, entry, now)
            self._allowed[accessory.name] = reason is None
            if reason is not None:
                refused.append((accessory, reason))
        self.apply(now)
        return refused

    def machine_off(self, now: datetime) -> None:
        self._relay_closed_at, self._relay_opened_at = None, now
        self.apply(now)

    def apply(self, now: datetime) -> None:
        """Switch each accessory as the rules say now (run-on timers end here)."""
        for accessory in self.accessories:
            on = accessory_on(
                accessory,
                relay_closed=self._relay_closed_at is not None,
                allowed=self._allowed.get(accessory.name, False),
                was_on=self._was_on.get(accessory.name, False),
                relay_opened_at=self._relay_opened_at,
                now=now,
            )
            self._was_on[accessory.name] = on
            device = self.outputs[accessory.name]
            if on and not device.value:
                device.on()
            elif not on and device.value:
                device.off()

    def fault_changes(self, now: datetime) -> tuple[list[Interlock], list[Interlock]]:
        """(new faults, cleared faults) since the last call, while the relay is closed."""
        current = set(
            faults(self.interlocks, self.ok(), relay_closed_at=self._relay_closed_at, now=now)
        )
        if self._relay_closed_at is None:
            current = set()
        new = [i for i in self.interlocks if i.name in current - self._faulted]
        ok_names = {name for name, ok in self.ok().items() if ok}
        cleared = [i for i in self.interlocks if i.name in self._faulted and i.name in ok_names]
        self._faulted = (self._faulted | current) - {i.name for i in cleared}
        return new, cleared

    def close(self) -> None:
        """Accessories off, devices released; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for device in self.outputs.values():
            try:
                device.off()
            finally:
                device.close()
        for device in self.inputs.values():
            device.close()
