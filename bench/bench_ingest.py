"""Ingest throughput: a burst of envelopes from many publishers through a real Mosquitto.

Each consumer first creates its persistent session, then goes away while the publishers
send the burst (the broker queues it), then comes back and drains the queue: the rate is
messages stored (or counted) per second of draining. In the same run:
- a bare paho subscriber that only counts (the ceiling of one process),
- Atelier's ingest, one consumer (validate, batch, dedupe, commit, then acknowledge),
- Atelier's ingest as the hub plus one worker on an MQTT 5 shared subscription: the hub's
  consumer (`ingest_shared_group`) and `atelier hub ingest --shared ... --worker 2` run as a
  process, the way a lab spreads the ingest over a second core,
- a naive consumer that validates and commits one row per message,
on SQLite and, when ATELIER_TEST_DATABASE_URL is set, PostgreSQL.

Run: ATELIER_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
     .venv/bin/python -m bench.bench_ingest [--count 100000] [--naive-count 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.ingest.consumer import IngestConsumer
from hub.models import Event
from protocol import EventType, decode_envelope, encode_envelope, new_envelope
from tests.support.databases import throwaway_postgres_database
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import atelier_command

PUBLISHERS = 50


def v5_client(broker: MosquittoBroker, client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(broker.hub_user, broker.hub_password)
    return client


def session_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    return props


def create_session(broker: MosquittoBroker, client_id: str, group: str | None = None) -> None:
    """Subscribe once with a persistent session, then leave: the broker queues for us."""
    client = v5_client(broker, client_id)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.connect(broker.host, broker.port, clean_start=False, properties=session_props())
    topic = "atelier/v1/+/+/event"
    client.subscribe(f"$share/{group}/{topic}" if group else topic, qos=1)
    client.loop_start()
    if not done.wait(10):
        raise RuntimeError("subscription not acknowledged")
    client.disconnect()
    client.loop_stop()


def drop_session(broker: MosquittoBroker, client_id: str) -> None:
    """End a persistent session, so that it queues nothing of the next steps' bursts (an
    offline member of a shared group would even take its share of them)."""
    client = v5_client(broker, client_id)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(broker.host, broker.port, clean_start=True, properties=props)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def publish_burst(broker: MosquittoBroker, count: int) -> None:
    per = count // PUBLISHERS

    def one(index: int) -> None:
        machine = f"machine-{index:02d}"
        client = v5_client(broker, f"bench-pub-{index}")
        client.max_inflight_messages_set(200)
        client.connect(broker.host, broker.port)
        client.loop_start()
        deadline = time.monotonic() + 10
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        infos = []
        for seq in range(1, per + 1):
            env = new_envelope(
                machine=machine,
                # A refusal: the commonest event with no side effect, so the figure is the
                # ingest's own (sessions and incidents add their bookkeeping on top).
                type=EventType.BADGE_DENIED,
                seq=seq,
                data={"badge": f"{seq:08X}", "reason": "not_trained", "member": f"m-{index}"},
            )
            infos.append(
                client.publish(f"atelier/v1/lab/{machine}/event", encode_envelope(env), qos=1)
            )
        for info in infos:
            info.wait_for_publish(timeout=120)
        client.disconnect()
        client.loop_stop()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(PUBLISHERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def drain_bare(broker: MosquittoBroker, client_id: str, expected: int) -> float:
    received = [0]
    done = threading.Event()
    started = [0.0]

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if received[0] == 0:
            started[0] = time.perf_counter()
        received[0] += 1
        if received[0] >= expected:
            done.set()

    client = v5_client(broker, client_id)
    client.on_message = on_message
    begun = time.perf_counter()
    client.connect(broker.host, broker.port, clean_start=False, properties=session_props())
    client.loop_start()
    if not done.wait(600):
        raise RuntimeError(f"bare subscriber got {received[0]} of {expected}")
    elapsed = time.perf_counter() - begun
    client.disconnect()
    client.loop_stop()
    return expected / elapsed


def count_rows(url: str) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return int(session.exec(select(func.count()).select_from(Event)).one())
    finally:
        engine.dispose()


def ingest_settings(broker: MosquittoBroker, url: str) -> Any:
    return get_settings(
        None,
        database_url=url,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_username=broker.hub_user,
        mqtt_password=broker.hub_password,
    )


def drain_atelier(
    broker: MosquittoBroker,
    client_id: str,
    url: str,
    expected: int,
    group: str | None = None,
    *,
    shared: bool = False,
) -> float:
    """Drain with the hub's consumer; `shared`: a worker process is draining the same shared
    subscription, and the rows are counted in the database (their common count)."""
    settings = ingest_settings(broker, url)
    engine = make_engine(url)
    consumer = IngestConsumer(settings, engine, client_id=client_id, shared_group=group)
    begun = time.perf_counter()
    consumer.start()
    try:
        if not shared:
            while consumer.stats.stored < expected:
                if time.perf_counter() - begun > 900:
                    raise RuntimeError(f"ingest stored {consumer.stats.stored} of {expected}")
                time.sleep(0.01)
        else:  # the rows are the workers' common count
            while count_rows(url) < expected:
                if time.perf_counter() - begun > 900:
                    raise RuntimeError(f"ingest stored {count_rows(url)} of {expected}")
                time.sleep(0.02)
        elapsed = time.perf_counter() - begun
    finally:
        consumer.stop()
        engine.dispose()
    stored = count_rows(url)
    if stored != expected or consumer.stats.duplicates:
        raise RuntimeError(
            f"stored {stored}, expected {expected}, duplicates {consumer.stats.duplicates}"
        )
    return expected / elapsed


def worker_config(broker: MosquittoBroker, url: str, group: str, workdir: Path) -> Path:
    """The hub.toml a worker reads (`atelier hub ingest --config`), as a lab writes it."""
    path = workdir / f"{group}.toml"
    path.write_text(
        "\n".join(
            [
                f'data_dir = "{workdir / (group + "-data")}"',
                f'database_url = "{url}"',
                f'mqtt_host = "{broker.host}"',
                f"mqtt_port = {broker.port}",
                f'mqtt_username = "{broker.hub_user}"',
                f'mqtt_password = "{broker.hub_password}"',
                f'mqtt_client_id = "{group}"',
                f'ingest_shared_group = "{group}"',
                "",
            ]
        )
    )
    return path


def drain_shared(
    broker: MosquittoBroker, hub_id: str, group: str, url: str, expected: int, workdir: Path
) -> float:
    """The hub's consumer plus `atelier hub ingest --shared GROUP --worker 2`, the command a
    lab runs (atelier-ingest@2.service), as a process. The clock starts when the worker has
    connected (its start-up, imports and migration check, is not counted, as the hub's is
    not), with the hub's consumer started at that moment."""
    config = worker_config(broker, url, group, workdir)
    log_path = workdir / f"{group}-worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [
                *atelier_command(),
                "hub",
                "ingest",
                "--config",
                str(config),
                "--shared",
                group,
                "--worker",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while "ingest connected to" not in log_path.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start: {log_path.read_text()}")
                time.sleep(0.002)
            rate = drain_atelier(broker, hub_id, url, expected, group, shared=True)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    stopped = re.search(r"ingest worker 2 stopped: (\{.*\})", log_path.read_text())
    if stopped is None:
        raise RuntimeError(f"the worker did not report its counts: {log_path.read_text()}")
    counts = json.loads(stopped.group(1))
    if counts["duplicates"]:
        raise RuntimeError(f"the worker saw {counts['duplicates']} duplicates")
    print(
        f"    (the worker stored {counts['stored']}, the hub {expected - counts['stored']})",
        flush=True,
    )
    return rate


