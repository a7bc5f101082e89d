"""Interlocks and accessories: the pure rules, then the agent on gpiozero's MockFactory (a
laser with extraction, chiller flow, an extractor relay with run-on and a rotary axis that
needs its own training)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.agent import Agent
from edge.domain.access import Decision
from edge.domain.interlocks import (
    Accessory,
    Interlock,
    accessory_on,
    faults,
    gate,
    training_refusal,
)
from protocol.allowlist import AllowEntry
from protocol.envelope import DenyReason
from tests.support.edge import offline_config

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
HUGO, LEA = "04A1B2C3", "04A1B2C4"  # Hugo holds the rotary training, Lea does not
EXTRACTION, CHILLER, EXTRACTOR, ROTARY, BUZZER = 5, 6, 22, 23, 24


# -- the pure rules ------------------------------------------------------------------------
def test_a_grant_becomes_a_denial_while_an_interlock_is_not_ok() -> None:
    locks = [Interlock("extraction", "extraction"), Interlock("fan", "extraction", grace_s=10)]
    granted = Decision(True, entry=AllowEntry(badge=HUGO, member="m"))
    assert gate(granted, locks, {"extraction": False, "fan": False}).reason is (
        DenyReason.INTERLOCK_OPEN
    )
    # An input with a grace period comes up after the relay closes: it does not hold back.
    assert gate(granted, locks, {"extraction": True, "fan": False}) == granted
    maintenance = Decision(True, entry=granted.entry, maintenance=True)
    assert not gate(maintenance, locks, {}).granted  # a maintainer's override is no exception
    denied = Decision(False, DenyReason.NOT_TRAINED)
    assert gate(denied, locks, {}) == denied


@settings(max_examples=50)
@given(
    grace=st.floats(min_value=0, max_value=600, allow_nan=False),
    elapsed=st.floats(min_value=0, max_value=10_000, allow_nan=False),
)
def test_a_fault_counts_once_past_its_grace(grace: float, elapsed: float) -> None:
    locks = [Interlock("extraction", "extraction", grace_s=grace)]
    now = T0 + timedelta(seconds=elapsed)
    found = faults(locks, {"extraction": False}, relay_closed_at=T0, now=now)
    assert found == (
        ["extraction"] if timedelta(seconds=elapsed) >= timedelta(seconds=grace) else []
    )
    assert faults(locks, {"extraction": True}, relay_closed_at=T0, now=now) == []
    assert faults(locks, {"extraction": False}, relay_closed_at=None, now=now) == []


@settings(max_examples=50)
@given(
    run_on=st.floats(min_value=0, max_value=24 * 3600, allow_nan=False),
    after=st.floats(min_value=0, max_value=48 * 3600, allow_nan=False),
    was_on=st.booleans(),
)
def test_an_accessory_runs_on_only_after_it_ran(run_on: float, after: float, was_on: bool) -> None:
    extractor = Accessory("extractor", run_on_s=run_on)
    on = accessory_on(
        extractor,
        relay_closed=False,
        allowed=True,
        was_on=was_on,
        relay_opened_at=T0,
        now=T0 + timedelta(seconds=after),
    )
    assert on == (was_on and timedelta(seconds=after) < timedelta(seconds=run_on))
    for allowed in (True, False):
        closed = accessory_on(
            extractor,
            relay_closed=True,
            allowed=allowed,
            was_on=False,
            relay_opened_at=None,
            now=T0,
        )
        assert closed is allowed


def test_an_accessory_training_is_read_from_the_allow_list_entry() -> None:
    rotary = Accessory("rotary", training="laser-rotary")
    trained = AllowEntry(badge=HUGO, member="m", trainings={"laser-rotary": None})
    expired = AllowEntry(badge=HUGO, member="m", trainings={"laser-rotary": T0})
    assert training_refusal(rotary, trained, T0) is None
    assert training_refusal(rotary, expired, T0) is DenyReason.TRAINING_EXPIRED
    assert training_refusal(rotary, AllowEntry(badge=LEA, member="l"), T0) is (
        DenyReason.NOT_TRAINED
    )
    assert training_refusal(Accessory("extractor"), None, T0) is None


# -- the agent on MockFactory ----------------------------------------------------------------
class Wall:
    """The agent's wall clock, moved by the test (the run-on is minutes long)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def laser(tmp_path: Path, wall: Wall, **safety: Any) -> Agent:
    config = offline_config(
        tmp_path / "state",
        [
            AllowEntry(badge=HUGO, member="m-hugo", trainings={"laser-rotary": None}),
            AllowEntry(badge=LEA, member="m-lea"),
        ],
        interlock=[
            {"name": "extraction", "kind": "extraction", "pin": EXTRACTION},
            {"name": "chiller", "kind": "chiller_flow", "pin": CHILLER},
        ],
        accessory=[
            {"name": "extractor", "pin": EXTRACTOR, "run_on_s": 120},
            {"name": "rotary", "pin": ROTARY, "training": "laser-rotary"},
        ],
        buzzer={"pin": BUZZER},
        safety=safety,
    )
    return Agent(config, clock=wall)


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def agent(tmp_path: Path, wall: Wall) -> Iterator[Agent]:
    a = laser(tmp_path, wall)
    a.start()
    yield a
    a.stop()


def pin(agent: Agent, number: int) -> Any:
    assert agent.devices is not None
    return agent.devices.pin_factory.pin(number)


