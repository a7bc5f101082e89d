"""Issue 21 item 3 end to end: a simulated Tasmota plug on a real Mosquitto, a real agent and the
hub's ingest: the kWh the hub stores for a session equal the plug's counter delta, across a
counter reset."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from edge.agent import Agent
from edge.config import parse_config
from hub.models import Badge, MachineSession, Member
from tests.integration.test_agent_offline import HUGO, Hub, hub  # noqa: F401
from tests.integration.test_busy_sources import plug
from tests.support.power_plug_sim import tasmota_sensor
from tests.support.processes import wait_until

QUIET = {  # never busy: the plug draws 5 W throughout; only its energy counter matters here
    "busy_above_w": 100,
    "busy_after_s": 1.0,
    "idle_below_w": 30,
    "idle_after_s": 1.0,
    "telemetry_min_interval_s": 0,
}


def test_a_sessions_kwh_equal_the_plugs_counter_delta_across_a_reset(
    hub: Hub,  # noqa: F811 - the fixture imported above
) -> None:
    sim = plug(hub.broker, "tasmota", "laser-1-plug")
    config = hub.agent_config(
        "laser-1", power_meter={"kind": "tasmota", "topic": "laser-1-plug", **QUIET}
    )
    agent = Agent(parse_config(config))
    agent.start()

    def reading(total_kwh: float, agent_total: float) -> None:
        sim.publish_raw(tasmota_sensor(5, total_kwh=total_kwh))
        wait_until(
            lambda: agent.state()["energy_kwh"] == pytest.approx(agent_total, abs=1e-9),
            timeout=10,
            what=f"the agent to read {total_kwh} kWh",
        )

    try:
        wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the allow-list")
        reading(100.0, 0.0)  # the counter before the session: nobody's
        reading(100.1, 0.1)
        assert agent.tap(HUGO)["decision"] == "granted"
        reading(100.25, 0.25)
        reading(100.7, 0.7)
        reading(0.0, 0.7)  # EnergyReset (or a firmware update): the counter starts again
        reading(0.12, 0.82)
        reading(0.3, 1.0)
        assert agent.tap(HUGO)["decision"] == "ended"
        reading(0.9, 1.6)  # after the session: nobody's again

        def stored() -> MachineSession | None:
            with Session(hub.engine) as session:
                return session.exec(
                    select(MachineSession).where(col(MachineSession.ended_at).is_not(None))
                ).first()

        row = wait_until(stored, timeout=15, what="the session's end at the hub")
        with Session(hub.engine) as session:
            hugo = session.exec(select(Member).join(Badge).where(Badge.uid == HUGO)).one()
        # The plug's counter moved 100.1 -> 100.7, then 0 -> 0.3 during the session.
        assert row.member_ref == hugo.ref
        assert row.energy_kwh == pytest.approx((100.7 - 100.1) + 0.3, abs=1e-9)
    finally:
        agent.stop()
        sim.close()
