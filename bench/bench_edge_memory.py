"""Agent memory: RSS after start and after 10,000 sessions (20,000 taps), offline.

The figure is the `atelier-agent` process, as systemd runs it on a Pi, tapped through its sim
reader's socket (`--in-process` adds the agent object alone, in this process).

Run: .venv/bin/python -m bench.bench_edge_memory [--sessions 10000] [--in-process]
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

from edge.agent import Agent
from edge.config import parse_config
from tests.support.processes import agent_command


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


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def write_config(workdir: Path, public_key: str) -> Path:
    path = workdir / "edge.toml"
    path.write_text(
        "\n".join(
            [
                "[agent]",
                'site = "lab"',
                'machine = "laser-1"',
                f'state_dir = "{workdir / "state"}"',
                f'hub_public_key = "{public_key}"',
                "[mqtt]",
                f"port = {free_port()}",  # nobody listens: the agent works offline
                "[gpio]",
                'pin_factory = "mock"',
                "[relay]",
                "pin = 17",
                "[reader]",
                'type = "sim"',
                "",
            ]
        )
    )
    return path


def run_process(workdir: Path, public_key: str, sessions: int) -> None:
    """`atelier-agent`, as systemd starts it on a Pi, tapped through its sim reader's socket;
    its RSS read from /proc. The allow-list is placed in its state folder beforehand."""
    from edge.hardware.sim_reader import request

    state = workdir / "state"
    state.mkdir()
    shutil.copy(workdir / "allowlist.json", state / "allowlist.json")
    config = write_config(workdir, public_key)
    log = (workdir / "agent.log").open("wb")
    agent = subprocess.Popen(
        [*agent_command(), "--config", str(config), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sock = state / "sim-reader.sock"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(sock, {"op": "state"}).get("acl_version"):
                    break
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            if agent.poll() is not None or time.monotonic() > deadline:
                output = (workdir / "agent.log").read_text()
                raise RuntimeError(f"the agent did not start: {output}")
            time.sleep(0.1)
        for badge in BADGES[:10]:  # warm up every code path once
            request(sock, {"op": "tap", "uid": badge})
            request(sock, {"op": "tap", "uid": badge})
        after_start = process_rss_mb(agent.pid)
        started = time.perf_counter()
        samples = []
        for i in range(sessions):
            badge = BADGES[i % len(BADGES)]
            opened = request(sock, {"op": "tap", "uid": badge})
            closed = request(sock, {"op": "tap", "uid": badge})
            if opened.get("decision") != "granted" or closed.get("decision") != "ended":
                raise RuntimeError(f"a session did not start and end: {opened} {closed}")
            if i % (sessions // 10 or 1) == 0:
                samples.append(process_rss_mb(agent.pid))
        elapsed = time.perf_counter() - started
        after = process_rss_mb(agent.pid)
        backlog = request(sock, {"op": "state"})["backlog"]
    finally:
        agent.terminate()
        agent.wait(30)
        log.close()
    print(
        f"the atelier-agent process (what systemd runs), offline, {sessions} sessions "
        f"({2 * sessions} taps through its sim reader, {backlog} events journaled) in "
        f"{elapsed:.0f} s"
    )
    report(after_start, after, samples)


def run_in_process(workdir: Path, public_key: str, sessions: int) -> None:
    """The agent object alone in this process (no command line, no socket server)."""
    config = parse_config(
        {
            "agent": {
                "site": "lab",
                "machine": "laser-1",
                "state_dir": str(workdir / "inproc"),
                "hub_public_key": public_key,
            },
            "mqtt": {"port": free_port()},
            "gpio": {"pin_factory": "mock"},
            "relay": {"pin": 17},
            "reader": {"type": "sim"},
        }
    )
    (workdir / "inproc").mkdir()
    shutil.copy(workdir / "allowlist.json", workdir / "inproc" / "allowlist.json")
    agent = Agent(config)
    agent.start()
    try:
        for badge in BADGES[:10]:
            agent.tap(badge)
            agent.tap(badge)
        gc.collect()
        after_start = rss_mb()
        started = time.perf_counter()
        samples = []
        for i in range(sessions):
            badge = BADGES[i % len(BADGES)]
            if agent.tap(badge)["decision"] != "granted" or agent.tap(badge)["decision"] != "ended":
                raise RuntimeError("a session did not start and end")
            if i % (sessions // 10 or 1) == 0:
                samples.append(rss_mb())
        elapsed = time.perf_counter() - started
        gc.collect()
        after = rss_mb()
    finally:
        agent.stop()
    print(f"the agent in this benchmark's own process, {sessions} sessions in {elapsed:.0f} s")
    report(after_start, after, samples)


def report(after_start: float, after: float, samples: list[float]) -> None:
    print(f"  after start: {after_start:.1f} MB")
    print(
        f"  after the sessions: {after:.1f} MB (ratio {after / after_start:.2f}; "
        f"samples {', '.join(f'{s:.1f}' for s in samples)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--sign", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--in-process", action="store_true", help="also the agent object in this process"
    )
    args = parser.parse_args()
    if args.sign:
        print(sign_list(args.sign))
        return
    workdir = Path(tempfile.mkdtemp(prefix="atelier-mem-"))
    try:
        public_key = subprocess.run(
            [sys.executable, "-m", "bench.bench_edge_memory", "--sign", str(workdir)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        run_process(workdir, public_key, args.sessions)
        if args.in_process:
            run_in_process(workdir, public_key, args.sessions)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("goal: under 45 MB, flat")


if __name__ == "__main__":
    main()
