"""The agent's GPIO with gpiozero's MockFactory: relay, busy input, incident button, LED, buzzer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.agent import Agent
from protocol.allowlist import AllowEntry
from protocol.envelope import decode_envelope
from tests.support.edge import offline_config

BADGE = "04A1B2C3"


def until(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Agent, MockFactory]]:
    config = offline_config(
        tmp_path / "state",
        [AllowEntry(badge=BADGE, member="m-1")],
        relay={"pin": 17, "active_high": False},
        busy_input={"pin": 22, "pull_up": False, "bounce_s": 0},
        incident_button={"pin": 23, "pull_up": True, "bounce_s": 0},
        led={"pin": 27},
        buzzer={"pin": 24},
    )
    factory = MockFactory()
    agent = Agent(config, pin_factory=factory)
    agent.start()
    try:
        yield agent, factory
    finally:
        agent.stop()
        factory.reset()


def journal_types(agent: Agent) -> list[str]:
    assert agent.journal is not None
    return [decode_envelope(p).type.value for _, p in agent.journal.unsent(limit=10_000)]


def test_active_low_relay_and_led_follow_the_session(rig) -> None:
    agent, factory = rig
    relay, led = factory.pin(17), factory.pin(27)
    assert relay.state == 1 and led.state == 0  # active low: high level = open
    agent.tap(BADGE)
    assert relay.state == 0 and led.state == 1
    agent.tap(BADGE)
    assert relay.state == 1 and led.state == 0


def test_busy_input_becomes_events_and_holds_power(rig) -> None:
    agent, factory = rig
    busy = factory.pin(22)
    agent.tap(BADGE)
    busy.drive_high()
    until(lambda: agent.state()["busy"])
    assert agent.tap(BADGE)["decision"] == "ended"
    assert factory.pin(17).state == 0  # still powered: the job goes on
    busy.drive_low()
    until(lambda: factory.pin(17).state == 1)
    types = journal_types(agent)
    assert types.count("machine.busy") == 1 and types.count("machine.idle") == 1


def test_anti_restart_when_the_machine_is_already_running(rig) -> None:
    agent, factory = rig
    factory.pin(22).drive_high()
    until(lambda: agent.state()["busy"])
    reply = agent.tap(BADGE)
    assert reply["decision"] == "denied" and reply["reason"] == "machine_already_running"
    assert factory.pin(17).state == 1


def test_incident_button_reports_an_incident(rig) -> None:
    agent, factory = rig
    agent.tap(BADGE)
    button = factory.pin(23)
    button.drive_low()  # pulled up: pressing connects to ground
    until(lambda: "incident.reported" in journal_types(agent))
    button.drive_high()


def test_buzzer_beeps_on_a_denial(rig) -> None:
    agent, factory = rig
    buzzer = factory.pin(24)
    agent.tap("DEADBEEF")
    until(lambda: any(s.state == 1 for s in buzzer.states))


def test_stop_opens_the_relay(rig) -> None:
    agent, factory = rig
    agent.tap(BADGE)
    relay = factory.pin(17)
    assert relay.state == 0
    agent.stop()
    assert relay.state == 1
    agent.stop()  # safe twice


def test_the_configured_mock_pins_keep_only_their_recent_changes() -> None:
    """A simulated machine runs for weeks: its mock relay must not remember every change."""
    from gpiozero import OutputDevice

    from edge.hardware.outputs import MOCK_PIN_HISTORY, make_pin_factory

    relay = OutputDevice(17, pin_factory=make_pin_factory("mock"))
    try:
        for _ in range(5 * MOCK_PIN_HISTORY):
            relay.on()
            relay.off()
        assert MOCK_PIN_HISTORY <= len(relay.pin.states) <= 2 * MOCK_PIN_HISTORY
        assert [s.state for s in relay.pin.states[-2:]] == [True, False]
        assert relay.value == 0
    finally:
        relay.close()
