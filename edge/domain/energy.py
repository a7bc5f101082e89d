"""A smart plug's energy counter turned into kilowatt-hours the agent can share out. Pure.

Plugs report a running total (Tasmota `ENERGY.Total` in kWh, Shelly Gen2 `aenergy.total` in
Wh), not what was used since the last message; and the total starts again from zero when the
plug is reset (`EnergyReset`, a firmware update, a Shelly's reboot). `EnergyMeter` keeps the
agent's own total, which only grows: each reading adds what the counter moved since the one
before, and a reading below the one before is a counter that started again from zero, so all
of it is new. A session's or a busy period's kWh is this total at its end less the total at its
start, which stays right across any number of resets in between.

What it cannot see: a reset whose first reading after it is already above the last reading
before it (the plug silent for longer than it took to count back up); that energy is then
counted from the last reading, not from zero. With Tasmota's TelePeriod at 10 s it would take
a reset during a silence of hours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EnergyMeter:
    """`last`: the plug's last reading (None: none yet); `total_kwh`: kWh counted since the
    agent started (from the first reading on); `resets`: how many times the counter restarted."""

    last: float | None = None
    total_kwh: float = 0.0
    resets: int = 0

    @property
    def known(self) -> bool:
        return self.last is not None

    def read(self, reading_kwh: float) -> EnergyMeter:
        """The meter after one reading of the plug's counter (kWh, finite, not negative)."""
        if self.last is None:
            return EnergyMeter(reading_kwh, self.total_kwh, self.resets)
        if reading_kwh >= self.last:
            return EnergyMeter(reading_kwh, self.total_kwh + (reading_kwh - self.last), self.resets)
        # Below the last one: the counter restarted from zero and has counted `reading` since.
        return EnergyMeter(reading_kwh, self.total_kwh + reading_kwh, self.resets + 1)
