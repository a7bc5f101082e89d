"""Statements as valid documents: one gap-free series per year across closes, credit notes
and a close that dies half-way; the lab's legal identity on every page; a Unicode font
embedded so every name prints as written; each statement in its payer's language."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from sqlmodel import Session, select

from hub.app import create_app
from hub.core.errors import MESSAGES
from hub.core.settings import get_settings
from hub.models import (
    BillingMonth,
    DocumentCounter,
    LabIdentityPublic,
    MachineSession,
    Member,
    Statement,
)
from hub.reports.statements import export_month
from hub.services.billing import close_month, credit
from hub.services.lab import DEFAULT_VAT_MENTION, identity, set_identity
from tests.integration.test_billing_store import NOW, PARIS, example_lab
from tests.support.api import admin_headers

NAME = "Nguyễn Thị Ánh Łukasz Øster"
SIRET = "73282932000074"  # a valid check digit (Luhn)
LAB = LabIdentityPublic(
    name="Fablab des Trois Rivières",
    address="12 rue de l'Usine\n69001 Lyon",
    siret=SIRET,
    rna="W691234567",
    vat_mention=DEFAULT_VAT_MENTION,
    locale="en",
    privacy_contact="bureau@fablab.example.org",
)


@pytest.fixture
def books(database_url: str):  # type: ignore[no-untyped-def]
    """The worked example's lab (docs/billing.md), migrated on each database."""
    from hub.core.db import make_engine, migrate

    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        example_lab(session)
    yield engine
    engine.dispose()


def numbers(session: Session) -> list[str]:
    return sorted(session.exec(select(Statement.number)).all())


def assert_gap_free(found: list[str]) -> None:
    """Each year's numbers are 1..n, none twice."""
    assert len(set(found)) == len(found)
    by_year: dict[str, list[int]] = {}
    for number in found:
        year, _, sequence = number.partition("-")
        by_year.setdefault(year, []).append(int(sequence))
    for sequences in by_year.values():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), found


def alice_session(session: Session, sid: str, start: datetime) -> None:
    session.add(
        MachineSession(
            id=sid,
            site="lab",
            machine="laser-1",
            member_ref="alice",
            started_at=start,
            ended_at=start + timedelta(minutes=45),
            duration_s=2700,
            busy_s=1200,
            end_reason="badge-out",
        )
    )
    session.commit()


def test_one_series_per_year_across_closes_and_credit_notes(books) -> None:  # type: ignore[no-untyped-def]
    with Session(books) as session:
        october = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="t")
        session.commit()
        assert [s.number for s in october.statements] == [
            "2026-000001",
            "2026-000002",
            "2026-000003",
        ]
        note = credit(session, "2026-000001", ["S01"], "dirty lens", actor="t", tz=PARIS, now=NOW)
        session.commit()
        assert note.number == "2026-000004"  # its own number, never the statement's
        alice_session(session, "NOV1", datetime(2026, 11, 12, 14, tzinfo=UTC))
        november = close_month(
            session, "2026-11", tz=PARIS, now=datetime(2026, 12, 2, 8, tzinfo=UTC), actor="t"
        )
        session.commit()
        in_november = len(november.statements)  # the worked example has some too
        assert [s.number for s in november.statements] == [
            f"2026-{n:06d}" for n in range(5, 5 + in_november)
        ]
        alices = next(s.number for s in november.statements if s.payer_ref == "alice")
        # A refused credit note takes no number.
        with pytest.raises(Exception, match="already credited"):
            credit(session, "2026-000001", ["S01"], "again", actor="t", tz=PARIS, now=NOW)
        session.rollback()
        # Issued on 1 January at 00:30 in Paris (still 31 December in UTC): the new year.
        new_year = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
        alice_session(session, "DEC1", datetime(2026, 12, 10, 9, tzinfo=UTC))
        december = close_month(session, "2026-12", tz=PARIS, now=new_year, actor="t")
        session.commit()
        assert [s.number for s in december.statements] == ["2027-000001"]
        late = credit(session, alices, ["NOV1"], "wrong rate", actor="t", tz=PARIS, now=new_year)
        session.commit()
        assert late.number == "2027-000002"
        # Closing a closed month again numbers nothing.
        close_month(session, "2026-10", tz=PARIS, now=new_year, actor="t")
        session.commit()
        found = numbers(session)
        assert_gap_free(found)
        assert len(found) == 4 + in_november + 2
        counters = {c.year: c.last_number for c in session.exec(select(DocumentCounter)).all()}
        assert counters == {2026: 4 + in_november, 2027: 2}


