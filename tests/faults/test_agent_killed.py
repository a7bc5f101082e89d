"""Fault c: agents SIGKILLed in the middle of a session, with events not yet sent."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from edge.agent import Agent
from edge.journal import Journal
from hub.models import MachineSession
from protocol.allowlist import AllowEntry
from protocol.envelope import EventType, decode_envelope
from tests.faults.conftest import HUGO, FaultLab, Traffic
from tests.support.edge import offline_config
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_agents_killed_mid_session_replay_and_close_the_session(lab: FaultLab, report) -> None:
    agents = [lab.spawn_agent(m, linked=True) for m in lab.machines[:3]]
    victims = agents[:2]
    with Traffic(agents, pause_s=0.05, max_taps=40):
        time.sleep(2.0)
    wait_until(lambda: lab.converged(agents), timeout=30, what="the first taps stored")
    open_sessions = {}
    for agent in victims:
        agent.link.cut()  # what follows stays in the journal, unsent
        wait_until(lambda a=agent: not a.state()["connected"], timeout=20, what="link cut")
        for _ in range(6):
            agent.tap()  # three short sessions, journaled only
        reply = agent.tap()
        assert reply["decision"] == "granted" and reply["relay_pin"] == 1
        open_sessions[agent.machine] = (reply["session_id"], datetime.now(UTC))
    time.sleep(7)  # the session runs; the agent notes it is alive every 5 s
    unsent = {a.machine: a.state()["backlog"] for a in victims}
    killed_at = datetime.now(UTC)
    for agent in victims:
        agent.kill()
        agent.link.restore()
    restarted = time.monotonic()
    for agent in victims:
        agent.start()  # journal replays; the open session is closed with agent-restart
        state = agent.state()
        assert state["session"] is None and state["relay_pin"] == 0
    recover_s = lab.wait_converged(agents, since=restarted)
    tally = lab.tally(agents)
    durations, billed_extra = {}, {}
    for machine, (session_id, started) in open_sessions.items():
        (row,) = lab.engine_rows(select(MachineSession).where(MachineSession.id == session_id))
        assert row.end_reason == "agent-restart" and row.ended_at is not None
        # The end is the last moment the agent was known alive: not 0, not the restart.
        assert 0 < row.duration_s <= (killed_at - started).total_seconds() + 1
        durations[machine] = round(row.duration_s, 1)
        # Known defect (see test_recovered_session_end_is_stamped_when_it_ended): the hub's
        # ended_at is the restart, so the span between start and end includes the downtime.
        span = (row.ended_at - row.started_at).total_seconds()
        billed_extra[machine] = round(span - row.duration_s, 1)
    report(
        "c. agent SIGKILLed mid-session",
        **{k: tally[k] for k in ("produced", "stored", "duplicated")},
        recover_s=recover_s,
        agents=len(agents),
        killed=len(victims),
        unsent_at_kill=sum(unsent.values()),
        closed_session_s=durations,
        ended_at_minus_duration_s=billed_extra,
    )
    assert all(count > 0 for count in unsent.values())
    assert tally["stored"] == tally["produced"] and tally["duplicated"] == 0
    # The machine works again after the restart.
    assert all(a.tap()["decision"] == "granted" for a in victims)


def test_recovered_session_end_is_stamped_when_it_ended(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    entries = [AllowEntry(badge=HUGO, member="m-hugo")]
    config = offline_config(state_dir, entries)
    started = datetime.now(UTC) - timedelta(hours=1)
    journal = Journal(state_dir / "journal.sqlite3", "laser-1", clock=lambda: started)
    journal.append(
        EventType.SESSION_STARTED, {"session_id": "s-1", "member": "m-hugo", "badge": HUGO}
    )
    # Alive five seconds into the session, then the power went for an hour.
    journal.set_meta("last_alive", (started + timedelta(seconds=5)).isoformat())
    journal.close()
    agent = Agent(config)
    agent.start()
    try:
        ended = [
            decode_envelope(p)
            for _, p in agent.journal.unsent()
            if decode_envelope(p).type is EventType.SESSION_ENDED
        ]
    finally:
        agent.stop()
    (end,) = ended
    assert end.data["reason"] == "agent-restart" and end.data["duration_s"] == 5
    assert end.ts == started + timedelta(seconds=5)
