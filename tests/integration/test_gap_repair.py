"""Events the hub missed are asked for again and come back from the agent's journal."""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import Session, select

from hub.gaps import GapRepairer, first_missing_seq
from hub.models import AgentSeq, Event
from tests.integration.test_agent_offline import HUGO, Hub, hub, started_agent  # noqa: F401
from tests.support.processes import wait_until


def test_missing_events_are_sent_again_and_stored_once(hub: Hub) -> None:  # noqa: F811
    agent = started_agent(hub, "laser-1")
    try:
        for _ in range(4):
            agent.tap(HUGO)  # two sessions: granted, started, ended, ...
        wait_until(lambda: agent.state()["backlog"] == 0, timeout=10, what="all sent")
        wait_until(lambda: len(hub.events("laser-1")) >= 7, timeout=10, what="all stored")
        total = len(hub.events("laser-1"))
        # Lose three of them at the hub, as a broker that dropped a queue would.
        with Session(hub.engine) as session:
            session.execute(
                delete(Event).where(Event.machine == "laser-1", Event.seq.in_([2, 3, 4]))
            )  # type: ignore[attr-defined]
            row = session.exec(select(AgentSeq).where(AgentSeq.machine == "laser-1")).one()
            row.seen -= 3
            session.add(row)
            session.commit()
            assert first_missing_seq(session, "lab", "laser-1", row.max_seq) == 2
        repairer = GapRepairer(hub.engine, hub.publisher.send_command, settle_s=0)
        assert repairer.check_once() == 1
        wait_until(
            lambda: len(hub.events("laser-1")) == total,
            timeout=15,
            what="the lost events sent again",
        )
        seqs = sorted(e.seq for e in hub.events("laser-1"))
        assert seqs == list(range(1, total + 1))  # each once
        with Session(hub.engine) as session:
            assert (
                session.exec(select(AgentSeq).where(AgentSeq.machine == "laser-1")).one().missing
                == 0
            )
        assert repairer.check_once() == 0  # nothing left to ask for
    finally:
        agent.stop()
