"""A member's data: export (right of access) and erasure that keeps the history correct."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import Badge, Event, MachineSession, Member
from protocol import EventType, encode_envelope, new_envelope

runner = CliRunner()
TOPIC = "atelier/v1/lab/laser-1/event"


@pytest.fixture
def lab(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        ref = hugo.ref
    writer = IngestWriter(engine)
    seq = 0
    for sid in ("s1", "s2"):
        seq += 1
        writer.write_batch(
            [
                Incoming(
                    TOPIC,
                    encode_envelope(
                        new_envelope(
                            machine="laser-1",
                            type=EventType.BADGE_GRANTED,
                            seq=seq,
                            data={"badge": "04C3D4E5", "member": ref, "session_id": sid},
                        )
                    ),
                )
            ]
        )
        seq += 1
        writer.write_batch(
            [
                Incoming(
                    TOPIC,
                    encode_envelope(
                        new_envelope(
                            machine="laser-1",
                            type=EventType.SESSION_STARTED,
                            seq=seq,
                            data={"session_id": sid, "member": ref, "badge": "04C3D4E5"},
                        )
                    ),
                )
            ]
        )
        seq += 1
        writer.write_batch(
            [
                Incoming(
                    TOPIC,
                    encode_envelope(
                        new_envelope(
                            machine="laser-1",
                            type=EventType.SESSION_ENDED,
                            seq=seq,
                            data={
                                "session_id": sid,
                                "member": ref,
                                "reason": "badge-out",
                                "duration_s": 600,
                            },
                        )
                    ),
                )
            ]
        )
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("ATELIER_MQTT_PORT", "1")  # no broker: publication is reported, not fatal
    return database_url


def test_export_holds_everything_about_the_member(lab: str, tmp_path: Path) -> None:
    out = tmp_path / "hugo.json"
    result = runner.invoke(app, ["hub", "member", "export", "hugo@example.org", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["member"]["name"] == "Hugo Petit"
    assert [b["uid"] for b in data["badges"]] == ["04C3D4E5"]
    assert {t["machine_type"] for t in data["trainings"]} == {"laser", "printer"}
    assert len(data["sessions"]) == 2 and data["sessions"][0]["duration_s"] == 600
    assert data["category_changes"] == []
    missing = runner.invoke(app, ["hub", "member", "export", "nobody@example.org"])
    assert missing.exit_code == 2


def test_erasure_removes_identity_and_keeps_the_history(lab: str) -> None:
    refused = runner.invoke(app, ["hub", "member", "erase", "hugo@example.org"])
    assert refused.exit_code == 2 and "--yes" in refused.output
    result = runner.invoke(app, ["hub", "member", "erase", "hugo@example.org", "--yes"])
    assert result.exit_code == 0, result.output
    assert "1 badge(s) revoked" in result.output and "4 event(s)" in result.output
    engine = make_engine(lab)
    with Session(engine) as session:
        member = session.exec(select(Member).where(Member.name == "(erased)")).one()
        assert member.email is None and member.status == "left"
        badge = session.exec(select(Badge).where(Badge.member_id == member.id)).one()
        assert badge.uid == "ERASED" and badge.revoked_at is not None
        sessions = session.exec(select(MachineSession)).all()
        # The history is still there, under the pseudonymous reference: totals unchanged.
        assert len(sessions) == 2 and sum(s.duration_s or 0 for s in sessions) == 1200
        assert all(s.member_ref == member.ref and s.badge == "" for s in sessions)
        dumped = json.dumps([e.data for e in session.exec(select(Event))])
        assert "04C3D4E5" not in dumped and "Hugo" not in dumped
    engine.dispose()


def test_export_holds_the_category_history(lab: str) -> None:
    from datetime import date
    from zoneinfo import ZoneInfo

    from hub.category_history import change_category
    from hub.models import MemberCategory
    from hub.services.member_data import export_member

    engine = make_engine(lab)
    try:
        with Session(engine) as session:
            hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
            before = hugo.category
            change_category(
                session,
                hugo,
                MemberCategory.STUDENT if before != MemberCategory.STUDENT else "professional",
                actor="test",
                tz=ZoneInfo("Europe/Paris"),
                effective_from=date(2026, 11, 1),
            )
            session.commit()
            data = export_member(session, hugo)
        [change] = data["category_changes"]
        assert change["from"] == before.value and change["to"] == hugo.category.value
        assert change["effective_from"] == "2026-11-01" and change["recorded_at"]
    finally:
        engine.dispose()
