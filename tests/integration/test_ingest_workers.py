"""Ingest workers as processes on a real Mosquitto: killed mid-burst, and three sharing the load."""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.models import Event, MachineSession
from protocol import EventType, encode_envelope, new_envelope
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import Proc, wait_until

MACHINES = ["laser-1", "printer-1", "printer-2"]


def hub_settings(
    broker: MosquittoBroker, database_url: str, tmp: Path, **extra_env: str
) -> HubSettings:
    """The hub's settings, which its workers share (the same data_dir: the same key)."""
    return HubSettings(
        data_dir=tmp / "hub",
        database_url=database_url,
        site="lab",
        broker=broker,
        extra_env={"ATELIER_INGEST_BATCH_MS": "20", **extra_env},
    )


def worker_env(broker: MosquittoBroker, database_url: str, tmp: Path) -> dict[str, str]:
    return hub_settings(broker, database_url, tmp).env()


def stored(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            return int(session.exec(select(func.count()).select_from(Event)).one())
    finally:
        engine.dispose()


def burst(
    broker: MosquittoBroker,
    per_machine: int,
    *,
    first_seq: int = 1,
    during: Callable[[int], None] | None = None,
) -> int:
    """Each machine publishes sessions (start + end) as its own agent account, QoS 1."""

    def publish(machine: str) -> None:
        user, password = broker.agent_credentials(machine)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"burst-{machine}"
        )
        client.username_pw_set(user, password)
        client.connect(broker.host, broker.port)
        client.loop_start()
        wait_until(client.is_connected, timeout=10, what=f"publisher {machine} connected")
        infos = []
        for i in range(per_machine):
            seq = first_seq + i
            sid = f"{machine}-{(seq + 1) // 2}"  # seq 1 starts session 1, seq 2 ends it
            if seq % 2:
                env = new_envelope(
                    machine=machine,
                    type=EventType.SESSION_STARTED,
                    seq=seq,
                    data={"session_id": sid, "member": "m-1", "badge": "04A1B2C3"},
                )
            else:
                env = new_envelope(
                    machine=machine,
                    type=EventType.SESSION_ENDED,
                    seq=seq,
                    data={
                        "session_id": sid,
                        "member": "m-1",
                        "reason": "badge-out",
                        "duration_s": 60,
                    },
                )
            infos.append(
                client.publish(f"atelier/v1/lab/{machine}/event", encode_envelope(env), qos=1)
            )
            if during is not None and machine == MACHINES[0]:
                during(i)
        for info in infos:
            info.wait_for_publish(timeout=60)
        client.loop_stop()
        client.disconnect()

    for machine in MACHINES:
        broker.agent_credentials(machine)
    threads = [threading.Thread(target=publish, args=(m,)) for m in MACHINES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return per_machine * len(MACHINES)


def test_a_worker_killed_mid_burst_loses_nothing(
    mosquitto: MosquittoBroker, database_url: str, tmp_path: Path
) -> None:
    migrate(database_url)
    env = worker_env(mosquitto, database_url, tmp_path)
    worker = Proc(["hub", "ingest", "--worker", "1"], log=tmp_path / "w1.log", env=env)
    try:
        _kill_mid_burst(worker, mosquitto, database_url, tmp_path, env)
    finally:
        if worker.alive():
            worker.stop()


def _kill_mid_burst(
    worker: Proc, mosquitto: MosquittoBroker, database_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    # Once subscribed, the worker's persistent session exists at the broker.
    wait_until(
        lambda: "ingest subscribed" in worker.output(),
        timeout=30,
        what="the worker to subscribe",
        proc=worker,
    )
    burst(mosquitto, 1, first_seq=100_000)
    wait_until(
        lambda: stored(database_url) == 3, timeout=30, what="the worker subscribed", proc=worker
    )
    killed = threading.Event()

    def kill_midway(i: int) -> None:
        if i == 600 and not killed.is_set():
            worker.kill()
            killed.set()

    total = burst(mosquitto, 1500, during=kill_midway) + 3
    assert killed.is_set()
    assert stored(database_url) < total  # the kill really happened mid-burst
    restarted = Proc(["hub", "ingest", "--worker", "1"], log=tmp_path / "w1b.log", env=env)
    try:
        wait_until(
            lambda: stored(database_url) == total,
            timeout=120,
            what=f"all {total} events after the restart",
            proc=restarted,
        )
    finally:
        restarted.stop()
    engine = make_engine(database_url)
    with Session(engine) as session:
        sessions = session.exec(select(MachineSession)).all()
        assert len(sessions) == 3 * 750 + 3  # plus the three first deliveries
        assert all(s.ended_at is not None and s.duration_s == 60 for s in sessions)
    engine.dispose()


def test_three_workers_share_one_subscription_without_double_counting(
    mosquitto: MosquittoBroker, database_url: str, tmp_path: Path
) -> None:
    migrate(database_url)
    env = worker_env(mosquitto, database_url, tmp_path)
    workers = [
        Proc(
            ["hub", "ingest", "--shared", "atelier", "--worker", str(i)],
            log=tmp_path / f"w{i}.log",
            env=env,
        )
        for i in (1, 2, 3)
    ]
    try:
        for worker in workers:
            wait_until(
                lambda w=worker: "ingest subscribed to $share/atelier/" in w.output(),
                timeout=30,
                what="a worker to subscribe",
                proc=worker,
            )
        total = burst(mosquitto, 1000)
        wait_until(
            lambda: stored(database_url) >= total,
            timeout=120,
            what=f"{total} events stored",
            proc=workers[0],
        )
    finally:
        for worker in workers:
            worker.signal(signal.SIGTERM)
        codes = [w.stop() for w in workers]
    assert codes == [0, 0, 0]
    assert stored(database_url) == total
    counters = [json.loads(re.search(r"stopped: (\{.*\})", w.output()).group(1)) for w in workers]
    assert sum(c["stored"] for c in counters) == total
    assert sum(c["duplicates"] for c in counters) == 0
    assert all(c["stored"] > 0 for c in counters), counters  # the load was shared


def test_the_hub_joins_the_workers_group_and_drops_its_old_subscription(
    mosquitto: MosquittoBroker, database_url: str, tmp_path: Path
) -> None:
    import httpx

    from tests.support.api import admin_headers

    migrate(database_url)
    headers = admin_headers(database_url)
    settings = hub_settings(mosquitto, database_url, tmp_path)
    env = settings.env()

    def serve(name: str, extra: dict[str, str]) -> Proc:
        hub = start_hub(
            replace(settings, extra_env={**settings.extra_env, **extra}),
            log=tmp_path / f"{name}.log",
        )
        wait_until(
            lambda: "ingest subscribed" in hub.output(), timeout=60, what="the hub", proc=hub
        )
        return hub

    # First without a group: the hub's persistent session subscribes to every event.
    serve("hub-alone", {}).stop()
    hub = serve("hub-shared", {"ATELIER_INGEST_SHARED_GROUP": "atelier"})
    worker = Proc(
        ["hub", "ingest", "--shared", "atelier", "--worker", "2"],
        log=tmp_path / "w2.log",
        env=env,
    )
    try:
        wait_until(
            lambda: "ingest subscribed to $share/atelier/" in worker.output(),
            timeout=30,
            what="the worker to subscribe",
            proc=worker,
        )
        total = burst(mosquitto, 600)
        wait_until(lambda: stored(database_url) >= total, timeout=120, what="all events", proc=hub)
        hub_counts = httpx.get(
            f"{settings.url}/api/v1/ingest/stats", headers=headers, timeout=5
        ).json()
    finally:
        worker.signal(signal.SIGTERM)
        worker.stop()
        hub.stop()
    worker_counts = json.loads(re.search(r"stopped: (\{.*\})", worker.output()).group(1))
    assert stored(database_url) == total
    # Each took a share, and neither saw the other's: no event reached both.
    assert 0 < hub_counts["stored"] < total and 0 < worker_counts["stored"] < total
    assert hub_counts["stored"] + worker_counts["stored"] == total
    assert hub_counts["duplicates"] + worker_counts["duplicates"] == 0
