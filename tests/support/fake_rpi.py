"""Fake `spidev` and `RPi.GPIO` modules wired to MFRC522 chip models, for sys.modules."""

from __future__ import annotations

import sys
import types
from typing import Any

from tests.support.mfrc522_chip import MFRC522Chip


def install_fake_spi(monkeypatch: Any) -> FakeSpiBus:
    """Put fake spidev/RPi.GPIO in sys.modules (undone by pytest's monkeypatch) and drop the
    mfrc522 package, which binds them at import, so it is imported afresh over the fakes."""
    bus = FakeSpiBus()
    for name, module in bus.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in [n for n in sys.modules if n == "mfrc522" or n.startswith("mfrc522.")]:
        monkeypatch.delitem(sys.modules, name)
    return bus


class FakeSpiBus:
    """The chips on each (bus, device), shared by every SpiDev opened on them."""

    def __init__(self) -> None:
        self.chips: dict[tuple[int, int], MFRC522Chip] = {}
        self.gpio_outputs: dict[int, int] = {}
        self.reset_pins: dict[int, MFRC522Chip] = {}
        self.mode: int | None = None

    def chip(self, bus: int = 0, device: int = 0) -> MFRC522Chip:
        if (bus, device) not in self.chips:
            self.chips[(bus, device)] = MFRC522Chip()
        return self.chips[(bus, device)]

    def modules(self) -> dict[str, types.ModuleType]:
        bus = self

        class SpiDev:
            def __init__(self) -> None:
                self.max_speed_hz = 500_000
                self._chip: MFRC522Chip | None = None

            def open(self, number: int, device: int) -> None:
                self._chip = bus.chip(number, device)

            def xfer2(self, data: list[int]) -> list[int]:
                if self._chip is None:
                    raise OSError("SPI device not open")
                return self._chip.transfer(list(data))

            def close(self) -> None:
                self._chip = None

        spidev = types.ModuleType("spidev")
        spidev.SpiDev = SpiDev  # type: ignore[attr-defined]

        gpio = types.ModuleType("RPi.GPIO")
        gpio.BOARD, gpio.BCM, gpio.OUT, gpio.IN = 10, 11, 0, 1  # type: ignore[attr-defined]
        gpio.HIGH, gpio.LOW = 1, 0  # type: ignore[attr-defined]

        def setmode(mode: int) -> None:
            bus.mode = mode

        def output(pin: int, value: int) -> None:
            bus.gpio_outputs[pin] = int(value)
            for chip in bus.chips.values():
                chip.reset_line = int(value)

        gpio.setmode = setmode  # type: ignore[attr-defined]
        gpio.getmode = lambda: bus.mode  # type: ignore[attr-defined]
        gpio.setup = lambda pin, direction, **kw: None  # type: ignore[attr-defined]
        gpio.output = output  # type: ignore[attr-defined]
        gpio.setwarnings = lambda flag: None  # type: ignore[attr-defined]

        def cleanup(*args: object) -> None:
            bus.mode = None

        gpio.cleanup = cleanup  # type: ignore[attr-defined]
        rpi = types.ModuleType("RPi")
        rpi.GPIO = gpio  # type: ignore[attr-defined]
        return {"spidev": spidev, "RPi": rpi, "RPi.GPIO": gpio}
