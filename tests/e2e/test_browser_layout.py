"""No page scrolls sideways on a 390 px phone: Debian's chromium (through Playwright) walks
every page as each role would, against a running `atelier hub serve` and a real Mosquitto.

Each role signs in on a 390 x 844 viewport and visits the pages listed below and every page
linked from them (a breadth-first walk of the hub's own links), then the 404 page; the
signed-out pages (login, the wall display) are walked too. A page whose document is wider
than the viewport fails the test, naming the elements that stick out. A table inside a
horizontally scrolling box (`.table-scroll`) scrolls in its box, which is allowed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from hub.auth import create_user
from hub.core.db import make_engine, migrate
from hub.demo.seed import DEMO_PASSWORD, seed_demo, seed_demo_users
from hub.models import Member, Role, User
from hub.services import displays
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, _history
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")

PHONE = {"width": 390, "height": 844}
# Pages no menu links to, for every role (each answers 200 or a refusal page).
PAGES = [
    "/",
    "/web/machines/laser-1",
    "/web/machines/printer-1",
    "/web/members/new",
    "/web/members/{hugo}/edit",
    "/web/machines/new",
    "/web/machines/add",
    "/web/machine-types",
    "/web/machines/laser-1/edit",
    "/web/machines/laser-1/setup",
    "/web/users/1",
    "/web/account",
    "/web/me",
    "/web/no-such-page",
]
# Links not walked: downloads, the API, signing out, the live streams.
SKIP = ("/api/", "/static/", "/logout", "/web/stream", "/wall/")
DOWNLOADS = (
    "agent.toml",
    "ca.crt",
    "mqtt-password",
    "octoprint-api-key",
    ".pdf",
    ".md",
    ".ics",
    ".csv",
    ".xlsx",
)
LOGINS = {
    Role.MEMBER: "hugo",
    Role.TRAINER: "camille",
    Role.MAINTAINER: "maxime",
    Role.MANAGER: "manager",
    Role.ADMIN: "admin",
}
WALK_MAX = 80

# What sticks out of the viewport: elements whose right edge is past it, outside any box that
# scrolls or clips sideways; the deepest ones (their parents stick out because of them).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= width) return [];
  const clipped = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      const top = p === document.body || p === document.documentElement;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') return !top;
    }
    return false;
  };
  const out = [...document.body.querySelectorAll('*')].filter(
    (el) => el.getBoundingClientRect().right > width + 1 && !clipped(el)
  );
  const deepest = out.filter((el) => !out.some((other) => other !== el && el.contains(other)));
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className ? '.' + el.className.trim() : '');
  const right = (el) => Math.round(el.getBoundingClientRect().right);
  return [document.documentElement.scrollWidth,
          ...deepest.slice(0, 5).map((el) => name(el) + ' ' + right(el))];
}"""


@pytest.fixture
def hub(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[tuple[str, dict[str, str]]]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is needed for the browser tests: apt-get install chromium")
    import random

    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        seed_demo_users(session)
        camille = session.exec(select(Member).where(Member.email == "camille@example.org")).one()
        create_user(
            session, username="maxime", password=DEMO_PASSWORD, role=Role.MAINTAINER, member=camille
        )
        _history(session, random.Random(7))
        secret, _ = displays.create_display(session, name="hall", actor="test")
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        assert session.exec(select(User).where(User.username == "hugo")).one()
        session.commit()
        names = {"hugo": str(hugo.id), "secret": secret}
    engine.dispose()
    settings = HubSettings(tmp_path / "hub", database_url, "lab", mosquitto)
    settings.public_key()
    proc = start_hub(settings, log=tmp_path / "hub.log")
    try:
        yield settings.url, names
    finally:
        proc.stop()


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _walk(page: Any, base: str, start: list[str]) -> dict[str, list[Any]]:
    """Every page reached from `start` by the hub's own links: {path: what sticks out}."""
    seen: set[str] = set()
    queue = deque(start)
    wide: dict[str, list[Any]] = {}
    while queue and len(seen) < WALK_MAX:
        path = queue.popleft()
        if path in seen:
            continue
        seen.add(path)
        page.goto(base + path)
        found = page.evaluate(OVERFLOW)
        if found:
            wide[path] = found
        for href in page.eval_on_selector_all(
            "a[href^='/']:not([download])", "links => links.map(a => a.getAttribute('href'))"
        ):
            link = href.split("#")[0]
            if link.startswith(SKIP) or link.endswith(DOWNLOADS) or link in seen:
                continue
            queue.append(link)
    return wide


@pytest.mark.parametrize("role", list(Role))
def test_no_page_is_wider_than_a_phone(
    hub: tuple[str, dict[str, str]], phone: Any, role: Role
) -> None:
    base, names = hub
    context = phone.new_context(viewport=PHONE, locale="fr-FR", is_mobile=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        page.goto(f"{base}/login")
        page.locator("#username").fill(LOGINS[role])
        page.locator("#password").fill(DEMO_PASSWORD)
        page.locator("form.login button[type=submit]").click()
        page.wait_for_url(f"{base}/")
        wide = _walk(page, base, [p.format(**names) for p in PAGES])
    finally:
        context.close()
    assert not wide, wide


def test_the_signed_out_pages_fit_a_phone(hub: tuple[str, dict[str, str]], phone: Any) -> None:
    base, names = hub
    context = phone.new_context(viewport=PHONE, locale="en-GB", is_mobile=True)
    page = context.new_page()
    wide = {}
    try:
        for path in ("/login", f"/wall/{names['secret']}", "/wall/atd_revoked", "/nowhere"):
            page.goto(base + path)
            found = page.evaluate(OVERFLOW)
            if found:
                wide[path] = found
    finally:
        context.close()
    assert not wide, wide


def test_the_rates_import_card_keeps_its_own_height_beside_the_rate_form(
    hub: tuple[str, dict[str, str]], phone: Any, tmp_path: Path
) -> None:
    base, _ = hub
    context = phone.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        page.goto(f"{base}/login")
        page.locator("#username").fill("manager")
        page.locator("#password").fill(DEMO_PASSWORD)
        page.locator("form.login button[type=submit]").click()
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/web/billing")
        card = page.locator("form[action='/web/billing/rates/import']")
        rate_form = page.locator("form[action='/web/billing/rates']")
        button, heading = card.locator("button"), card.locator("h3")
        # Side by side with the taller rate form, its rows keep their own height: the file
        # box and the button follow the heading, the button one line high.
        assert card.bounding_box()["x"] > rate_form.bounding_box()["x"]
        assert button.bounding_box()["height"] < 60
        below = button.bounding_box()["y"] - heading.bounding_box()["y"]
        assert below < 0.6 * rate_form.bounding_box()["height"], below
        # Sent without a file: the hub's refusal, in French, under the field (no browser
        # bubble in the browser's own words).
        button.click()
        page.wait_for_load_state()
        expect = playwright_api.expect
        expect(page.locator("#import_file-error")).to_contain_text("fichier CSV")
        csv = tmp_path / "rates.csv"
        csv.write_text(
            "machine_type,category,effective_from,cents_per_hour\nlaser,student,2026-01-01,900\n"
        )
        page.locator("#import_file").set_input_files(str(csv))
        page.locator("form[action='/web/billing/rates/import'] button").click()
        expect(page.locator(".notice")).to_contain_text("Tarifs importés : 1 ajoutés")
    finally:
        context.close()
