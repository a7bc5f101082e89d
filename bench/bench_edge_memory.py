"""Agent memory and start: RSS after start and after 10,000 sessions, time to first decision.

The figure is the `atelier-agent` process, as systemd runs it on a Pi, its MFRC522 reader (the
mfrc522 package's own code over the register-level chip model, bench/chip_agent.py) and TLS
to a real Mosquitto; same-run baselines are a bare interpreter and a bare paho client over
TLS. `--sim` adds the sim reader offline (the figure before issue 23), `--in-process` the
agent object alone, in this process.

Run: .venv/bin/python -m bench.bench_edge_memory [--sessions 10000] [--sim] [--in-process]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def write_config(workdir: Path, public_key: str, broker: Any = None, name: str = "state") -> Path:
    path = workdir / f"{name}.toml"
    mqtt = [f"port = {free_port()}"]  # nobody listens: the agent works offline
    if broker is not None:
        user, password = broker.agent_credentials("laser-1")
        mqtt = [
            'host = "127.0.0.1"',
            f"port = {broker.port}",
            f'username = "{user}"',
            f'password = "{password}"',
            "tls = true",
            f'ca_file = "{workdir / "pki" / "ca.crt"}"',
        ]
    path.write_text(
        "\n".join(
            [
                "[agent]",
                'site = "lab"',
                'machine = "laser-1"',
                f'state_dir = "{workdir / name}"',
                f'hub_public_key = "{public_key}"',
                "[mqtt]",
                *mqtt,
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


def run_process(
    workdir: Path, public_key: str, sessions: int, broker: Any = None
) -> dict[str, Any]:
    """`atelier-agent`, as systemd starts it on a Pi, tapped through its sim reader's socket;
    its RSS read from /proc. The allow-list is placed in its state folder beforehand."""
    from edge.hardware.sim_reader import request

    name = "sim-tls" if broker else "sim-offline"
    state = workdir / name
    state.mkdir()
    shutil.copy(workdir / "allowlist.json", state / "allowlist.json")
    config = write_config(workdir, public_key, broker, name)
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
    where = "online, TLS to Mosquitto" if broker else "offline"
    print(
        f"the atelier-agent process alone, sim reader, {where}, {sessions} sessions "
        f"({2 * sessions} taps through its socket, {backlog} events left in the journal) in "
        f"{elapsed:.0f} s"
    )
    report(after_start, after, samples)
    return {"rss_after": after}


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


# The figure this benchmark printed before issue 23 (2026-12-06, the sim reader, offline, no
# TLS), kept to print the change against it.
PREVIOUS_MB = 42.8

PAHO_TLS = """
import re, ssl, sys, time
import paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.tls_set(ca_certs=sys.argv[1])
c.username_pw_set(sys.argv[4], sys.argv[5])
c.connect(sys.argv[2], int(sys.argv[3]))
c.loop_start()
deadline = time.monotonic() + 20
while not c.is_connected():
    if time.monotonic() > deadline:
        raise SystemExit("no connection")
    time.sleep(0.01)
