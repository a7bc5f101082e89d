"""Busy periods, print jobs and telemetry: attributed to sessions, counted per machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import BusyPeriod, PrintJob
from protocol import EventType, encode_envelope, new_envelope
from tests.support.api import admin_headers

T0 = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


class Feed:
    def __init__(self, writer: IngestWriter, machine: str) -> None:
        self.writer, self.machine, self.seq = writer, machine, 0

    def __call__(self, kind: EventType, at: timedelta, **data: object) -> None:
        self.seq += 1
        env = new_envelope(
            machine=self.machine, type=kind, seq=self.seq, data=data, now=lambda: T0 + at
        )
        self.writer.write_batch(
            [Incoming(f"atelier/v1/lab/{self.machine}/event", encode_envelope(env))]
        )


@pytest.fixture
def url(database_url: str) -> str:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    return database_url


def test_busy_time_and_jobs_are_billed_to_the_member_who_started_them(url: str) -> None:
    engine = make_engine(url)
    writer = IngestWriter(engine)
    feed = Feed(writer, "printer-1")
    minute = timedelta(minutes=1)
    feed(EventType.SESSION_STARTED, 0 * minute, session_id="s1", member="m-lea", badge="04B2C3D4")
    feed(EventType.MACHINE_BUSY, 1 * minute, source="octoprint", session_id="s1")
    feed(EventType.JOB_STARTED, 1 * minute, job_id="42", file="bracket.gcode", session_id="s1")
    # The member leaves while the print goes on: the busy time stays theirs.
    feed(
        EventType.SESSION_ENDED,
        5 * minute,
        session_id="s1",
        member="m-lea",
        reason="badge-out",
        duration_s=300,
    )
    feed(EventType.JOB_FINISHED, 61 * minute, job_id="42", duration_s=3600, session_id="s1")
    feed(EventType.MACHINE_IDLE, 61 * minute, source="octoprint", busy_s=3600, session_id="s1")
    feed(EventType.JOB_FAILED, 70 * minute, job_id="43", duration_s=120, error="thermal runaway")
    with Session(engine) as session:
        period = session.exec(select(BusyPeriod)).one()
        jobs = {j.job_id: j for j in session.exec(select(PrintJob))}
    assert period.member_ref == "m-lea" and period.busy_s == 3600
    assert period.ended_at == T0 + 61 * minute
    assert jobs["42"].member_ref == "m-lea" and jobs["42"].state == "finished"
    assert jobs["42"].file == "bracket.gcode" and jobs["42"].duration_s == 3600
    assert jobs["43"].state == "failed" and jobs["43"].error == "thermal runaway"
    assert jobs["43"].started_at == T0 + 68 * minute  # inferred: its start never came
    engine.dispose()


def test_counters_and_live_state_through_the_api(url: str, tmp_path) -> None:
    engine = make_engine(url)
    writer = IngestWriter(engine)
    feed = Feed(writer, "printer-1")
    feed(EventType.SESSION_STARTED, timedelta(0), session_id="s1", member="m-1", badge="04B2C3D4")
    feed(EventType.MACHINE_BUSY, timedelta(minutes=1), source="octoprint", session_id="s1")
    feed(EventType.JOB_STARTED, timedelta(minutes=1), job_id="7", session_id="s1")
    status = {
        "v": 1,
        "machine": "printer-1",
        "state": "online",
        "busy": True,
        "session": {"session_id": "s1", "member": "m-1", "badge": "04B2C3D4"},
    }
    telemetry = {
        "v": 1,
        "machine": "printer-1",
        "ts": "2026-11-22T14:02:00Z",
        "values": {"progress": 42.5, "tool0_actual": 209.8, "bed_actual": 60.1},
    }
    writer.write_batch(
        [
            Incoming("atelier/v1/lab/printer-1/status", json.dumps(status).encode()),
            Incoming("atelier/v1/lab/printer-1/telemetry", json.dumps(telemetry).encode()),
            Incoming("atelier/v1/lab/printer-1/telemetry", b"not telemetry"),
        ]
    )
    feed(EventType.MACHINE_IDLE, timedelta(minutes=31), source="octoprint", busy_s=1800)
    feed(EventType.JOB_FINISHED, timedelta(minutes=31), job_id="7", duration_s=1800)
    feed(
        EventType.SESSION_ENDED,
        timedelta(minutes=40),
        session_id="s1",
        member="m-1",
        reason="badge-out",
        duration_s=2400,
    )
    engine.dispose()
    app = create_app(get_settings(None, database_url=url, data_dir=tmp_path), start_ingest=False)
    with TestClient(app, headers=admin_headers(url)) as client:
        printer = next(m for m in client.get("/api/v1/machines").json() if m["code"] == "printer-1")
        assert printer["state"] == "printing" and printer["progress"] == 42.5
        assert printer["telemetry"]["tool0_actual"] == 209.8
        assert "Printing 42 %" in client.get("/").text
        counters = client.get("/api/v1/machines/printer-1/counters").json()
        assert counters == {
            "machine": "printer-1",
            "sessions": 1,
            "session_hours": 0.6667,
            "busy_hours": 0.5,
            "jobs": 1,
            "jobs_failed": 0,
        }
        assert client.get("/api/v1/machines/nope/counters").status_code == 404
        stats = client.get("/api/v1/ingest/stats").json()
        assert stats == {}  # no consumer in this app: the writer's counters are elsewhere
        metrics = client.get("/metrics").text
        assert 'atelier_machine_state{machine="printer-1",state="printing"} 1.0' in metrics
        assert 'atelier_machine_state{machine="laser-1",state="offline"} 1.0' in metrics
        assert "atelier_broker_connected 0.0" in metrics
