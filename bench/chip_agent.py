"""`atelier-agent` with its MFRC522 reader on the register-level chip model, for bench_edge_memory.

The agent is `edge.service.main`, unchanged, reading cards through the mfrc522 package's own
code. This launcher only puts fake `spidev`/`RPi.GPIO` modules wired to the chip model in
`sys.modules` (a Pi has the real ones) and starts a thread standing for a member's hand: it
lays a card on the chip, waits for the relay, takes the card away, and so on, then writes what
it saw (RSS samples, the time of the first decision) to a JSON file.

Run by the benchmark: python -m bench.chip_agent --config edge.toml (with BENCH_* variables).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def mappings() -> list[tuple[str, int]]:
    """Resident kB by what is mapped (a library, the heap, anonymous memory), largest first."""
    sizes: dict[str, int] = {}
    name = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5:
            name = Path(parts[5]).name if len(parts) > 5 else "[anonymous]"
        elif parts[0] == "Rss:":
            sizes[name] = sizes.get(name, 0) + int(parts[1])
    return sorted(sizes.items(), key=lambda item: -item[1])[:15]


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.0005)


def drive(chip: Any, agents: list[Any], badges: list[str], sessions: int, t0: float) -> None:
    """Cards on and off the chip; each session is two taps (badge-in, badge-out)."""
    from tests.support.mfrc522_chip import MifareClassic1K

    report: dict[str, Any] = {}
    out = Path(os.environ["BENCH_REPORT"])
    try:
        cards = [MifareClassic1K(uid=bytes.fromhex(b)) for b in badges]

        def relay() -> bool:
            devices = getattr(agents[0], "devices", None) if agents else None
            return bool(devices is not None and devices.relay.is_active)

        def absent() -> None:
            # The reader must see the field empty for a few polls to take the next lay as a
            # new tap (8 SPI transfers per empty poll).
            seen = chip.transfers
            _wait(lambda: chip.transfers >= seen + 40, 10, "empty polls")

        chip.place(cards[0])  # on the reader before the agent runs: its first possible decision
        _wait(relay, 60, "the first grant")
        report["first_decision_s"] = time.time() - t0
        report["rss_first_decision"] = rss_mb()

        def tap(card: Any, closed: bool) -> None:
            chip.place(card)
            _wait(lambda: relay() is closed, 10, f"relay {'closed' if closed else 'open'}")
            chip.remove()
            absent()

        chip.remove()
        absent()
        tap(cards[0], False)  # badge-out of the first session
        for card in cards[1:10]:  # every code path once
            tap(card, True)
            tap(card, False)
        report["rss_after_start"] = rss_mb()
        samples = []
        started = time.perf_counter()
        for i in range(sessions):
            card = cards[i % len(cards)]
            tap(card, True)
            tap(card, False)
            if i % (sessions // 10 or 1) == 0:
                samples.append(rss_mb())
        report["elapsed_s"] = time.perf_counter() - started
        report["samples"] = samples
        report["rss_after"] = rss_mb()
        report["transfers"] = chip.transfers
        report["modules"] = sorted({m.split(".")[0] for m in sys.modules})
        report["mappings"] = mappings()
    except Exception as exc:  # noqa: BLE001 - reported to the benchmark, which fails
        report["error"] = f"{type(exc).__name__}: {exc}"
    out.write_text(json.dumps(report))


def main() -> int:
    from tests.support.fake_rpi import FakeSpiBus

    bus = FakeSpiBus()
    sys.modules.update(bus.modules())
    chip = bus.chip()
    import edge.agent

    agents: list[Any] = []
    original = edge.agent.Agent.start

    def start(self: Any) -> None:
        agents.append(self)
        original(self)

    edge.agent.Agent.start = start  # type: ignore[method-assign]
    badges = json.loads(os.environ["BENCH_BADGES"])
    threading.Thread(
        target=drive,
        args=(
            chip,
            agents,
            badges,
            int(os.environ["BENCH_SESSIONS"]),
            float(os.environ["BENCH_T0"]),
        ),
        daemon=True,
    ).start()
    from edge.service import main as agent_main

    return agent_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
