"""Hub commands at the agent: lock, unlock-for-maintenance (one-shot), unlock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.agent import Agent
from edge.config import parse_config
from protocol.allowlist import AllowEntry, AllowList, public_key_b64, sign_allowlist
from protocol.messages import Command, CommandName
from tests.support.mosquitto import free_port

USER, TRAINER = "04A1B2C3", "04A1B2C5"


def send(agent: Agent, name: CommandName, **args: object) -> None:
    command = Command(ts=datetime.now(UTC), cmd=name, args=args).encode()
    agent._queue.put(("message", "atelier/v1/lab/laser-1/cmd", command))  # as paho delivers it
    agent.state()  # processed


def test_lock_then_a_one_shot_maintenance_window_then_unlock(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    state = tmp_path / "state"
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
                entries=[
                    AllowEntry(badge=USER, member="m-user"),
                    AllowEntry(badge=TRAINER, member="m-trainer", level="trainer"),
                ],
            ),
            key,
        )
    )
    agent = Agent(
        parse_config(
            {
                "agent": {
                    "site": "lab",
                    "machine": "laser-1",
                    "state_dir": str(state),
                    "hub_public_key": public_key_b64(key.public_key()),
                },
                "mqtt": {"port": free_port()},
                "gpio": {"pin_factory": "mock"},
                "relay": {"pin": 17},
                "reader": {"type": "sim"},
            }
        )
    )
    agent.start()
    try:
        assert agent.tap(USER)["decision"] == "granted"
        send(agent, CommandName.LOCK, reason="laser tube")
        assert agent.state()["locked"] and agent.state()["session"] is None
        assert agent.tap(USER)["reason"] == "locked_out"
        assert agent.tap(TRAINER)["reason"] == "locked_out"
        send(agent, CommandName.UNLOCK_FOR_MAINTENANCE)
        assert agent.tap(USER)["reason"] == "locked_out"
        assert agent.tap(TRAINER)["decision"] == "granted"
        assert agent.state()["session"]["mode"] == "maintenance"
        assert agent.tap(TRAINER)["decision"] == "ended"
        assert agent.tap(TRAINER)["reason"] == "locked_out"  # the window opened it once
        send(agent, CommandName.UNLOCK, reason="tube replaced")
        assert not agent.state()["locked"]
        assert agent.tap(USER)["decision"] == "granted"
    finally:
        agent.stop()
