"""/health and /metrics tell the truth about the ingest: a stopped or stalled writer is a 503.

A real hub (create_app with its ingest) on a real Mosquitto and database; the writer is
stalled the way production stalls it, by a lock another connection holds on the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import text

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from protocol import EventType, encode_envelope, new_envelope
from tests.support.api import admin_headers
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import wait_until

pytestmark = pytest.mark.timeout(120)

MAX_LAG_S = 1.0
TOPIC = "atelier/v1/lab/laser-1/event"


@pytest.fixture
def hub(
    database_url: str, mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[tuple[TestClient, str]]:
    migrate(database_url)
    settings = get_settings(
        None,
        database_url=database_url,
        data_dir=tmp_path,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_username=mosquitto.hub_user,
        mqtt_password=mosquitto.hub_password,
        mqtt_client_id="health-test-hub",
        ingest_max_lag_s=MAX_LAG_S,
    )
    with TestClient(create_app(settings), headers=admin_headers(database_url)) as client:
        consumer = client.app.state.consumer  # type: ignore[attr-defined]
        wait_until(consumer.subscribed.is_set, timeout=15, what="the ingest subscribed")
        yield client, database_url


def publisher(broker: MosquittoBroker) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="health-test-agent",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(broker.hub_user, broker.hub_password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    wait_until(client.is_connected, timeout=10, what="the publisher connected")
    return client


def event(seq: int) -> bytes:
    return encode_envelope(
        new_envelope(
            machine="laser-1", type=EventType.INCIDENT_REPORTED, seq=seq, data={"source": "t"}
        )
    )


def test_a_stalled_writer_is_a_503_until_it_stores_again(
    hub: tuple[TestClient, str], mosquitto: MosquittoBroker
) -> None:
    client, url = hub
    assert client.get("/health").status_code == 200
    # Signed in now: the token's last use is written once a minute, not under the lock below.
    assert client.get("/metrics").status_code == 200
    consumer = client.app.state.consumer  # type: ignore[attr-defined]
    agent = publisher(mosquitto)
    locker = make_engine(url)
    release = threading.Event()
    locked = threading.Event()

    def hold_the_lock() -> None:
        with locker.connect() as conn:
            if locker.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN EXCLUSIVE")
            else:
                conn.execute(text("LOCK TABLE event IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(60)
            conn.rollback()

    holder = threading.Thread(target=hold_the_lock, daemon=True)
    holder.start()
    try:
        assert locked.wait(10)
        agent.publish(TOPIC, event(1), qos=1).wait_for_publish(5)
        wait_until(
            lambda: client.get("/health").status_code == 503,
            timeout=20,
            what="/health to report the stalled writer",
        )
        answer = client.get("/health").json()
        assert answer["ingest"].startswith("stalled") and answer["ingest_waiting"] >= 1
        assert answer["ingest_lag_s"] > MAX_LAG_S
        metrics = client.get("/metrics").text
        assert "atelier_ingest_writer_running 1.0" in metrics
        lag = next(
            line for line in metrics.splitlines() if line.startswith("atelier_ingest_lag_seconds ")
        )
        assert float(lag.split()[1]) > MAX_LAG_S
    finally:
        release.set()
        holder.join(10)
        locker.dispose()
    wait_until(
        lambda: client.get("/health").status_code == 200,
        timeout=40,
        what="/health to recover once the database is free",
    )
    assert consumer.stats.stored == 1 and consumer.waiting() == 0
    agent.loop_stop()
    agent.disconnect()


def test_a_stopped_writer_is_a_503_and_dead_letters_are_counted_by_reason(
    hub: tuple[TestClient, str], mosquitto: MosquittoBroker
) -> None:
    client, _ = hub
    consumer = client.app.state.consumer  # type: ignore[attr-defined]
    agent = publisher(mosquitto)
    agent.publish(TOPIC, b"not json", qos=1).wait_for_publish(5)
    agent.publish(TOPIC, event(1).replace(b'"seq":1', b'"seq":-1'), qos=1).wait_for_publish(5)
    wait_until(lambda: consumer.stats.dead_letters == 2, timeout=20, what="two dead letters")
    metrics = client.get("/metrics").text
    assert 'atelier_ingest_dead_letters_by_reason_total{reason="not_json"} 1.0' in metrics
    assert 'atelier_ingest_dead_letters_by_reason_total{reason="invalid_field"} 1.0' in metrics
    # The writer thread ends (as it would if it died): the hub says so.
    consumer._stop.set()
    consumer._thread.join(10)
    answer = client.get("/health")
    assert answer.status_code == 503 and answer.json()["ingest"] == "writer stopped"
    assert "atelier_ingest_writer_running 0.0" in client.get("/metrics").text
    agent.loop_stop()
    agent.disconnect()
