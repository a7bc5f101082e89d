"""The RGPD kit on SQLite and PostgreSQL: raw badge reads and refusals purged after three
months, billed sessions pseudonymised after the accounting period (both with an injected
clock), and the notice, information text and register entry written from the lab's settings
as Markdown and PDF."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.models import BillingMonth, BusyPeriod, Event, MachineSession, Member
from hub.reports.rgpd import TO_FILL_IN, kit_markdown, markdown_pdf
from hub.services import retention
from hub.services.lab import rgpd_kit_inputs, set_identity

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def event(kind: str, at: datetime, seq: int) -> Event:
    return Event(id=uuid.uuid4(), site="lab", machine="laser-1", seq=seq, ts=at, type=kind, data={})


def session_row(
    sid: str, ref: str, start: datetime, supervisor: str | None = None
) -> MachineSession:
    return MachineSession(
        id=sid,
        site="lab",
        machine="laser-1",
        member_ref=ref,
        badge="04A1B2C3",
        supervisor_ref=supervisor,
        started_at=start,
        ended_at=start + timedelta(hours=1),
        duration_s=3600,
    )


def test_badge_reads_go_after_three_months_and_billed_sessions_lose_their_member(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with Session(engine) as session:
        for seq, (kind, days_ago) in enumerate(
            [
                ("badge.granted", 100),
                ("badge.denied", 91),
                ("badge.denied", 89),  # inside three months: kept
                ("badge.granted", 1),
                ("session.started", 400),  # other events follow `events` (kept for good)
            ],
            start=1,
        ):
            session.add(event(kind, NOW - timedelta(days=days_ago), seq))
        session.add(Member(name="Alice", ref="alice", email="alice@example.org"))
        for month in ("2024-10", "2026-04"):
            session.add(BillingMonth(month=month, timezone="Europe/Paris"))
        old = datetime(2024, 10, 5, 14, tzinfo=UTC)
        session.add(session_row("OLD1", "alice", old, supervisor="bruno"))
        session.add(session_row("OLD2", "alice", old + timedelta(days=3)))
        session.add(session_row("UNBILLED", "alice", datetime(2024, 11, 2, 9, tzinfo=UTC)))
        session.add(session_row("RECENT", "alice", datetime(2026, 4, 2, 9, tzinfo=UTC)))
        session.add(
            BusyPeriod(
                site="lab",
                machine="laser-1",
                source="laser",
                session_id="OLD1",
                member_ref="alice",
                started_at=old,
                ended_at=old + timedelta(minutes=20),
                busy_s=1200,
            )
        )
        session.commit()

    counts = retention.purge(engine, settings, now=NOW)
    assert counts["badge_events"] == 2 and counts["sessions"] == 2 and counts["events"] == 0
    with Session(engine) as session:
        kept = sorted((e.type, round((NOW - e.ts).days)) for e in session.exec(select(Event)))
        assert kept == [("badge.denied", 89), ("badge.granted", 1), ("session.started", 400)]
        rows = {s.id: s for s in session.exec(select(MachineSession))}
        one, two = rows["OLD1"], rows["OLD2"]
        assert one.member_ref.startswith("p-") and one.member_ref == two.member_ref  # stable
        assert len(one.member_ref) <= 20 and one.badge == "" and two.badge == ""
        assert one.supervisor_ref and one.supervisor_ref.startswith("p-")
        assert one.supervisor_ref != one.member_ref
        assert one.duration_s == 3600  # the figures stay
        # A month not closed is still to be billed; a recent one is within the period.
        assert rows["UNBILLED"].member_ref == "alice" and rows["RECENT"].member_ref == "alice"
        busy = session.exec(select(BusyPeriod)).one()
        assert busy.member_ref == one.member_ref
    # Again: nothing left to do.
    assert retention.purge(engine, settings, now=NOW)["sessions"] == 0
    # The clock moves on: the November session's month closes and its time comes.
    with Session(engine) as session:
        session.add(BillingMonth(month="2024-11", timezone="Europe/Paris"))
        session.commit()
    later = retention.purge(engine, settings, now=NOW + timedelta(days=30))
    assert later["sessions"] == 1 and later["badge_events"] == 1


def test_a_lab_that_keeps_badge_reads_longer_says_so(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with Session(engine) as session:
        session.add(event("badge.denied", NOW - timedelta(days=200), 1))
        retention.set_rule(session, "badge_events", 365)
        retention.set_rule(session, "sessions", None)
        session.commit()
        assert retention.policy(session, settings)["badge_events"] == 365
    counts = retention.purge(engine, settings, now=NOW)
    assert counts["badge_events"] == 0 and counts["sessions"] == 0
    with Session(engine) as session, pytest.raises(Exception, match="at least 30"):
        retention.set_rule(session, "sessions", 7)


def test_the_kit_is_written_from_the_lab_s_settings(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with Session(engine) as session:
        bare = kit_markdown(rgpd_kit_inputs(session, settings))
        assert TO_FILL_IN in bare["affiche"]  # no contact yet: it says so, visibly
        set_identity(
            session,
            {
                "name": "Fablab des Trois Rivières",
                "address": "12 rue de l'Usine\n69001 Lyon",
                "rna": "W691234567",
                "privacy_contact": "RGPD@Fablab.example.org",
            },
            actor="t",
        )
        retention.set_rule(session, "badge_events", 60)
        session.commit()
        docs = kit_markdown(rgpd_kit_inputs(session, settings))
    notice = docs["affiche"]
    assert "**Fablab des Trois Rivières**" in notice
    assert "2 mois (60 jours)" in notice and "548 jours" in notice
    assert "rgpd@fablab.example.org" in notice and TO_FILL_IN not in notice
    info = docs["information-membres"]
    assert "art. 6.1.b" in info and "CNIL" in info and "12 rue de l'Usine, 69001 Lyon" in info
    register = docs["registre"]
    assert "| Responsable du traitement | Fablab des Trois Rivières, 12 rue de l'Usine" in register
    assert "RNA W691234567" in register and "Transferts hors UE | aucun" in register
    pdf = tmp_path / "registre.pdf"
    markdown_pdf(register, pdf)
    text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Registre des traitements" in text and "Fablab des Trois Rivières" in text


def test_the_cli_writes_the_kit(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["hub", "rgpd", "kit", "--out", str(tmp_path / "kit")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "kit").iterdir())
    assert written == [
        "affiche.md",
        "affiche.pdf",
        "information-membres.md",
        "information-membres.pdf",
        "registre.md",
        "registre.pdf",
    ]
    assert "privacy contact is not set" in result.output
    assert (
        PdfReader(tmp_path / "kit" / "affiche.pdf")
        .pages[0]
        .extract_text()
        .startswith("Accès aux machines par badge")
    )
