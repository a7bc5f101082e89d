"""Reader cost in SPI transfers per poll: an empty field, and a card left on the reader.

Empty field: our reader vs SimpleMFRC522.read_id_no_block(). Card left on: our reader,
vs its card path before the fix (the package's anticollision and SELECT, then an HLTA whose
frame was loaded while CalcCRC still ran and cut by Idle before it was out): that card was
never halted, so every other poll missed it and the next one selected it again.
All run the mfrc522 package's own code over the same register-level chip model (fake spidev
and RPi.GPIO), in the same run. Run: .venv/bin/python -m bench.bench_reader_poll
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.support.fake_rpi import FakeSpiBus
from tests.support.mfrc522_chip import MifareClassic1K

POLLS = 200
CARD_UID = bytes.fromhex("04A1B2C3")


def legacy_reader_class() -> type[Any]:
    from edge.hardware.mfrc522_reader import MFRC522Reader

    class BeforeHltaFix(MFRC522Reader):
        """The card path of the reader at e211f92: the package's cascade-level-1
        anticollision and SELECT (CRC from the chip), then its HLTA."""

        def _identify(self, known: str | None = None) -> tuple[str, int] | None:
            status, uid5 = self.chip.MFRC522_Anticoll()
            if status != self.chip.MI_OK or len(uid5) != 5:
                return None
            sak = self.chip.MFRC522_SelectTag(uid5)
            if sak == 0:
                return None
            return bytes(uid5[:4]).hex().upper(), sak

        def _halt(self) -> None:
            chip = self.chip
            frame = [0x50, 0x00]
            frame += chip.CalulateCRC(frame)
            chip.Write_MFRC522(0x04, 0x7F)
            chip.Write_MFRC522(0x0A, 0x80)
            for byte in frame:
                chip.Write_MFRC522(0x09, byte)
            chip.Write_MFRC522(0x01, 0x0C)
            chip.Write_MFRC522(0x0D, 0x80)
            chip.Write_MFRC522(0x01, 0x00)
            chip.Write_MFRC522(0x0D, 0x00)

    return BeforeHltaFix


def measure(chip: Any, poll: Callable[[], object]) -> tuple[float, float]:
    counts, seconds = [], []
    for _ in range(POLLS):
        before, started = chip.transfers, time.perf_counter()
        poll()
        seconds.append(time.perf_counter() - started)
        counts.append(chip.transfers - before)
    return statistics.mean(counts), statistics.median(seconds)


def main() -> None:
    bus = FakeSpiBus()
    sys.modules.update(bus.modules())
    from mfrc522 import SimpleMFRC522

    from edge.hardware.mfrc522_reader import MFRC522Reader

    chip = bus.chip()
    ours = MFRC522Reader()
    ours.open()
    simple = SimpleMFRC522()

    baseline, baseline_s = measure(chip, simple.read_id_no_block)
    mine, mine_s = measure(chip, ours.poll_once)
    print(f"empty polls: {POLLS} each, same chip model, same run")
    print(
        f"SimpleMFRC522.read_id_no_block(): {baseline:.0f} SPI transfers per poll "
        f"(median {baseline_s * 1000:.2f} ms host time)"
    )
    print(
        f"MFRC522Reader.poll_once():        {mine:.0f} SPI transfers per poll "
        f"(median {mine_s * 1000:.2f} ms, of which 1.5 ms is a sleep)"
    )
    print(f"ratio: {baseline / mine:.0f}x fewer SPI transfers (goal: 10x)")

    print(f"card left on the reader: {POLLS} polls each, after its first read")
    results = {}
    for name, reader in (("before the HLTA fix", legacy_reader_class()()), ("now", ours)):
        reader.chip = ours.chip
        reader._configured = True
        card = MifareClassic1K(uid=CARD_UID)
        chip.place(card)
        reader.poll_once()
        woken = card.woken
        transfers, seconds = measure(chip, reader.poll_once)
        answered = (card.woken - woken) / POLLS
        results[name] = transfers
        print(
            f"{name:>20}: {transfers:.1f} SPI transfers per poll, the card answered "
            f"{answered:.0%} of the polls (median {seconds * 1000:.2f} ms host time)"
        )
        chip.remove()
        reader.poll_once(), reader.poll_once()
    print(
        f"ratio: a card left on costs {results['now'] / mine:.1f}x an empty poll "
        f"(before the fix: {results['before the HLTA fix'] / mine:.1f}x, on average over "
        "its alternating missed and re-selected polls)"
    )


if __name__ == "__main__":
    main()
