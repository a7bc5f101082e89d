"""Fault b: the hub SIGKILLed in the middle of a burst, then started again."""

from __future__ import annotations

import time

import pytest

from hub.models import Event
from tests.faults.conftest import FaultLab, Traffic
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_hub_killed_mid_burst_then_restarted(lab: FaultLab, report) -> None:
    fleet = lab.start_fleet(6)
    with Traffic(fleet, pause_s=0.02, max_taps=250) as traffic:
        # Mid-burst: the hub is storing while the agents go on publishing.
        wait_until(lambda: lab.count(Event) >= 300, timeout=30, what="the burst under way")
        lab.kill_hub()
        killed = time.monotonic()
        stored_at_kill = lab.count(Event)
        time.sleep(2.0)  # the broker keeps the hub's queue (persistent session)
        lab.start_hub()
        restarted = time.monotonic()
    produced_by_burst = lab.tally(fleet)["produced"]
    recover_s = lab.wait_converged(fleet, since=restarted)
    tally = lab.tally(fleet)
    report(
        "b. hub SIGKILLed mid-burst",
        **{k: tally[k] for k in ("produced", "stored", "duplicated")},
        recover_s=recover_s,
        agents=len(fleet),
        taps=traffic.taps,
        stored_at_kill=stored_at_kill,
        hub_down_s=round(restarted - killed, 2),
    )
    assert stored_at_kill < produced_by_burst  # the kill really came mid-burst
    assert not traffic.errors, traffic.errors[:5]
    assert tally["stored"] == tally["produced"] and tally["duplicated"] == 0