def drain_naive(broker: MosquittoBroker, client_id: str, url: str, expected: int) -> float:
    """Validate and insert each message in its own transaction, in the callback."""
    engine = make_engine(url)
    stored = [0]
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        env = decode_envelope(message.payload)
        with Session(engine) as session:
            session.add(
                Event(
                    id=env.id,
                    site="lab",
                    machine=env.machine,
                    seq=env.seq,
                    ts=env.ts,
                    type=env.type.value,
                    data=env.data,
                )
            )
            session.commit()
        stored[0] += 1
        if stored[0] >= expected:
            done.set()

    client = v5_client(broker, client_id)
    client.on_message = on_message
    begun = time.perf_counter()
    client.connect(broker.host, broker.port, clean_start=False, properties=session_props())
    client.loop_start()
    if not done.wait(1800):
        raise RuntimeError(f"naive consumer stored {stored[0]} of {expected}")
    elapsed = time.perf_counter() - begun
    client.disconnect()
    client.loop_stop()
    engine.dispose()
    return expected / elapsed


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        path = workdir / f"bench-{time.monotonic_ns()}.db"
        yield f"sqlite:///{path}"
        return
    with throwaway_postgres_database() as url:
        yield url


def run(
    kind: str,
    broker: MosquittoBroker,
    workdir: Path,
    count: int,
    naive_count: int,
    only: list[str] | None = None,
) -> dict[str, float]:
    rates: dict[str, float] = {}
    steps: list[tuple[str, int, Callable[[str, str, int], float] | None]] = [
        ("bare", count, None),
        ("atelier", count, None),
        ("atelier+1", count, None),
        ("naive", naive_count, None),
    ]
    for name, n, _ in steps:
        if only is not None and name not in only:
            continue
        with database(kind, workdir) as url:
            migrate(url)
            client_id = f"bench-{kind}-{name}"
            client_ids = [client_id]
            group = f"bench-{kind}-shared"  # a group name cannot hold "+"
            if name == "atelier+1":  # the hub, and the worker as the CLI names it
                client_ids = [f"{group}-hub", f"{group}-ingest-2"]
                for one in client_ids:
                    create_session(broker, one, group=group)
            else:
                create_session(broker, client_id)
            publish_burst(broker, n)
            if name == "bare":
                rates[name] = drain_bare(broker, client_id, n)
            elif name == "atelier":
                rates[name] = drain_atelier(broker, client_id, url, n)
            elif name == "atelier+1":
                rates[name] = drain_shared(broker, client_ids[0], group, url, n, workdir)
            else:
                rates[name] = drain_naive(broker, client_id, url, n)
            for one in client_ids:
                drop_session(broker, one)
        print(f"  {kind:<10} {name:<8} {n:>7} messages  {rates[name]:>9.0f} msg/s", flush=True)
    return rates


