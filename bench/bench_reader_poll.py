"""Idle reader cost: SPI transfers per empty poll, our reader vs SimpleMFRC522.read_id_no_block().

Both run the mfrc522 package's own code over the same register-level chip model (fake spidev
and RPi.GPIO), in the same run. Run: .venv/bin/python -m bench.bench_reader_poll
"""

from __future__ import annotations

import statistics
import sys
import time

from tests.support.fake_rpi import FakeSpiBus

POLLS = 200


def main() -> None:
    bus = FakeSpiBus()
    sys.modules.update(bus.modules())
    from mfrc522 import SimpleMFRC522

    from edge.hardware.mfrc522_reader import MFRC522Reader

    chip = bus.chip()
    ours = MFRC522Reader()
    ours.open()
    simple = SimpleMFRC522()

    def measure(poll: object) -> tuple[float, float]:
        counts, seconds = [], []
        for _ in range(POLLS):
            before, started = chip.transfers, time.perf_counter()
            poll()  # type: ignore[operator]
            seconds.append(time.perf_counter() - started)
            counts.append(chip.transfers - before)
        return statistics.mean(counts), statistics.median(seconds)

    baseline, baseline_s = measure(simple.read_id_no_block)
    mine, mine_s = measure(ours.poll_once)
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


if __name__ == "__main__":
    main()
