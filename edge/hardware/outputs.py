"""gpiozero devices built from the machine config: relay, LED, buzzer, busy input, button.

No wrapper classes: plain gpiozero devices with `pin_factory=` from the config, chosen by name
and never silently (STYLE.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from edge.config import AgentConfig, PinFactoryName

log = logging.getLogger(__name__)


MOCK_PIN_HISTORY = 100


def _recent_states_factory() -> Any:
    """gpiozero's mock pins, keeping their last changes only: MockPin appends every change
    to a list, so a simulated machine (the demo, a test lab) running for weeks grew without
    end. Real pins keep no history at all."""
    from gpiozero.pins.mock import MockFactory, MockPin

    class RecentStatesPin(MockPin):  # type: ignore[misc]
        def _change_state(self, value: bool) -> bool:
            changed = bool(super()._change_state(value))
            if len(self.states) > 2 * MOCK_PIN_HISTORY:
                del self.states[:-MOCK_PIN_HISTORY]
            return changed

    return MockFactory(pin_class=RecentStatesPin)


def make_pin_factory(name: PinFactoryName) -> Any:
    if name == "mock":
        return _recent_states_factory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    if name == "pigpio":
        from gpiozero.pins.pigpio import PiGPIOFactory

        return PiGPIOFactory()
    from gpiozero.pins.native import NativeFactory

    return NativeFactory()


@dataclass
class Devices:
    pin_factory: Any
    relay: Any
    led: Any = None
    buzzer: Any = None
    busy_input: Any = None
    incident_button: Any = None
    _closed: bool = field(default=False, repr=False)

    def open_relay(self) -> None:
        self.relay.off()

    def close_relay(self) -> None:
        self.relay.on()

    def relay_pin_state(self) -> int:
        return int(self.relay.pin.state)

    def close(self) -> None:
        """Open the relay first, whatever happens next; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.relay.off()
        finally:
            for dev in (self.led, self.buzzer, self.busy_input, self.incident_button, self.relay):
                if dev is not None:
                    dev.close()


def build_devices(config: AgentConfig, pin_factory: Any = None) -> Devices:
    from gpiozero import LED, Buzzer, DigitalInputDevice, OutputDevice

    factory = pin_factory if pin_factory is not None else make_pin_factory(config.gpio.pin_factory)
    relay = OutputDevice(
        config.relay.pin,
        active_high=config.relay.active_high,
        initial_value=False,
        pin_factory=factory,
    )
    devices = Devices(pin_factory=factory, relay=relay)
    if config.led:
        devices.led = LED(config.led.pin, active_high=config.led.active_high, pin_factory=factory)
    if config.buzzer:
        devices.buzzer = Buzzer(
            config.buzzer.pin, active_high=config.buzzer.active_high, pin_factory=factory
        )
    for name in ("busy_input", "incident_button"):
        spec = getattr(config, name)
        if spec is not None:
            setattr(
                devices,
                name,
                DigitalInputDevice(
                    spec.pin,
                    pull_up=spec.pull_up,
                    active_state=spec.active_state,
                    bounce_time=spec.bounce_s or None,
                    pin_factory=factory,
                ),
            )
    return devices
