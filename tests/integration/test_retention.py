"""Retention: old events, dead letters and telemetry go; sessions, the history, stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, SQLModel, select
from typer.testing import CliRunner

from atelier_cli import app as cli
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.errors import MESSAGES, InvalidValue, describe
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import DeadLetter, Event, MachineSession, Role
from hub.services import retention
from protocol import EventType, encode_envelope, new_envelope
from tests.support.api import admin_headers

TOPIC = "atelier/v1/lab/laser-1/event"


def event(seq: int, kind: EventType, at: datetime, **data: object) -> Incoming:
    env = new_envelope(machine="laser-1", type=kind, seq=seq, data=data, now=lambda: at)
    return Incoming(TOPIC, encode_envelope(env))


@pytest.fixture
def hub_db(database_url: str) -> str:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    now = datetime.now(UTC)
    old = now - timedelta(days=45)
    IngestWriter(engine).write_batch(
        [
            event(
                1, EventType.SESSION_STARTED, old, session_id="s1", member="m-1", badge="04A1B2C3"
            ),
            event(
                2,
                EventType.SESSION_ENDED,
                old + timedelta(minutes=30),
                session_id="s1",
                member="m-1",
                reason="badge-out",
                duration_s=1800,
            ),
            event(3, EventType.AGENT_STARTED, now - timedelta(days=1), version="1"),
            Incoming(TOPIC, b"not json"),
        ]
    )
    with Session(engine) as session:
        letter = session.exec(select(DeadLetter)).one()
        letter.received_at = now - timedelta(days=200)
        session.add(letter)
        session.commit()
    engine.dispose()
    return database_url


def rows(url: str, model: type) -> list:
    engine = make_engine(url)
    with Session(engine) as session:
        found = list(session.exec(select(model)).all())
    engine.dispose()
    return found


def test_an_admin_sets_retention_and_the_purge_keeps_the_history(
    hub_db: str, tmp_path: Path
) -> None:
    settings = get_settings(None, database_url=hub_db, data_dir=tmp_path)
    with TestClient(create_app(settings, start_ingest=False)) as client:
        admin = admin_headers(hub_db)
        shown = client.get("/api/v1/retention", headers=admin).json()
        assert shown == {
            "telemetry": 90,
            "events": None,
            "dead_letters": 180,
            "badge_events": 90,
            "sessions": 548,
        }
        too_short = client.patch("/api/v1/retention", json={"events": 7}, headers=admin)
        assert too_short.status_code == 422
        assert "at least 30 days" in too_short.json()["detail"][0]["msg"]
        changed = client.patch("/api/v1/retention", json={"events": 30}, headers=admin)
        assert changed.json()["events"] == 30
        manager = admin_headers(hub_db, Role.MANAGER)
        assert client.patch("/api/v1/retention", json={}, headers=manager).status_code == 403
        counts = client.post("/api/v1/retention/apply", headers=admin).json()
    assert counts["events"] == 2 and counts["dead_letters"] == 1
    assert [e.seq for e in rows(hub_db, Event)] == [3]
    assert rows(hub_db, DeadLetter) == []
    (kept,) = rows(hub_db, MachineSession)
    assert kept.id == "s1" and kept.duration_s == 1800


def test_the_cli_sets_and_applies_with_clear_mistakes(
    hub_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATELIER_DATABASE_URL", hub_db)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    for args, message in [
        (["set", "badges", "30"], "use telemetry, events, dead_letters, badge_events, sessions"),
        (["set", "sessions", "7"], "at least 30 days"),
        (["set", "events", "ten"], "give a number of days"),
        (["set", "events", "5"], "at least 30 days"),
        (["set", "telemetry", "forever"], "cannot be kept for good"),
    ]:
        result = runner.invoke(cli, ["hub", "retention", *args])
        assert result.exit_code == 2 and message in result.output, result.output
    assert runner.invoke(cli, ["hub", "retention", "set", "dead_letters", "forever"]).exit_code == 0
    applied = runner.invoke(cli, ["hub", "retention", "apply"])
    assert applied.exit_code == 0 and "dead letters: 0 removed" in applied.output
    assert "events\tkept for good" in runner.invoke(cli, ["hub", "retention", "show"]).output
    assert len(rows(hub_db, DeadLetter)) == 1


def test_a_century_is_the_longest_rule(hub_db: str, tmp_path: Path) -> None:
    # Found by schemathesis: a huge number of days overflowed the purge's date arithmetic.
    settings = get_settings(None, database_url=hub_db, data_dir=tmp_path)
    with TestClient(create_app(settings, start_ingest=False)) as client:
        admin = admin_headers(hub_db)
        huge = client.patch("/api/v1/retention", json={"events": 1e300}, headers=admin)
        assert huge.status_code == 422 and "at most 36500 days" in huge.json()["detail"][0]["msg"]
        assert client.post("/api/v1/retention/apply", headers=admin).status_code == 200


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(retention.KINDS) | st.text(max_size=20),
    days=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_any_rule_is_kept_or_refused_on_its_field(kind: str, days: float | None) -> None:
    """Generated kinds and days (NaN, infinities, negatives, huge, NUL in the kind): a rule
    is either kept within its bounds or refused with a code, on the kind's field, that the
    catalogue words; never another error."""
    engine = make_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        try:
            rule = retention.set_rule(session, kind, days)
        except InvalidValue as error:
            assert error.code in MESSAGES
            assert error.field == (kind if kind in retention.KINDS else "kind")
            assert describe(error) != error.code
            return
    assert kind in retention.KINDS
    assert days is None or retention.MIN_DAYS[kind] <= days <= retention.MAX_DAYS
    assert rule.days == days and not (kind == "telemetry" and days is None)
