"""Fault e: the agent's journal runs out of disk while the agent is off the network."""

from __future__ import annotations

import time

import pytest
from sqlmodel import col, select

from edge.inputs import Readings
from hub.models import Event, Machine, TelemetrySample
from tests.faults.conftest import FaultLab, Traffic
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_journal_disk_full_decisions_go_on_and_nothing_is_lost(lab: FaultLab, report) -> None:
    fleet = lab.start_fleet(3)
    victim = lab.start_agent(lab.machines[3], linked=True)
    machines = [*fleet, victim]
    agent = victim.agent
    journal = agent.journal
    assert journal is not None
    with Traffic(machines, pause_s=0.05, max_taps=40):
        time.sleep(1.5)
    wait_until(lambda: lab.converged(machines), timeout=30, what="the first taps stored")
    victim.link.cut()
    wait_until(lambda: not victim.state()["connected"], timeout=20, what="the link cut")
    samples = 0

    def sample() -> None:
        nonlocal samples
        samples += 1
        # As an integration reports a reading (the loop's own telemetry input).
        agent._queue.put(Readings({"watts": 1000 + samples}))

    for _ in range(300):
        sample()
    wait_until(lambda: len(journal.kept_telemetry(limit=1000)) == 300, timeout=10, what="kept")
    journal.limit_pages(journal.page_count())  # the card is full from here on
    slowest = 0.0
    decisions: dict[str, int] = {}
    for i in range(120):
        started = time.monotonic()
        reply = victim.tap()
        slowest = max(slowest, time.monotonic() - started)
        decisions[reply["decision"]] = decisions.get(reply["decision"], 0) + 1
        if i % 4 == 0:
            sample()
    state = victim.state()
    assert state["journal_full"] and journal.held > 0
    # Telemetry went first: none kept, all shed, while every event is still waiting.
    assert journal.kept_telemetry() == [] and journal.shed_telemetry == samples
    held_peak = journal.held
    victim.link.restore()
    back = time.monotonic()
    recover_s = lab.wait_converged(machines, since=back)
    tally = lab.tally(machines)
    # The hub was told: the status says so, and so does an incident event.
    wait_until(
        lambda: (
            (
                lab.engine_rows(select(Machine).where(Machine.code == victim.machine))[
                    0
                ].last_status
                or {}
            ).get("journal")
            == "full"
        ),
        timeout=15,
        what="the full journal in the hub's status",
    )
    incidents = lab.engine_rows(
        select(Event)
        .where(Event.machine == victim.machine, Event.type == "incident.reported")
        .order_by(col(Event.seq))
    )
    # Room again (old files removed): the next event reaches the disk and the all-clear is sent.
    journal.limit_pages(1_000_000)
    victim.tap()
    victim.tap()
    lab.wait_converged(machines, since=back)
    kinds = [
        e.data.get("kind")
        for e in lab.engine_rows(
            select(Event)
            .where(Event.machine == victim.machine, Event.type == "incident.reported")
            .order_by(col(Event.seq))
        )
    ]
    telemetry_stored = lab.count(TelemetrySample, TelemetrySample.machine == victim.machine)
    tally = lab.tally(machines)
    report(
        "e. journal disk full",
        **{k: tally[k] for k in ("produced", "stored", "duplicated")},
        recover_s=recover_s,
        agents=len(machines),
        taps_while_full=sum(decisions.values()),
        slowest_tap_s=round(slowest, 3),
        held_in_memory_peak=held_peak,
        sent_events_shed=journal.shed_sent,
        telemetry_produced=samples,
        telemetry_shed=journal.shed_telemetry,
        telemetry_stored=telemetry_stored,
    )
    assert set(decisions) == {"granted", "ended"} and slowest < 2
    assert [e.data.get("kind") for e in incidents] == ["journal-full"]
    assert kinds == ["journal-full", "journal-ok"] and not victim.state()["journal_full"]
    assert tally["stored"] == tally["produced"] and tally["duplicated"] == 0
