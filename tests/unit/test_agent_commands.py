"""Hub commands at the agent: lock, unlock-for-maintenance (one-shot), unlock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.agent import Agent
from edge.inputs import Message
from protocol.allowlist import AllowEntry
from protocol.commands import sign_command
from protocol.envelope import EventType, decode_envelope
from protocol.messages import Command, CommandName
from tests.support.edge import offline_config

USER, TRAINER = "04A1B2C3", "04A1B2C5"


HUB = Ed25519PrivateKey.generate()


def deliver(agent: Agent, payload: bytes) -> None:
    agent._queue.put(Message("atelier/v1/lab/laser-1/cmd", payload))  # as paho delivers it
    agent.state()  # processed


def send(agent: Agent, name: CommandName, **args: object) -> None:
    deliver(agent, sign_command(Command(ts=datetime.now(UTC), cmd=name, args=args), "laser-1", HUB))


def test_lock_then_a_one_shot_maintenance_window_then_unlock(tmp_path: Path) -> None:
    agent = Agent(
        offline_config(
            tmp_path / "state",
            [
                AllowEntry(badge=USER, member="m-user"),
                AllowEntry(badge=TRAINER, member="m-trainer", level="trainer"),
            ],
            key=HUB,
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


@pytest.mark.parametrize(
    "forged",
    [
        # unsigned, the old wire format
        Command(ts=datetime.now(UTC), cmd=CommandName.END_SESSION).encode(),
        # signed by another key
        sign_command(
            Command(ts=datetime.now(UTC), cmd=CommandName.END_SESSION),
            "laser-1",
            Ed25519PrivateKey.generate(),
        ),
        # signed by the hub, for another machine
        sign_command(Command(ts=datetime.now(UTC), cmd=CommandName.END_SESSION), "cnc-1", HUB),
        # signed by the hub, two days old
        sign_command(
            Command(ts=datetime.now(UTC) - timedelta(days=2), cmd=CommandName.END_SESSION),
            "laser-1",
            HUB,
        ),
    ],
    ids=["unsigned", "other-key", "other-machine", "stale"],
)
def test_commands_the_hub_did_not_sign_for_this_machine_now_are_refused(
    tmp_path: Path, forged: bytes
) -> None:
    agent = Agent(offline_config(tmp_path / "state", [AllowEntry(badge=USER, member="m")], key=HUB))
    agent.start()
    try:
        assert agent.tap(USER)["decision"] == "granted"
        deliver(agent, forged)
        assert agent.state()["session"] is not None  # the session was not cut
    finally:
        agent.stop()


def test_a_replayed_command_is_applied_once(tmp_path: Path) -> None:
    agent = Agent(offline_config(tmp_path / "state", [AllowEntry(badge=USER, member="m")], key=HUB))
    agent.start()
    try:
        lock = sign_command(
            Command(ts=datetime.now(UTC), cmd=CommandName.LOCK, args={"reason": "tube"}),
            "laser-1",
            HUB,
        )
        deliver(agent, lock)
        send(agent, CommandName.UNLOCK)
        deliver(agent, lock)  # the same signed lock, captured and sent again
        assert not agent.state()["locked"]
    finally:
        agent.stop()


def test_enrolment_reports_the_next_card_instead_of_deciding(tmp_path: Path) -> None:
    agent = Agent(offline_config(tmp_path / "state", [AllowEntry(badge=USER, member="m")], key=HUB))
    agent.start()
    try:
        send(agent, CommandName.ENROL, request_id="r-1", window_s=30)
        new_card = "0A0B0C0D"
        reply = agent.tap(new_card)
        assert reply["decision"] == "read" and reply["badge"] == new_card
        assert reply["relay"] == "open"
        # One card only: the next tap is an ordinary request for access again.
        assert agent.tap(USER)["decision"] == "granted"
        events = [decode_envelope(p) for _, p in agent.journal.unsent()]
    finally:
        agent.stop()
    (read,) = [e for e in events if e.type is EventType.BADGE_READ]
    assert read.data == {"badge": new_card, "request_id": "r-1"}
    assert not [e for e in events if e.type is EventType.BADGE_DENIED]