CRASHING_CLOSE = """
import os, sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo
from sqlmodel import Session
from hub.core.db import make_engine
import hub.services.billing.close as close

real = close._bulk_insert

def dying(session, table, columns, rows):
    real(session, table, columns, rows)
    if table == sys.argv[2]:
        os._exit(9)  # the power goes: no rollback, no goodbye to the database

close._bulk_insert = dying
with Session(make_engine(sys.argv[1])) as session:
    close.close_month(
        session, "2026-10", tz=ZoneInfo("Europe/Paris"),
        now=datetime(2026, 11, 23, 9, tzinfo=UTC), actor="crash",
    )
    session.commit()
"""


@pytest.mark.parametrize("dies_after", ["statement", "statement_line"])
def test_a_close_that_dies_half_way_leaves_no_gap(
    books, database_url: str, dies_after: str
) -> None:  # type: ignore[no-untyped-def]
    with Session(books) as session:
        close_month(session, "2026-09", tz=PARIS, now=NOW, actor="t")  # nothing: no number
        session.commit()
    died = subprocess.run(
        [sys.executable, "-c", CRASHING_CLOSE, database_url, dies_after],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert died.returncode == 9, died.stderr
    with Session(books) as session:
        # Nothing of the dead close stays: no month, no statement, no number drawn.
        assert session.get(BillingMonth, "2026-10") is None
        assert numbers(session) == []
        assert session.get(DocumentCounter, 2026) in (None, DocumentCounter(year=2026))
        closing = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="t")
        session.commit()
        assert [s.number for s in closing.statements] == [
            "2026-000001",
            "2026-000002",
            "2026-000003",
        ]
        note = credit(session, "2026-000002", ["S09"], "cap", actor="t", tz=PARIS, now=NOW)
        session.commit()
        assert note.number == "2026-000004"
        assert_gap_free(numbers(session))


