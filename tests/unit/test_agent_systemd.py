"""The agent tells systemd it is ready and pings the watchdog (Type=notify, WatchdogSec)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.agent import Agent
from edge.config import parse_config
from protocol.allowlist import public_key_b64
from tests.support.mosquitto import free_port


def test_ready_watchdog_and_stopping_reach_the_notify_socket(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    config = parse_config(
        {
            "agent": {
                "site": "lab",
                "machine": "laser-1",
                "state_dir": str(tmp_path / "s"),
                "hub_public_key": public_key_b64(Ed25519PrivateKey.generate().public_key()),
            },
            "mqtt": {"port": free_port()},
            "gpio": {"pin_factory": "mock"},
            "relay": {"pin": 17},
            "reader": {"type": "sim"},
        }
    )
    agent = Agent(config)
    agent.start()
    messages = []
    try:
        deadline = time.monotonic() + 5
        while "WATCHDOG=1" not in messages and time.monotonic() < deadline:
            messages.append(server.recv(256).decode())
    finally:
        agent.stop()
        messages.append(server.recv(256).decode())
        server.close()
    assert messages[0] == "READY=1"
    assert "WATCHDOG=1" in messages and messages[-1] == "STOPPING=1"
