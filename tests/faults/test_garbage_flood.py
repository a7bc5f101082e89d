"""Fault g: a valid agent account floods the broker with garbage while the fleet works."""

from __future__ import annotations

import json
import random
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import func
from sqlmodel import select

from hub.models import DeadLetter, Event
from protocol import EventType, encode_envelope, new_envelope
from tests.faults.conftest import FaultLab, Traffic
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]

GARBAGE = 20_000
RNG = random.Random(9)  # seeded: a run can be replayed byte for byte
FORGERIES = 500  # on another machine's topic: the broker ACL refuses them


def garbage(machine: str, i: int) -> bytes:
    """Twenty thousand ways to be wrong, a few of each kind, seeded so a run can be replayed."""
    kind = i % 8
    if kind == 0:
        return RNG.randbytes(40)
    if kind == 1:
        return b"not json at all %d" % i
    if kind == 2:
        return b"[1, 2, 3]"
    if kind == 3:
        return json.dumps({"v": 1, "id": str(uuid.uuid4()), "seq": i}).encode()
    if kind == 4:
        return json.dumps({"v": 2, "id": str(uuid.uuid4())}).encode()
    if kind == 5:
        body = json.loads(
            encode_envelope(
                new_envelope(
                    machine=machine,
                    type=EventType.INCIDENT_REPORTED,
                    seq=i,
                    data={"source": "flood"},
                )
            )
        )
        body["type"] = "laser.exploded"
        return json.dumps(body).encode()
    if kind == 6:
        # Well formed, but speaking for another machine: refused by the hub.
        return encode_envelope(
            new_envelope(
                machine="laser-1", type=EventType.INCIDENT_REPORTED, seq=i, data={"source": "x"}
            )
        )
    return b"x" * (17 * 1024) if i % 800 == 7 else b"{" * 50


def test_garbage_flood_from_a_valid_account(lab: FaultLab, report) -> None:
    fleet = lab.start_fleet(5)
    flooder_machine = lab.machines[5]
    user, password = lab.broker.agent_credentials(flooder_machine)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="flooder",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(200)
    client.connect(lab.broker.host, lab.broker.port)
    client.loop_start()
    try:
        wait_until(client.is_connected, timeout=10, what="the flooder connected")
        with Traffic(fleet, pause_s=0.05, max_taps=400) as traffic:
            started = time.monotonic()
            infos = [
                client.publish(
                    f"atelier/v1/lab/{flooder_machine}/event", garbage(flooder_machine, i), qos=1
                )
                for i in range(GARBAGE)
            ]
            infos += [
                client.publish("atelier/v1/lab/laser-1/event", garbage("laser-1", 5), qos=1)
                for _ in range(FORGERIES)
            ]
            for info in infos:
                info.wait_for_publish(timeout=120)
            flood_s = round(time.monotonic() - started, 2)
        flood_done = time.monotonic()
        wait_until(
            lambda: lab.count(DeadLetter) >= GARBAGE,
            timeout=120,
            what="every garbage message dead-lettered",
            proc=lab.hub,
            interval=0.5,
        )
        dead_letters_s = round(time.monotonic() - flood_done, 2)
        recover_s = lab.wait_converged(fleet, since=flood_done)
    finally:
        client.loop_stop()
        client.disconnect()
    tally = lab.tally(fleet)
    reasons = {
        reason: count
        for reason, count in lab.engine_rows(
            select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason)
        )
    }
    report(
        "g. garbage flood (20,000 from a valid account)",
        **{k: tally[k] for k in ("produced", "stored", "duplicated")},
        recover_s=recover_s,
        agents=len(fleet),
        taps=traffic.taps,
        garbage=GARBAGE,
        dead_letters=lab.count(DeadLetter),
        flood_publish_s=flood_s,
        dead_lettered_after_flood_s=dead_letters_s,
        forgeries_refused_by_broker=FORGERIES,
        dead_letter_reasons=reasons,
    )
    assert lab.count(DeadLetter) == GARBAGE
    # The forgeries never reached the hub, and no garbage became an event.
    assert lab.count(Event, Event.machine.in_(["laser-1", flooder_machine])) == 0  # type: ignore[attr-defined]
    assert not traffic.errors, traffic.errors[:5]
    assert tally["stored"] == tally["produced"] and tally["duplicated"] == 0