print(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
c.loop_stop()
"""

BARE = """
import re, time
print(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
"""


def tls_broker(workdir: Path) -> Any:
    """A real Mosquitto with a TLS listener, certificates from the hub's own CA code."""
    from hub.tls import issue, load_or_create_ca
    from tests.support.mosquitto import MosquittoBroker

    pki = workdir / "pki"
    pki.mkdir()
    ca, ca_key = load_or_create_ca(pki, "lab")
    issue(pki, "broker", "127.0.0.1", ca=ca, ca_key=ca_key, site="lab", server_names=["127.0.0.1"])
    broker = MosquittoBroker(
        workdir / "broker",
        tls={
            "cafile": pki / "ca.crt",
            "certfile": pki / "broker.crt",
            "keyfile": pki / "broker.key",
        },
    )
    broker.start()
    return broker


def run_chip_tls(workdir: Path, public_key: str, sessions: int, broker: Any) -> dict[str, Any]:
    """`atelier-agent` as systemd starts it, its MFRC522 reader on the chip model, connected
    to the broker over TLS; cards laid on the chip by bench/chip_agent.py's thread."""
    state = workdir / "chip-state"
    state.mkdir()
    shutil.copy(workdir / "allowlist.json", state / "allowlist.json")
    user, password = broker.agent_credentials("laser-1")
    config = workdir / "chip.toml"
    config.write_text(
        "\n".join(
            [
                "[agent]",
                'site = "lab"',
                'machine = "laser-1"',
                f'state_dir = "{state}"',
                f'hub_public_key = "{public_key}"',
                "[mqtt]",
                'host = "127.0.0.1"',
                f"port = {broker.port}",
                f'username = "{user}"',
                f'password = "{password}"',
                "tls = true",
                f'ca_file = "{workdir / "pki" / "ca.crt"}"',
                "[gpio]",
                'pin_factory = "mock"',
                "[relay]",
                "pin = 17",
                "[reader]",
                'type = "mfrc522"',
                "poll_interval_s = 0.002",
                "",
            ]
        )
    )
    report = workdir / "chip-report.json"
    log = (workdir / "chip-agent.log").open("wb")
    env = {
        **os.environ,
        "BENCH_REPORT": str(report),
        "BENCH_SESSIONS": str(sessions),
        "BENCH_BADGES": json.dumps(BADGES),
        "BENCH_T0": repr(time.time()),
    }
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.chip_agent",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120 + sessions * 0.2
        while not report.exists():
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the agent did not finish: " + (workdir / "chip-agent.log").read_text()
                )
            time.sleep(0.2)
        time.sleep(0.1)
        result: dict[str, Any] = json.loads(report.read_text())
        result["connected"] = "u'laser-1'" in broker.log_text()
    finally:
        agent.terminate()
        agent.wait(30)
        log.close()
    if "error" in result:
        raise RuntimeError(
            f"{result['error']}; the agent's log: {(workdir / 'chip-agent.log').read_text()}"
        )
    return result


def baselines(workdir: Path, broker: Any) -> tuple[float, float, float]:
    """Same run: a bare interpreter (RSS, start time) and a bare paho client over TLS."""
    started = time.perf_counter()
    bare = subprocess.run([sys.executable, "-c", BARE], capture_output=True, text=True, check=True)
    bare_s = time.perf_counter() - started
    user, password = broker.agent_credentials("bare-1")
    paho = subprocess.run(
        [
            sys.executable,
            "-c",
            PAHO_TLS,
            str(workdir / "pki" / "ca.crt"),
            "127.0.0.1",
            str(broker.port),
            user,
            password,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(bare.stdout) / 1024, bare_s, int(paho.stdout) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--sign", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--sim",
        action="store_true",
        help="also the sim reader offline (the figure before issue 23)",
    )
    parser.add_argument("--modules", action="store_true", help="list the agent's modules")
    parser.add_argument(
        "--in-process", action="store_true", help="also the agent object in this process"
    )
    args = parser.parse_args()
    if args.sign:
        print(sign_list(args.sign))
        return
    workdir = Path(tempfile.mkdtemp(prefix="atelier-mem-"))
    broker = None
    try:
        public_key = subprocess.run(
            [sys.executable, "-m", "bench.bench_edge_memory", "--sign", str(workdir)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        broker = tls_broker(workdir)
        bare_mb, bare_s, paho_mb = baselines(workdir, broker)
        chip = run_chip_tls(workdir, public_key, args.sessions, broker)
        print(
            f"the atelier-agent process, MFRC522 reader (the mfrc522 package over the chip "
            f"model), TLS to Mosquitto, {args.sessions} sessions ({2 * args.sessions} cards laid "
            f"and taken away) in {chip['elapsed_s']:.0f} s"
        )
        report(chip["rss_after_start"], chip["rss_after"], chip["samples"])
        print(f"  connected to the broker over TLS: {'yes' if chip['connected'] else 'NO'}")
        print(
            f"  ratio to the previous figure ({PREVIOUS_MB} MB, sim reader, no TLS): "
            f"{chip['rss_after'] / PREVIOUS_MB:.2f}"
        )
        print(
            f"  same-run baselines: a bare interpreter {bare_mb:.1f} MB; a bare paho client "
            f"over TLS {paho_mb:.1f} MB (the agent is {chip['rss_after'] / paho_mb:.2f}x it, "
            f"{chip['rss_after'] - paho_mb:.1f} MB more)"
        )
        print(
            f"start to first decision: {chip['first_decision_s']:.2f} s (a card on the reader "
            f"from the start; a bare interpreter starts and exits in {bare_s:.2f} s, "
            f"ratio {chip['first_decision_s'] / bare_s:.1f}x)"
        )
        if args.modules:
            print("  top-level modules in the agent process: " + " ".join(chip["modules"]))
            print(
                "  resident kB by mapping: "
                + ", ".join(f"{name} {kb}" for name, kb in chip["mappings"])
            )
        alone = run_process(workdir, public_key, args.sessions, broker)
        print(
            f"  ratio to the previous figure ({PREVIOUS_MB} MB, sim reader, offline, no TLS): "
            f"{alone['rss_after'] / PREVIOUS_MB:.2f}; to a bare paho client over TLS: "
            f"{alone['rss_after'] / paho_mb:.2f}"
        )
        if args.sim:
            run_process(workdir, public_key, args.sessions)
        if args.in_process:
            run_in_process(workdir, public_key, args.sessions)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("goal: under 35 MB, flat; first decision under 1 s")


if __name__ == "__main__":
    main()