def test_a_close_that_raises_gives_its_numbers_back(books, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same in one process: an error between writing the statements and their lines."""
    import hub.services.billing.close as close

    real = close._bulk_insert

    def failing(session: Session, table: str, columns: Any, rows: Any) -> None:
        real(session, table, columns, rows)
        if table == "statement":
            raise OSError("disk full")

    monkeypatch.setattr(close, "_bulk_insert", failing)
    with Session(books) as session:
        with pytest.raises(OSError):
            close_month(session, "2026-10", tz=PARIS, now=NOW, actor="t")
        session.rollback()
    monkeypatch.setattr(close, "_bulk_insert", real)
    with Session(books) as session:
        closing = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="t")
        session.commit()
        assert closing.statements[0].number == "2026-000001"
        assert_gap_free(numbers(session))


def embedded_fonts(reader: PdfReader) -> set[str]:
    """The fonts whose program is inside the file (a TrueType FontFile2), by name."""
    found = set()
    for page in reader.pages:
        fonts: Any = page["/Resources"]["/Font"]
        for ref in fonts.values():
            font = ref.get_object()
            for descendant in font.get("/DescendantFonts", []):
                descriptor = descendant.get_object()["/FontDescriptor"].get_object()
                if "/FontFile2" in descriptor:
                    found.add(str(font["/BaseFont"]))
    return found


def test_every_name_prints_as_written_in_the_payers_language(books, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Session(books) as session:
        alice = session.exec(select(Member).where(Member.ref == "alice")).one()
        alice.name = NAME
        alice.language = "fr"  # type: ignore[assignment]
        session.add(alice)
        session.commit()
        close_month(session, "2026-10", tz=PARIS, now=NOW, actor="t")
        credit(session, "2026-000001", ["S01"], "lentille sale", actor="t", tz=PARIS, now=NOW)
        session.commit()
        files = export_month(session, "2026-10", tmp_path, PARIS, LAB)

    reader = PdfReader(files["pdf"])
    assert embedded_fonts(reader) and all("DejaVuSans" in f for f in embedded_fonts(reader))
    alice_page = reader.pages[0].extract_text()
    assert NAME in alice_page
    assert f"Facturé à : {NAME} (alice)" in alice_page
    assert "Relevé 2026-000001" in alice_page
    assert "Émis le 23/11/2026" in alice_page and "Reste à payer" in alice_page
    for part in (LAB.name, "12 rue de l'Usine", "69001 Lyon", f"SIRET {SIRET}", "RNA W691234567"):
        assert part in alice_page
    assert "TVA non applicable, art. 293 B du CGI" in alice_page
    # A payer who chose no language reads the lab's.
    school = reader.pages[2].extract_text()
    assert "Statement 2026-000003" in school and "École de design" in school
    assert "Issued on 23/11/2026" in school and LAB.name in school
    note = PdfReader(files["credit_pdf"]).pages[0].extract_text()
    assert "Avoir 2026-000004" in note and "Avoir sur le relevé 2026-000001" in note
    assert NAME in note and "Motif : lentille sale" in note


# --- the identity as the API and the web take it --------------------------------------------
def test_the_identity_is_set_through_the_api_and_shown_in_the_web(
    database_url: str, tmp_path: Path
) -> None:
    from hub.core.db import migrate

    migrate(database_url)
    app_settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with TestClient(create_app(app_settings, start_ingest=False)) as client:
        admin = admin_headers(database_url)
        shown = client.get("/api/v1/lab/identity", headers=admin).json()
        assert shown == {
            "name": "lab",  # the hub's site until the lab names itself
            "address": "",
            "siret": "",
            "rna": "",
            "vat_mention": DEFAULT_VAT_MENTION,
            "locale": "en",
            "privacy_contact": "",
        }
        changed = client.patch(
            "/api/v1/lab/identity",
            json={"name": LAB.name, "siret": "732 829 320 00074", "rna": "w691234567"},
            headers=admin,
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["siret"] == SIRET and changed.json()["rna"] == "W691234567"
        bad = client.patch("/api/v1/lab/identity", json={"siret": "73282932000075"}, headers=admin)
        assert bad.status_code == 422
        assert bad.json()["field"] == "siret" and "check digit" in bad.json()["detail"][0]["msg"]
        bad_rna = client.patch("/api/v1/lab/identity", json={"rna": "123"}, headers=admin)
        assert bad_rna.json()["code"] == "lab.rna_format"
        assert client.get("/api/v1/lab/identity", headers=admin).json()["name"] == LAB.name


@pytest.fixture
def api(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    from hub.core.db import migrate

    migrate(database_url)
    app_settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with TestClient(create_app(app_settings, start_ingest=False)) as client:
        yield client, admin_headers(database_url)


hostile_text = st.one_of(
    st.text(max_size=600),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=190, max_size=210),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\n", "W", "W12345678a", "1" * 14, "9" * 2000]),
    st.from_regex(r"W[0-9]{9}", fullmatch=True),
    st.from_regex(r"[0-9 ]{14,17}", fullmatch=True),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            ["name", "address", "siret", "rna", "vat_mention", "locale", "privacy_contact"]
        ),
        hostile_text,
        max_size=6,
    )
)
def test_any_identity_is_kept_as_checked_or_refused_on_its_field(api, changes) -> None:  # type: ignore[no-untyped-def]
    """Generated values (NUL, control characters, huge, almost-SIRETs) through the real API
    on both databases: kept exactly as the checks make them, or refused with a code the
    catalogue words and the field at fault; never a 500, and a refusal keeps nothing."""
    client, admin = api
    before = client.get("/api/v1/lab/identity", headers=admin).json()
    answer = client.patch("/api/v1/lab/identity", json=changes, headers=admin)
    assert answer.status_code in (200, 422), answer.text
    after = client.get("/api/v1/lab/identity", headers=admin).json()
    if answer.status_code == 422:
        body = answer.json()
        assert after == before
        if "code" in body:
            assert body["code"] in MESSAGES and body["field"] in changes
        else:  # refused by the schema (a length limit) before the service
            assert body["detail"][0]["loc"][-1] in changes
        return
    assert answer.json() == after
    for field, given_value in changes.items():
        kept = after[field]
        if field == "siret":
            assert kept == re.sub(r"[\s.]", "", given_value)
            assert kept == "" or (len(kept) == 14 and kept.isdigit())
        elif field == "rna":
            assert kept == "" or (kept[0] == "W" and len(kept) == 10)
        elif field == "locale":
            assert kept in ("en", "fr")
        elif field == "privacy_contact":
            assert kept == "" or (kept == given_value.strip().lower() and "@" in kept)
        else:
            assert "\x00" not in kept and kept == given_value.replace("\r\n", "\n").strip()


def test_the_service_keeps_nothing_when_one_field_is_wrong(books) -> None:  # type: ignore[no-untyped-def]
    with Session(books) as session:
        with pytest.raises(Exception, match="SIRET"):
            set_identity(session, {"name": "Nouveau nom", "siret": "12"}, actor="t")
        session.rollback()
        assert identity(session, default_name="lab").name == "lab"
