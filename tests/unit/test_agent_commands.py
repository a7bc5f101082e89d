"""Hub commands at the agent: lock, unlock-for-maintenance (one-shot), unlock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge.agent import Agent
from protocol.allowlist import AllowEntry
from protocol.messages import Command, CommandName
from tests.support.edge import offline_config

USER, TRAINER = "04A1B2C3", "04A1B2C5"


def send(agent: Agent, name: CommandName, **args: object) -> None:
    command = Command(ts=datetime.now(UTC), cmd=name, args=args).encode()
    agent._queue.put(("message", "atelier/v1/lab/laser-1/cmd", command))  # as paho delivers it
    agent.state()  # processed


def test_lock_then_a_one_shot_maintenance_window_then_unlock(tmp_path: Path) -> None:
    agent = Agent(
        offline_config(
            tmp_path / "state",
            [
                AllowEntry(badge=USER, member="m-user"),
                AllowEntry(badge=TRAINER, member="m-trainer", level="trainer"),
            ],
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
