"""The yearly review a funder reads, over HTTP on both databases: the lab's name and address
from Settings, figures rounded with thousands separators and percentages in the reader's
language, totals per machine type with each machine in an annex, the months, three charts,
utilisation against the opening hours and capped at them; and the XLSX's headers, formats
and widths."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlmodel import Session, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import BusyPeriod, MachineSession, Member
from hub.reports.funders import bar_chart, capped
from hub.services import lab_settings
from tests.e2e.web import sign_in
from tests.support.api import PASSWORD, role_tokens

YEAR = 2025


def _year_of_use(session: Session) -> None:
    """1,200 one-hour laser sessions by Hugo over 2025 (so thousands separators show), and a
    printer busy 300 hours in one go in March (far beyond the opening hours)."""
    hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
    first = datetime(YEAR, 1, 2, 13, 0, tzinfo=UTC)
    for n in range(1200):
        start = first + timedelta(hours=(n % 4) * 1, days=(n // 4) % 360)
        session.add(
            MachineSession(
                id=f"y-{n}",
                site="lab",
                machine="laser-1",
                member_ref=hugo.ref,
                started_at=start,
                ended_at=start + timedelta(hours=1),
                end_reason="badge-out",
                duration_s=3600.0,
            )
        )
    march = datetime(YEAR, 3, 1, tzinfo=UTC)
    session.add(
        BusyPeriod(
            site="lab",
            machine="printer-1",
            source="test",
            started_at=march,
            ended_at=march + timedelta(hours=300),
            busy_s=300 * 3600.0,
        )
    )


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        _year_of_use(session)
        lab_settings.change(
            session,
            name="FabLab des Capucins",
            address="3 rue des Capucins\n29200 Brest",
            opening_hours="sat 10:00-12:00",  # 2 hours a week: ~104 hours in the year
            actor="test",
        )
        session.commit()
    role_tokens(engine)
    engine.dispose()
    app = create_app(get_settings(None, database_url=database_url, data_dir=tmp_path))
    with TestClient(app) as client:
        yield client


def test_the_review_page_in_french_and_english(hub: TestClient) -> None:
    sign_in(hub, "test-manager", PASSWORD)
    assert 'href="/web/stats/review"' in hub.get("/web/stats").text
    en = hub.get(f"/web/stats/review?year={YEAR}")
    assert en.status_code == 200
    text = en.text
    assert "Yearly review 2025 — FabLab des Capucins" in text
    assert "29200 Brest" in text
    assert "<strong>1,200</strong> sessions" in text  # thousands separator
    assert text.count("<svg") == 3  # by type, by public, by month
    assert "Trotec Speedy 100" in text and "Laser" in text  # names, in the annex
    # The printer busy 300 h against ~104 opening hours is 100 %, never 288 %.
    assert "100.0%" in text and "288" not in text
    assert "January 2025" in text and "December 2025" in text
    assert (
        "/api/v1/stats/review?year=2025&amp;format=xlsx&amp;opening_hours=sat%2010%3A00-12%3A00"
        in text
    )
    fr = hub.get(f"/web/stats/review?year={YEAR}", headers={"Accept-Language": "fr"}).text
    assert "Bilan annuel 2025 — FabLab des Capucins" in fr
    assert "<strong>1\u202f200</strong> sessions" in fr  # French thousands: narrow space
    assert "100,0\u00a0%" in fr and "janvier 2025" in fr
    assert "Ce que signifient les chiffres" in fr and "Annexe : chaque machine" in fr


def test_only_managers_open_the_review_and_a_bad_year_is_a_clear_page(hub: TestClient) -> None:
    sign_in(hub, "test-maintainer", PASSWORD)
    assert hub.get("/web/stats/review").status_code == 403
    hub.cookies.clear()
    sign_in(hub, "test-manager", PASSWORD)
    for bad in ("1999", "3000", "x", "2025.5", "-1"):
        assert hub.get(f"/web/stats/review?year={bad}").status_code == 422, bad
    empty = hub.get("/web/stats/review?year=2999")
    assert empty.status_code == 200 and "<strong>0</strong> sessions" in empty.text


def test_the_review_xlsx_has_headers_formats_and_widths(hub: TestClient) -> None:
    sign_in(hub, "test-manager", PASSWORD)
    answer = hub.get(
        "/api/v1/stats/review",
        params={"year": YEAR, "format": "xlsx", "opening_hours": "sat 10:00-12:00"},
    )
    assert answer.status_code == 200
    book = load_workbook(io.BytesIO(answer.content))
    sheet = book["by machine"]
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["Machine", "Machine type", "Sessions", "Session hours"]
    assert all(c.font.bold for c in sheet[1]) and sheet.freeze_panes == "A2"
    laser = next(r for r in sheet.iter_rows(min_row=2) if r[0].value == "laser-1")
    assert laser[2].value == 1200 and laser[2].number_format == "#,##0"
    assert laser[3].number_format == "#,##0.0"
    assert laser[header.index("Utilisation")].number_format == "0.0%"
    assert sheet.column_dimensions["A"].width >= len("Machine") + 2
    summary = book["summary"]
    rows = {r[0].value: r[1] for r in summary.iter_rows(min_row=2)}
    assert rows["year"].value == YEAR and rows["year"].number_format == "General"
    assert rows["sessions"].number_format == "#,##0"


@settings(max_examples=200, deadline=None)
@given(
    busy=st.floats(allow_nan=True, allow_infinity=True),
    opened=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e12),
    machines=st.integers(min_value=0, max_value=10_000),
)
def test_utilisation_is_capped_at_the_time_the_lab_is_open(
    busy: float, opened: float, machines: int
) -> None:
    value = capped(busy, opened, machines)
    assert 0.0 <= value <= 1.0
    if busy >= opened * machines > 0:
        assert value == 1.0


@settings(max_examples=100, deadline=None)
@given(
    bars=st.lists(
        st.tuples(
            st.text(max_size=80),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=20),
        ),
        max_size=40,
    )
)
def test_a_chart_of_hostile_labels_and_values_is_well_formed_svg(
    bars: list[tuple[str, float, str]],
) -> None:
    from xml.etree import ElementTree

    svg = bar_chart(bars, title="<script>alert(1)</script>")
    root = ElementTree.fromstring(svg)
    assert root.tag.endswith("svg") and "<script>" not in svg
    for rect in root.iter("{http://www.w3.org/2000/svg}rect"):
        width = float(rect.get("width", "0"))
        assert 0.0 <= width <= 640
