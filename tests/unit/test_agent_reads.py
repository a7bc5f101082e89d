"""A card read is decided in the reader's own thread, under the agent's state lock; the loop
thread journals its events afterwards, in the order of the state changes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.agent import Agent
from edge.hardware.readers import BadgeRead, OnBadge
from protocol.allowlist import AllowEntry
from protocol.envelope import decode_envelope
from tests.support.edge import offline_config

BADGE = "04A1B2C3"


class ThreadReader:
    """A reader whose polling thread is the caller's, as the mfrc522 and keyboard readers
    report a card from theirs."""

    kind = "test"
    healthy = True

    def __init__(self) -> None:
        self.on_badge: OnBadge | None = None

    def start(self, on_badge: OnBadge) -> None:
        self.on_badge = on_badge

    def stop(self) -> None:
        self.on_badge = None

    def read(self, uid: str, present: bool = True) -> None:
        assert self.on_badge is not None
        self.on_badge(BadgeRead(uid=uid, present=present))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Agent, MockFactory, ThreadReader]]:
    config = offline_config(tmp_path / "state", [AllowEntry(badge=BADGE, member="m-1")])
    factory = MockFactory()
    reader = ThreadReader()
    agent = Agent(config, pin_factory=factory, reader=reader)
    agent.start()
    try:
        yield agent, factory, reader
    finally:
        agent.stop()
        factory.reset()


def journal(agent: Agent) -> list[tuple[int, str, dict[str, object]]]:
    assert agent.journal is not None
    envs = [decode_envelope(p) for _, p in agent.journal.unsent(limit=100_000)]
    return [(e.seq, e.type.value, e.data) for e in envs]


def test_the_relay_has_switched_when_the_reader_callback_returns(rig) -> None:
    agent, factory, reader = rig
    relay = factory.pin(17)
    assert relay.state == 0
    reader.read(BADGE)
    assert relay.state == 1  # no waiting: decided in this thread
    agent.state()  # the loop has journaled what the decision emitted
    types = [t for _, t, _ in journal(agent)]
    assert types[-2:] == ["badge.granted", "session.started"]
    reader.read(BADGE)
    assert relay.state == 0
    agent.state()
    assert [t for _, t, _ in journal(agent)][-1] == "session.ended"


def test_an_unknown_card_is_refused_in_the_reader_thread(rig) -> None:
    agent, factory, reader = rig
    reader.read("DEADBEEF")
    assert factory.pin(17).state == 0
    agent.state()
    _, kind, data = journal(agent)[-1]
    assert (kind, data["reason"]) == ("badge.denied", "unknown_badge")


def test_reads_racing_the_loop_keep_the_events_in_the_order_of_the_state(rig) -> None:
    """Taps from the reader's thread while the loop applies busy edges: every state change
    is journaled once, in order, and the relay ends where the last change left it."""
    agent, factory, reader = rig
    done = threading.Event()

    def busy_edges() -> None:
        busy = False
        while not done.is_set():
            busy = not busy
            agent.set_busy(busy)
            done.wait(0.0005)
        agent.set_busy(False)

    reader.read(BADGE)  # a session opens before the machine can look busy (anti-restart)
    toggler = threading.Thread(target=busy_edges)
    toggler.start()
    try:
        for _ in range(300):
            reader.read(BADGE)
            done.wait(0.0002)
    finally:
        done.set()
        toggler.join()
    state = agent.state()
    events = journal(agent)
    seqs = [seq for seq, _, _ in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    open_session: object = None
    busy = False
    for _, kind, data in events:
        if kind == "session.started":
            assert open_session is None, "a session started while one was open"
            open_session = data["session_id"]
        elif kind == "session.ended":
            assert data["session_id"] == open_session, "a session ended that was not open"
            open_session = None
        elif kind == "machine.busy":
            assert not busy
            busy = True
        elif kind == "machine.idle":
            assert busy
            busy = False
    # 300 reads toggle the session (or extend it while busy): it ends in a consistent state.
    assert (open_session is not None) == (state["session"] is not None)
    assert any(kind == "machine.busy" for _, kind, _ in events)
