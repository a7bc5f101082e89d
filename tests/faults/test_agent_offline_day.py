"""Fault d: an agent off the network for a simulated day, its clock moved by the test."""

from __future__ import annotations

import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session, select

from edge.inputs import Readings
from hub.core.db import make_engine
from hub.core.security import load_or_create_signing_key
from hub.models import Event, Machine, TelemetrySample
from hub.services.allowlists import allowlist_body
from protocol.allowlist import sign_body
from tests.faults.conftest import ALLOWLIST_TTL_HOURS, FaultLab, OffsetClock, Traffic
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_agent_offline_for_a_day_replays_and_its_list_expires(lab: FaultLab, report) -> None:
    fleet = lab.start_fleet(4)
    clock = OffsetClock()
    traveller = lab.start_agent(lab.machines[4], clock=clock, linked=True)
    machines = [*fleet, traveller]
    traveller.link.cut()
    wait_until(lambda: not traveller.state()["connected"], timeout=20, what="the link cut")
    for i in range(50):  # readings taken offline are kept for the hub's history
        traveller.agent._queue.put(Readings({"watts": i}))
    decisions: dict[str, list[str]] = {}
    with Traffic(fleet, pause_s=0.1, max_taps=60):  # the rest of the lab goes on meanwhile
        # Through the day, hour by hour: in and out, decided from the cached list.
        for hour in range(0, 25):
            clock.offset = timedelta(hours=hour, minutes=1)
            first = traveller.tap()
            second = traveller.tap() if first["decision"] == "granted" else first
            decisions.setdefault(first["reason"] or first["decision"], []).append(hour)
            assert second["decision"] in ("ended", "denied")
        time.sleep(2)
    produced_offline = traveller.state()["backlog"]
    traveller.link.restore()
    back = time.monotonic()
    recover_s = lab.wait_converged(machines, since=back)
    tally = lab.tally(machines)
    wait_until(
        lambda: lab.count(TelemetrySample, TelemetrySample.machine == traveller.machine) == 50,
        timeout=15,
        what="the offline telemetry at the hub",
    )

    # The next morning the hub re-publishes the list (its code, with the simulated time).
    engine = make_engine(lab.database_url)
    with Session(engine) as session:
        machine = session.exec(select(Machine).where(Machine.code == traveller.machine)).one()
        body = allowlist_body(
            session, machine, now=clock(), ttl=timedelta(hours=ALLOWLIST_TTL_HOURS)
        )
        session.commit()
    engine.dispose()
    key = load_or_create_signing_key(lab.tmp / "hub")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="morning")
    client.username_pw_set(lab.broker.hub_user, lab.broker.hub_password)
    client.connect(lab.broker.host, lab.broker.port)
    client.loop_start()
    try:
        client.publish(
            f"atelier/v1/lab/{traveller.machine}/acl", sign_body(body, key), qos=1, retain=True
        ).wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()
    wait_until(
        lambda: traveller.state()["acl_version"] == body["version"],
        timeout=20,
        what="the fresh list at the agent",
    )
    granted_again = traveller.tap()["decision"]
    traveller.tap()
    denied = lab.engine_rows(
        select(Event).where(Event.machine == traveller.machine, Event.type == "badge.denied")
    )
    report(
        "d. agent offline for a simulated day",
        **{k: tally[k] for k in ("produced", "stored", "duplicated")},
        recover_s=recover_s,
        agents=len(machines),
        offline_events=produced_offline,
        granted_hours=len(decisions.get("granted", [])),
        expired_hours=len(decisions.get("allow_list_expired", [])),
        allowlist_ttl_h=ALLOWLIST_TTL_HOURS,
        telemetry_kept_offline_and_stored=50,
    )
    # The list lasts as configured: granted for its 12 hours, refused after, never otherwise.
    assert set(decisions) == {"granted", "allow_list_expired"}
    assert max(decisions["granted"]) < ALLOWLIST_TTL_HOURS <= min(decisions["allow_list_expired"])
    assert {e.data["reason"] for e in denied} == {"allow_list_expired"}
    assert len(denied) == len(decisions["allow_list_expired"])
    assert tally["stored"] == tally["produced"] and tally["duplicated"] == 0
    assert granted_again == "granted"