# What one consumer reached against the bare subscriber before issue 23 (2026-12-06 and
# 2026-12-07, docs/performance.md), to print the change against.
PREVIOUS_ONE_CONSUMER = {"sqlite": "48-73%", "postgres": "51-86%"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--naive-count", type=int, default=10_000)
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat the bare subscriber and the one consumer, side by side, and print the "
        "spread of their ratio (the hub + worker and naive steps run in the first run only)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="atelier-ingest-"))
    broker = MosquittoBroker(workdir / "broker")
    broker.start()
    kinds = ["sqlite"] + (["postgres"] if os.environ.get("ATELIER_TEST_DATABASE_URL") else [])
    print(
        f"ingest: {args.count} envelopes from {PUBLISHERS} publishers through Mosquitto, "
        f"drained from a full queue (naive consumer on {args.naive_count})"
    )
    repeats: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        results = {kind: run(kind, broker, workdir, args.count, args.naive_count) for kind in kinds}
        for kind in kinds:
            repeats[kind].append(results[kind]["atelier"] / results[kind]["bare"])
        for _ in range(args.runs - 1):
            for kind in kinds:
                again = run(kind, broker, workdir, args.count, 0, only=["bare", "atelier"])
                repeats[kind].append(again["atelier"] / again["bare"])
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for kind, rates in results.items():
        for name, label in (("atelier", "one consumer"), ("atelier+1", "hub + 1 worker")):
            print(
                f"{kind}: atelier, {label}: {rates[name]:.0f} msg/s = "
                f"{100 * rates[name] / rates['bare']:.0f}% of the bare subscriber "
                f"({rates['bare']:.0f} msg/s), {rates[name] / rates['naive']:.1f}x the naive "
                f"consumer ({rates['naive']:.0f} msg/s); 0 lost, 0 duplicated "
                f"(goal: >= 60% and >= 10x)"
            )
    for kind, ratios in repeats.items():
        if len(ratios) > 1:
            ordered = sorted(ratios)
            print(
                f"{kind}: one consumer over {len(ratios)} runs, each against the bare subscriber "
                f"measured just before it: {', '.join(f'{100 * r:.0f}%' for r in ratios)}; "
                f"median {100 * ordered[len(ordered) // 2]:.0f}%, spread "
                f"{100 * ordered[0]:.0f}-{100 * ordered[-1]:.0f}%; previous figure "
                f"{PREVIOUS_ONE_CONSUMER[kind]} (goal: >= 80%)"
            )


if __name__ == "__main__":
    main()
