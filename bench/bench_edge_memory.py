"""Agent memory: RSS after start and after 10,000 sessions (20,000 taps), offline.

Run: .venv/bin/python -m bench.bench_edge_memory [--sessions 10000]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.timed_pins import history_free_factory
from edge.agent import Agent
from edge.config import parse_config


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


BADGES = [f"{0x04000000 + i:08X}" for i in range(200)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sign_list(workdir: Path) -> str:
    """The hub's part, in a process of its own: a Pi never loads the signing side."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.allowlist import AllowEntry, AllowList, public_key_b64, sign_allowlist

    key = Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    badges = BADGES
    (workdir / "allowlist.json").write_bytes(
        sign_allowlist(
            AllowList(
                site="lab",
                machine="laser-1",
                machine_type="laser",
                version=1,
                issued_at=now,
                expires_at=now + timedelta(days=30),
                entries=[AllowEntry(badge=b, member=f"m-{i}") for i, b in enumerate(badges)],
            ),
            key,
        )
    )
    return public_key_b64(key.public_key())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--sign", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sign:
        print(sign_list(args.sign))
        return
    workdir = Path(tempfile.mkdtemp(prefix="atelier-mem-"))
    badges = BADGES
    public_key = subprocess.run(
        [sys.executable, "-m", "bench.bench_edge_memory", "--sign", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    config = parse_config(
        {
            "agent": {
                "site": "lab",
                "machine": "laser-1",
                "state_dir": str(workdir),
                "hub_public_key": public_key,
            },
            "mqtt": {"port": free_port()},
            "gpio": {"pin_factory": "mock"},
            "relay": {"pin": 17},
            "reader": {"type": "sim"},
        }
    )
    # gpiozero's MockPin keeps every change in a list; real pins do not, so neither does this one.
    agent = Agent(config, pin_factory=history_free_factory())
    agent.start()
    try:
        for badge in badges[:10]:  # warm up every code path once
            agent.tap(badge)
            agent.tap(badge)
        gc.collect()
        after_start = rss_mb()
        started = time.perf_counter()
        samples = []
        for i in range(args.sessions):
            badge = badges[i % len(badges)]
            if agent.tap(badge)["decision"] != "granted" or agent.tap(badge)["decision"] != "ended":
                raise RuntimeError("a session did not start and end")
            if i % (args.sessions // 10 or 1) == 0:
                samples.append(rss_mb())
        elapsed = time.perf_counter() - started
        gc.collect()
        after = rss_mb()
        backlog = agent.state()["backlog"]
    finally:
        agent.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"agent RSS, offline, {args.sessions} sessions ({2 * args.sessions} taps, "
        f"{backlog} events journaled) in {elapsed:.0f} s"
    )
    print(f"after start: {after_start:.1f} MB")
    print(
        f"after {args.sessions} sessions: {after:.1f} MB "
        f"(ratio {after / after_start:.2f}; samples {', '.join(f'{s:.1f}' for s in samples)})"
    )
    print("goal: under 45 MB, flat")


if __name__ == "__main__":
    main()
