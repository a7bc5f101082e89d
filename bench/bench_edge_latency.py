"""Badge-to-relay latency: tap in the reader -> relay pin change, online and offline,
next to the same tap decided by an HTTP round trip to a hub that looks the badge up in its
database (loopback, keep-alive: the most favourable case for the round trip), all in one run.

Run: .venv/bin/python -m bench.bench_edge_latency [--taps 1000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpiozero import OutputDevice

from bench.timed_pins import percentile, timed_factory
from edge.agent import Agent
from edge.config import parse_config
from edge.hardware.readers import BadgeRead, OnBadge
from protocol.allowlist import AllowEntry, AllowList, public_key_b64, sign_allowlist
from tests.support.mosquitto import MosquittoBroker, free_port, wait_for_port

BADGE = "04C3D4E5"  # Hugo Petit in the demo data, trained on the laser


class BenchReader:
    """A badge reader whose polling thread is the benchmark's: `read` reports a card the
    way the mfrc522 and keyboard readers report one, through the callback the agent gave."""

    kind = "bench"
    healthy = True

    def __init__(self) -> None:
        self._on_badge: OnBadge | None = None

    def start(self, on_badge: OnBadge) -> None:
        self._on_badge = on_badge

    def stop(self) -> None:
        self._on_badge = None

    def read(self, uid: str) -> None:
        assert self._on_badge is not None, "the agent has not started the reader"
        self._on_badge(BadgeRead(uid=uid))


def agent_taps(workdir: Path, taps: int, broker: MosquittoBroker | None) -> list[float]:
    key = Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    state = workdir / ("online" if broker else "offline")
    state.mkdir()
    (state / "allowlist.json").write_bytes(
        sign_allowlist(
            AllowList(
                site="lab",
                machine="laser-1",
                machine_type="laser",
                version=1,
                issued_at=now,
                expires_at=now + timedelta(days=1),
                entries=[AllowEntry(badge=f"{i:08X}", member=f"m-{i}") for i in range(1, 500)]
                + [AllowEntry(badge=BADGE, member="m-bench")],
            ),
            key,
        )
    )
    mqtt: dict[str, object] = {"port": free_port()}
    if broker is not None:
        user, password = broker.agent_credentials("laser-1")
        mqtt = {"host": broker.host, "port": broker.port, "username": user, "password": password}
    config = parse_config(
        {
            "agent": {
                "site": "lab",
                "machine": "laser-1",
                "state_dir": str(state),
                "hub_public_key": public_key_b64(key.public_key()),
            },
            "mqtt": mqtt,
            "gpio": {"pin_factory": "mock"},
            "relay": {"pin": 17},
            "reader": {"type": "sim"},
        }
    )
    factory = timed_factory()
    reader = BenchReader()
    agent = Agent(config, pin_factory=factory, reader=reader)
    agent.start()
    relay = factory.pin(17)
    try:
        if broker is not None:
            deadline = time.monotonic() + 10
            while not agent.state()["connected"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the agent did not connect to the broker")
                time.sleep(0.05)
        latencies = []
        for _ in range(taps):
            agent.state()  # the loop has finished the previous tap's journaling
            relay.changed.clear()
            seen = len(relay.changed_at)
            started = time.perf_counter()
            reader.read(BADGE)  # the card, as the reader's thread reports it
            if not relay.changed.wait(5):
                raise RuntimeError("the relay did not change")
            latencies.append(relay.changed_at[seen] - started)
        if broker is not None:
            deadline = time.monotonic() + 30
            while agent.state()["backlog"] and time.monotonic() < deadline:
                time.sleep(0.05)
        return latencies
    finally:
        agent.stop()
        factory.reset()


def hub_database(workdir: Path) -> str:
    """A hub database with the demo lab plus 500 members trained on the laser."""
    from sqlmodel import Session, select

    from hub.core.db import make_engine, migrate
    from hub.demo.seed import seed_demo
    from hub.models import Badge, MachineType, Member, Training

    url = f"sqlite:///{workdir / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        laser = session.exec(select(MachineType).where(MachineType.code == "laser")).one()
        for i in range(500):
            member = Member(name=f"Member {i}")
            session.add(member)
            session.flush()
            session.add(Badge(uid=f"{0x10000000 + i:08X}", member_id=member.id))
            session.add(Training(member_id=member.id, machine_type_id=laser.id))
        session.commit()
    engine.dispose()
    return url


def http_taps(workdir: Path, taps: int) -> list[float]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.http_decider", str(port), hub_database(workdir)],
        cwd=Path(__file__).resolve().parents[1],
    )
    factory = timed_factory()
    relay = OutputDevice(17, pin_factory=factory)
    pin = factory.pin(17)
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
        latencies = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            client.post("/decide", json={"badge": BADGE})  # warm the connection
            for _ in range(taps):
                seen = len(pin.changed_at)
                started = time.perf_counter()
                if client.post("/decide", json={"badge": BADGE}).json()["granted"]:
                    relay.toggle()
                latencies.append(pin.changed_at[seen] - started)
        return latencies
    finally:
        relay.close()
        factory.reset()
        server.terminate()
        server.wait(timeout=10)


def report(name: str, values: list[float]) -> tuple[float, float]:
    p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
    print(f"{name:<34} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   (n={len(values)})")
    return p50, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--taps", type=int, default=1000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="atelier-bench-"))
    broker = MosquittoBroker(workdir / "broker")
    broker.start()
    try:
        online = agent_taps(workdir, args.taps, broker)
        offline = agent_taps(workdir, args.taps, None)
        http = http_taps(workdir, args.taps)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"badge-to-relay latency, {args.taps} taps each, same run (tap -> relay pin change)")
    _, on99 = report("agent, online (broker connected)", online)
    _, off99 = report("agent, offline (no broker)", offline)
    h50, h99 = report("HTTP round trip to the hub's DB", http)
    print(
        f"p99 ratio HTTP/agent: online {h99 / on99:.1f}x, offline {h99 / off99:.1f}x "
        f"(goal: p99 < 5 ms and >= 20x)"
    )


if __name__ == "__main__":
    main()
