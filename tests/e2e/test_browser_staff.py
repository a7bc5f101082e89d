"""Issue 18's acceptance in a real browser (Debian's chromium): a manager closes last month
from the billing page, then gives a session back with a credit note, against `atelier hub
serve`; a reload after each form shows the page again without sending it twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from hub.core.db import make_engine, migrate
from hub.demo.seed import DEMO_PASSWORD, seed_demo, seed_demo_users
from hub.models import AuditEntry, Statement
from tests.e2e.test_browser import browser  # noqa: F401 - Debian's chromium, the fixture
from tests.e2e.test_web_staff import _sessions
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")


def _last_month() -> tuple[str, datetime]:
    today = datetime.now(UTC)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}", datetime(year, month, 10, 13, 0, tzinfo=UTC)


@pytest.fixture
def lab(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    month, first = _last_month()
    with Session(engine) as session:
        seed_demo(session, site="lab")
        seed_demo_users(session)
        _sessions(session, first)
        session.commit()
    engine.dispose()
    settings = HubSettings(tmp_path / "hub", url, "lab", mosquitto)
    hub = start_hub(settings, log=tmp_path / "hub.log")
    try:
        yield settings.url, url
    finally:
        hub.stop()


def test_a_manager_closes_a_month_and_credits_a_session_in_the_browser(
    lab: tuple[str, str],
    browser: object,  # noqa: F811
) -> None:
    http, url = lab
    month, _ = _last_month()
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{http}/login")
    page.get_by_label("Username").fill("manager")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{http}/")
    page.get_by_role("link", name="Billing").click()
    page.get_by_label("Month to close").select_option(month)
    page.get_by_role("button", name="Close this month").click()
    page.wait_for_url(f"{http}/web/billing?month={month}")
    status = page.get_by_role("status")
    assert status.inner_text() == f"{month} is closed: 1 statement(s)"
    page.reload()  # a GET: nothing is sent again, the message is gone
    assert page.get_by_role("status").count() == 0
    first = _numbers(url)[0]  # one series a year for statements and credit notes
    page.get_by_role("link", name=first).click()
    page.get_by_label("Credit this session").first.check()
    page.get_by_label("Reason, in words the member understands").fill("the laser's tube failed")
    page.get_by_role("button", name="Issue a credit note for the ticked sessions").click()
    page.wait_for_url(f"{http}/web/billing/statements/{first}")
    credit = _numbers(url)[-1]
    assert credit != first
    assert f"Credit note {credit}: -8,00 €" in page.get_by_role("status").inner_text()
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            closes = session.exec(select(AuditEntry).where(AuditEntry.action == "billing.close"))
            assert [a.actor for a in closes] == ["user:manager"]
    finally:
        engine.dispose()
    assert _numbers(url) == [first, credit]


def _numbers(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(Statement.number).order_by(col(Statement.id))).all())
    finally:
        engine.dispose()


@pytest.fixture
def reviewed_lab(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[str]:
    """The demo lab with a year of laser use, its name, address and opening hours set."""
    from hub.services import lab_settings
    from tests.e2e.test_web_review import _year_of_use

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        seed_demo_users(session)
        _year_of_use(session)
        lab_settings.change(
            session,
            name="FabLab des Capucins",
            address="3 rue des Capucins\n29200 Brest",
            opening_hours="tue-fri 14:00-19:00; sat 10:00-18:00",
            actor="test",
        )
        session.commit()
    engine.dispose()
    settings = HubSettings(tmp_path / "hub", url, "lab", mosquitto)
    hub = start_hub(settings, log=tmp_path / "hub.log")
    try:
        yield settings.url
    finally:
        hub.stop()


def test_the_yearly_review_in_the_browser_in_both_languages(
    reviewed_lab: str,
    browser: object,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Statistics → Yearly review, in English then French; ATELIER_SCREENSHOTS=docs/images
    keeps review-en.png and review-fr.png for docs/web.md."""
    from tests.e2e.test_browser import keep
    from tests.e2e.test_web_review import YEAR

    http = reviewed_lab
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{http}/login")
    page.get_by_label("Username").fill("manager")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{http}/")
    page.get_by_role("link", name="Statistics").click()
    page.get_by_role("link", name="Yearly review").click()
    page.get_by_label("Year", exact=True).fill(str(YEAR))
    page.get_by_role("button", name="Show").click()
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == f"Yearly review {YEAR} — FabLab des Capucins"
    assert page.locator("svg.chart").count() == 3
    shot = tmp_path / "review-en.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, "review-en.png")
    page.get_by_label("Language").select_option("fr")
    page.get_by_role("button", name="Change").click()
    page.wait_for_load_state()
    page.goto(f"{http}/web/stats/review?year={YEAR}")  # the switch keeps the path, not the year
    assert page.get_by_role("heading", level=1).inner_text().startswith(f"Bilan annuel {YEAR}")
    assert page.get_by_text("Annexe : chaque machine").count() == 1
    shot = tmp_path / "review-fr.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, "review-fr.png")
