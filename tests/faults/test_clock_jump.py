"""Fault f: an agent's wall clock jumps forward, then back, in the middle of sessions."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from edge.agent import Agent
from hub.models import AgentSeq, Event, MachineSession
from protocol.allowlist import AllowEntry
from protocol.envelope import EventType, decode_envelope
from tests.faults.conftest import HUGO, FaultLab, OffsetClock, Traffic
from tests.support.edge import offline_config
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_clock_jumps_lose_nothing_and_keep_seq_in_order(lab: FaultLab, report) -> None:
    fleet = lab.start_fleet(4)
    clock = OffsetClock()
    jumper = lab.start_agent(lab.machines[4], clock=clock)
    machines = [*fleet, jumper]
    jumps = [timedelta(hours=2), timedelta(hours=-3), timedelta(minutes=-30), timedelta(hours=1)]
    with Traffic(fleet, pause_s=0.05, max_taps=100):
        for jump in jumps:
            assert jumper.tap()["decision"] == "granted"
            jumper.tap()  # out and in again: events on both sides of the jump
            jumper.tap()
            clock.offset += jump
            time.sleep(0.6)  # a few ticks of the agent's loop on the new time
            jumper.tap()
            if jumper.state()["session"] is not None:
                jumper.tap()
    done = time.monotonic()
    recover_s = lab.wait_converged(machines, since=done)
    tally = lab.tally(machines)
    stored = lab.engine_rows(
        select(Event).where(Event.machine == jumper.machine).order_by(Event.seq)
    )
    sessions = lab.engine_rows(
        select(MachineSession).where(MachineSession.machine == jumper.machine)
    )
    (seq_row,) = lab.engine_rows(select(AgentSeq).where(AgentSeq.machine == jumper.machine))
    report(
        "f. clock jumps (+2h, -3h, -30min, +1h)",
        **{k: tally[k] for k in ("produced", "stored", "duplicated")},
        recover_s=recover_s,
        agents=len(machines),
        jumper_events=len(stored),
        ts_out_of_order=sum(1 for a, b in zip(stored, stored[1:], strict=False) if b.ts < a.ts),
        session_durations_s=sorted(round(s.duration_s or 0, 1) for s in sessions),
        end_reasons=sorted({s.end_reason for s in sessions}),
    )
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert seq_row.missing == 0 and seq_row.max_seq == len(stored)
    assert tally["stored"] == tally["produced"] and tally["duplicated"] == 0


def test_session_durations_follow_the_monotonic_clock(tmp_path: Path) -> None:
    clock = OffsetClock()
    agent = Agent(
        offline_config(tmp_path / "state", [AllowEntry(badge=HUGO, member="m-hugo")]),
        clock=clock,
    )
    agent.start()
    try:
        for jump in (timedelta(hours=2), timedelta(hours=-3)):
            assert agent.tap(HUGO)["decision"] == "granted"
            clock.offset += jump
            time.sleep(0.6)
            wait_until(lambda: agent.state(), timeout=5, what="the loop")
            assert agent.tap(HUGO)["decision"] == "ended"
        events = [decode_envelope(p) for _, p in agent.journal.unsent()]
    finally:
        agent.stop()
    started = {e.data["session_id"]: e for e in events if e.type is EventType.SESSION_STARTED}
    ended = [e for e in events if e.type is EventType.SESSION_ENDED]
    assert len(ended) == 2
    for end in ended:
        assert end.data["reason"] == "badge-out"
        assert 0.5 <= end.data["duration_s"] < 30
        assert end.ts >= started[end.data["session_id"]].ts