def events(agent: Agent, kind: str) -> list[dict[str, Any]]:
    agent.state()  # everything queued so far is journaled
    assert agent.journal is not None
    found = [json.loads(payload) for _, payload in agent.journal.since(1, limit=10_000)]
    return [e["data"] for e in found if e["type"] == kind]


def eventually(check: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_no_relay_without_extraction(agent: Agent) -> None:
    pin(agent, CHILLER).drive_high()
    refused = agent.tap(HUGO)
    assert refused["decision"] == "denied" and refused["reason"] == "interlock_open"
    assert refused["relay_pin"] == 0 and pin(agent, EXTRACTOR).state == 0
    pin(agent, EXTRACTION).drive_high()
    eventually(lambda: agent.state()["interlocks"] == {"extraction": True, "chiller": True}, "ok")
    assert agent.tap(HUGO)["decision"] == "granted"
    assert agent.state()["relay_pin"] == 1


def test_a_chiller_fault_mid_session_is_an_event_warns_and_opens_the_relay(agent: Agent) -> None:
    pin(agent, EXTRACTION).drive_high()
    pin(agent, CHILLER).drive_high()
    granted = agent.tap(HUGO)
    assert granted["decision"] == "granted"
    pin(agent, CHILLER).drive_low()  # the coolant stops
    eventually(lambda: agent.state()["relay_pin"] == 0, "the relay to open")
    assert agent.state()["session"] is None
    [fault] = events(agent, "interlock.fault")
    assert fault == {
        "interlock": "chiller",
        "kind": "chiller_flow",
        "action": "session-ended",
        "session_id": granted["session_id"],
        "member": "m-hugo",
    }
    [ended] = events(agent, "session.ended")
    assert ended["reason"] == "interlock"
    assert agent.tap(HUGO)["reason"] == "interlock_open"
    pin(agent, CHILLER).drive_high()
    eventually(lambda: bool(events(agent, "interlock.cleared")), "the fault to clear")


def test_a_fault_while_the_laser_cuts_waits_for_the_job_to_end(agent: Agent) -> None:
    pin(agent, EXTRACTION).drive_high()
    pin(agent, CHILLER).drive_high()
    assert agent.tap(HUGO)["decision"] == "granted"
    agent.set_busy(True)
    eventually(lambda: agent.state()["busy"], "busy")
    pin(agent, CHILLER).drive_low()
    eventually(lambda: agent.state()["session"] is None, "the session to end")
    assert agent.state()["relay_pin"] == 1  # never cut while the machine works
    agent.set_busy(False)
    eventually(lambda: agent.state()["relay_pin"] == 0, "the relay to open once idle")


def test_warn_only_keeps_the_session(tmp_path: Path, wall: Wall) -> None:
    agent = laser(tmp_path, wall, on_fault="warn")
    agent.start()
    try:
        pin(agent, EXTRACTION).drive_high()
        pin(agent, CHILLER).drive_high()
        assert agent.tap(HUGO)["decision"] == "granted"
        time.sleep(0.5)  # the grant's beep is over
        buzzer = pin(agent, BUZZER)
        before = len(buzzer.states)
        pin(agent, EXTRACTION).drive_low()
        eventually(lambda: bool(events(agent, "interlock.fault")), "the fault event")
        # The warning: three beeps, six changes of the buzzer's pin.
        eventually(lambda: len(buzzer.states) - before >= 6, "the warning beeps")
        assert events(agent, "interlock.fault")[0]["action"] == "warned"
        assert agent.state()["session"] is not None and agent.state()["relay_pin"] == 1
    finally:
        agent.stop()


def test_the_extractor_follows_the_laser_and_runs_on(agent: Agent, wall: Wall) -> None:
    pin(agent, EXTRACTION).drive_high()
    pin(agent, CHILLER).drive_high()
    assert agent.tap(HUGO)["decision"] == "granted"
    assert pin(agent, EXTRACTOR).state == 1
    assert agent.tap(HUGO)["decision"] == "ended"
    assert agent.state()["relay_pin"] == 0 and pin(agent, EXTRACTOR).state == 1
    wall.now += timedelta(seconds=110)
    time.sleep(0.6)  # two of the loop's ticks
    assert pin(agent, EXTRACTOR).state == 1  # still clearing the fumes
    wall.now += timedelta(seconds=15)
    eventually(lambda: pin(agent, EXTRACTOR).state == 0, "the run-on to end")
    assert agent.state()["accessories"] == {"extractor": False, "rotary": False}


def test_the_rotary_is_refused_to_a_member_without_its_training(agent: Agent) -> None:
    pin(agent, EXTRACTION).drive_high()
    pin(agent, CHILLER).drive_high()
    granted = agent.tap(LEA)
    assert granted["decision"] == "granted"  # the laser itself: yes
    assert pin(agent, ROTARY).state == 0 and pin(agent, EXTRACTOR).state == 1
    assert events(agent, "accessory.refused") == [
        {
            "accessory": "rotary",
            "training": "laser-rotary",
            "reason": "not_trained",
            "member": "m-lea",
            "session_id": granted["session_id"],
        }
    ]
    assert agent.tap(LEA)["decision"] == "ended"
    assert agent.tap(HUGO)["decision"] == "granted"
    assert pin(agent, ROTARY).state == 1
    assert agent.state()["accessories"] == {"extractor": True, "rotary": True}
