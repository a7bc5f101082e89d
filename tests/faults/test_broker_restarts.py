"""Fault a: the broker restarted three times while a fleet is badging."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FaultLab, Traffic
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_broker_restarted_three_times_during_a_run(lab: FaultLab, report) -> None:
    fleet = lab.start_fleet(6)
    reconnect_s: list[float] = []
    backlog_peak = 0
    with Traffic(fleet, pause_s=0.05, max_taps=300) as traffic:
        for _ in range(3):
            time.sleep(1.0)
            lab.broker.stop()
            time.sleep(1.0)  # taps go on against a dead broker: decided, journaled
            backlog_peak = max(backlog_peak, sum(a.state()["backlog"] for a in fleet))
            lab.broker.start()
            restarted = time.monotonic()
            wait_until(
                lambda: all(a.state()["connected"] for a in fleet),
                timeout=30,
                what="every agent back on the broker",
            )
            reconnect_s.append(round(time.monotonic() - restarted, 2))
    recover_s = lab.wait_converged(fleet, since=restarted)
    tally = lab.tally(fleet)
    report(
        "a. broker restarted 3x",
        **{k: tally[k] for k in ("produced", "stored", "duplicated")},
        recover_s=recover_s,
        agents=len(fleet),
        taps=traffic.taps,
        backlog_peak=backlog_peak,
        reconnect_s=reconnect_s,
    )
    assert backlog_peak > 0  # events really waited in the journals during the outages
    assert not traffic.errors, traffic.errors[:5]
    assert traffic.decisions.get("granted", 0) > 0 and "denied" not in traffic.decisions
    assert tally["stored"] == tally["produced"] and tally["duplicated"] == 0
