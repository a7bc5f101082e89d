"""hub/runtime.py on a real Mosquitto: the hub's workers and an ingest worker's, started and
stopped one way, the publisher last."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from hub.core.db import make_engine, migrate
from hub.core.settings import Settings, get_settings
from hub.runtime import HubRuntime
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import wait_until


@pytest.fixture
def lab(tmp_path: Path, mosquitto: MosquittoBroker) -> tuple[Settings, Engine]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    settings = get_settings(
        None,
        data_dir=tmp_path / "hub",
        database_url=url,
        site="lab",
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_username=mosquitto.hub_user,
        mqtt_password=mosquitto.hub_password,
        mqtt_protocol="5",
    )
    return settings, make_engine(url)


def test_the_hub_runs_every_worker_and_stops_them_publisher_last(
    lab: tuple[Settings, Engine],
) -> None:
    settings, engine = lab
    runtime = HubRuntime(settings, engine)
    runtime.start()
    try:
        assert runtime.consumer is not None and runtime.publisher is not None
        wait_until(lambda: runtime.consumer.connected, timeout=10, what="the ingest")
        wait_until(lambda: runtime.publisher.connected, timeout=10, what="the publisher")
        for worker in (
            "compactor",
            "gap_repairer",
            "maintenance_watch",
            "booking_watch",
            "allowlist_watch",
            "prepaid",
        ):
            assert getattr(runtime, worker) is not None, worker
        order = [type(w).__name__ for w in runtime._started]
        assert order == [
            "AllowListPublisher",
            "IngestConsumer",
            "TelemetryCompactor",
            "GapRepairer",
            "MaintenanceWatch",
            "BookingWatch",
            "AllowListWatch",
            "OutboxWorker",
            "NotificationWatch",
        ]
    finally:
        runtime.stop()
    assert not runtime.consumer.connected
    wait_until(lambda: not runtime.publisher.connected, timeout=5, what="the publisher gone")
    runtime.stop()  # twice is harmless
    engine.dispose()


def test_an_ingest_worker_runs_the_consumer_and_a_publisher_of_its_own(
    lab: tuple[Settings, Engine],
) -> None:
    settings, engine = lab
    runtime = HubRuntime(settings, engine, worker="2", shared_group="atelier-ingest")
    runtime.start()
    try:
        assert runtime.consumer is not None and runtime.publisher is not None
        wait_until(lambda: runtime.consumer.connected, timeout=10, what="the ingest")
        assert runtime.consumer.event_subscription().startswith("$share/atelier-ingest/")
        assert runtime.publisher.schedule is False  # the hub keeps the lists fresh
        assert runtime.publisher.settings.mqtt_client_id.endswith("-2")
        assert (
            runtime.compactor,
            runtime.gap_repairer,
            runtime.maintenance_watch,
            runtime.booking_watch,
        ) == (None, None, None, None)
    finally:
        runtime.stop()
    engine.dispose()


class _Stubborn:
    """A worker whose stop fails: the others must stop all the same."""

    def __init__(self) -> None:
        self.stopped = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True
        raise RuntimeError("stuck")


def test_one_worker_failing_to_stop_does_not_keep_the_others_running(
    lab: tuple[Settings, Engine],
) -> None:
    settings, engine = lab
    runtime = HubRuntime(settings, engine, worker="3")
    runtime.start()
    stubborn = _Stubborn()
    runtime._started.append(stubborn)
    assert runtime.consumer is not None
    wait_until(lambda: runtime.consumer.connected, timeout=10, what="the ingest")
    runtime.stop()
    assert stubborn.stopped and not runtime.consumer.connected
    engine.dispose()
