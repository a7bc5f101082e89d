"""Telemetry history: stored as received, downsampled after a day, aged out after retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import TelemetrySample
from hub.telemetry import compact
from tests.support.api import admin_headers

NOW = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


@pytest.fixture
def url(database_url: str) -> str:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    return database_url


def sample(machine: str, at: datetime, **values: object) -> Incoming:
    body = {
        "v": 1,
        "machine": machine,
        "ts": at.isoformat().replace("+00:00", "Z"),
        "values": values,
    }
    return Incoming(f"atelier/v1/lab/{machine}/telemetry", json.dumps(body).encode())


def rows(url: str) -> list[TelemetrySample]:
    engine = make_engine(url)
    with Session(engine) as session:
        found = list(session.exec(select(TelemetrySample).order_by(TelemetrySample.ts)))
    engine.dispose()
    return found


def test_samples_are_kept_then_downsampled_then_aged_out(url: str) -> None:
    engine = make_engine(url)
    writer = IngestWriter(engine)
    old = NOW - timedelta(days=2)
    writer.write_batch(
        [
            sample("printer-1", old, bed=60, state="Printing"),
            sample("printer-1", old + timedelta(seconds=30), bed=62, state="Paused"),
            sample("printer-1", old + timedelta(seconds=70), bed=70),
            sample("printer-1", NOW - timedelta(days=200), bed=20),  # past retention
            sample("printer-1", NOW - timedelta(hours=1), bed=58),  # recent: stays raw
        ]
    )
    assert len(rows(url)) == 5
    counts = compact(engine, now=NOW, raw_hours=24, bucket_s=60, keep_days=90)
    engine.dispose()
    assert counts == {"downsampled": 3, "buckets": 2, "aged_out": 1}
    kept = rows(url)
    assert [(r.resolution_s, r.values) for r in kept] == [
        (60, {"bed": 61.0, "state": "Paused"}),  # numbers averaged, the rest: last value
        (60, {"bed": 70.0}),
        (0, {"bed": 58}),
    ]
    assert kept[0].ts == old.replace(second=0)


def test_the_api_serves_a_machines_history(url: str, tmp_path) -> None:
    engine = make_engine(url)
    IngestWriter(engine).write_batch(
        [sample("laser-1", NOW - timedelta(minutes=m), watts=m) for m in (3, 2, 1)]
    )
    engine.dispose()
    with TestClient(
        create_app(get_settings(None, database_url=url, data_dir=tmp_path), start_ingest=False),
        headers=admin_headers(url),
    ) as client:
        points = client.get("/api/v1/machines/laser-1/telemetry").json()
        assert [p["values"]["watts"] for p in points] == [3, 2, 1]
        since = (NOW - timedelta(minutes=2, seconds=30)).isoformat()
        assert (
            len(client.get("/api/v1/machines/laser-1/telemetry", params={"from": since}).json())
            == 2
        )
        assert client.get("/api/v1/machines/nope/telemetry").status_code == 404


def test_cli_compacts(url: str, monkeypatch) -> None:
    monkeypatch.setenv("ATELIER_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["hub", "telemetry", "compact"])
    assert result.exit_code == 0 and "bucket(s)" in result.output
