"""The wall display in a real browser (Debian's chromium through Playwright) against a running
`atelier hub serve` and a real Mosquitto: a display token opens the kiosk, filling a 1080p and
a 4K screen; a revoked one is refused, even on a screen already showing the board; when the hub
is killed the "connection lost" banner appears, and once the hub is back the page reloads by
itself and follows the machines again.

Set ATELIER_SCREENSHOTS=docs/images to refresh docs/images/wall.png (1080p).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.models import Machine, Member
from hub.services import displays
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, keep
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import Proc

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Wall:
    settings: HubSettings
    hub: Proc
    database_url: str
    secret: str
    log: Path

    @property
    def url(self) -> str:
        return f"{self.settings.url}/wall/{self.secret}"


def _set(database_url: str, code: str, **values: Any) -> None:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            machine = session.exec(select(Machine).where(Machine.code == code)).one()
            for key, value in values.items():
                setattr(machine, key, value)
            session.add(machine)
            session.commit()
    finally:
        engine.dispose()


def _busy_lab(database_url: str) -> None:
    """A lab in mid-afternoon: the laser in use, a printer printing, one locked out."""
    engine = make_engine(database_url)
    with Session(engine) as session:
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
    engine.dispose()
    started = (datetime.now(UTC) - timedelta(minutes=47)).isoformat()
    _set(
        database_url,
        "laser-1",
        online=True,
        last_status={"session": {"session_id": "s1", "member": hugo.ref, "started_at": started}},
    )
    _set(
        database_url,
        "printer-1",
        online=True,
        last_status={
            "busy": True,
            "session": {"session_id": "s2", "member": lea.ref, "started_at": started},
        },
        last_telemetry={"progress": 64.0, "file": "bracket_v3.gcode", "print_time_left_s": 2520},
    )
    _set(database_url, "printer-2", online=True, locked=True, lock_reason="nozzle clogged")


@pytest.fixture
def wall(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[Wall]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is needed for the browser tests: apt-get install chromium")
    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        secret, _ = displays.create_display(session, name="hall screen", actor="test")
        session.commit()
    engine.dispose()
    _busy_lab(database_url)
    settings = HubSettings(tmp_path / "hub", database_url, "lab", mosquitto)
    settings.public_key()
    log = tmp_path / "hub.log"
    hub = start_hub(settings, log=log)
    state = Wall(settings, hub, database_url, secret, log)
    try:
        yield state
    finally:
        state.hub.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Debian's chromium, headless, a fresh profile, as a kiosk would run it."""
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1920, "height": 1080},
            locale="en-GB",
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


def _layout(page: Any) -> dict[str, float]:
    return page.evaluate(
        """() => {
          const cards = [...document.querySelectorAll('.wall-card')]
            .map(c => c.getBoundingClientRect());
          return {
            scrollWidth: document.documentElement.scrollWidth,
            scrollHeight: document.documentElement.scrollHeight,
            width: window.innerWidth,
            height: window.innerHeight,
            cardWidth: cards[0].width,
            bottom: Math.max(...cards.map(c => c.bottom)),
            right: Math.max(...cards.map(c => c.right)),
            fontSize: parseFloat(getComputedStyle(document.body).fontSize),
          };
        }"""
    )


def test_a_display_token_opens_the_kiosk_filling_1080p_and_4k_and_a_revoked_one_is_refused(
    wall: Wall, browser: Any, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    page = browser.new_page()
    page.goto(wall.url)
    expect(page.locator(".summary")).to_contain_text("1 in use")
    expect(page.locator(".summary")).to_contain_text("1 printing")
    expect(page.locator(".summary")).to_contain_text("1 locked")
    expect(page.locator(".summary")).to_contain_text("1 offline")
    printer = page.locator("#wall-printer-1")
    expect(printer).to_contain_text("Printing 64 %")
    expect(printer).to_contain_text("bracket_v3.gcode")
    expect(printer).to_contain_text("42 min left")
    expect(page.locator("#wall-laser-1")).to_contain_text(re.compile(r"since \d\d:\d\d"))
    # No menu, no sign-in, nothing to click.
    assert page.locator("nav, form, a").count() == 0
    hd = _layout(page)
    # The board fills the screen: no scrolling either way, the cards reach the bottom.
    assert hd["scrollWidth"] <= hd["width"] and hd["scrollHeight"] <= hd["height"], hd
    assert hd["bottom"] > 0.9 * hd["height"] and hd["right"] > 0.9 * hd["width"], hd
    shot = tmp_path / "wall.png"
    page.screenshot(path=str(shot))
    keep(shot, "wall.png")
    page.set_viewport_size({"width": 3840, "height": 2160})
    page.wait_for_function("window.innerWidth === 3840")
    uhd = _layout(page)
    assert uhd["scrollWidth"] <= uhd["width"] and uhd["scrollHeight"] <= uhd["height"], uhd
    assert uhd["bottom"] > 0.9 * uhd["height"] and uhd["right"] > 0.9 * uhd["width"], uhd
    # The same board, twice as large: type and cards scale with the screen.
    assert 1.8 < uhd["fontSize"] / hd["fontSize"] < 2.2, (hd, uhd)
    assert 1.8 < uhd["cardWidth"] / hd["cardWidth"] < 2.2, (hd, uhd)
    # Filtered to the printers, grouped by type.
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{wall.url}?type=printer&group=type")
    expect(page.locator(".wall-card")).to_have_count(2)
    expect(page.locator(".group h2")).to_have_text(["3D printer"])
    # Revoked while a screen shows it: that screen shows the refusal within seconds.
    engine = make_engine(wall.database_url)
    with Session(engine) as session:
        displays.revoke_display(session, display=wall.secret[:12], actor="test")
        session.commit()
    engine.dispose()
    expect(page.locator("h1")).to_have_text("This screen cannot show the machines")
    other = browser.new_page()
    answer = other.goto(wall.url)
    assert answer is not None and answer.status == 403
    expect(other.get_by_role("alert")).to_contain_text("revoked or is not valid")


def test_the_banner_shows_when_the_hub_is_killed_and_clears_when_it_is_back(
    wall: Wall, browser: Any
) -> None:
    expect = playwright_api.expect
    page = browser.new_page()
    page.goto(wall.url)
    banner = page.locator("#lost")
    expect(page.locator("#wall-laser-1")).to_contain_text("In use")
    expect(banner).to_be_hidden()
    # The stream has spoken: the banner's time is the last thing the hub said.
    page.wait_for_function("document.querySelector('.summary') !== null")
    wall.hub.kill()
    expect(banner).to_be_visible()
    expect(banner).to_have_text(
        re.compile(r"Connection lost, last update \d\d:\d\d\. Reconnecting…")
    )
    assert "stale" in (page.locator("body").get_attribute("class") or "")
    # While it is down, the lab goes on: the laser's session ends.
    _set(wall.database_url, "laser-1", last_status={"busy": False})
    page.evaluate("window.__sameLoad = true")
    wall.hub = start_hub(wall.settings, log=wall.log)
    # The page reloads by itself once the hub answers: banner gone, the board current.
    page.wait_for_function("window.__sameLoad === undefined", timeout=30_000)
    expect(banner).to_be_hidden()
    expect(page.locator("#wall-laser-1")).to_contain_text("Free")
    # And it follows the machines live again, over the new stream.
    page.evaluate("window.__sameLoad = true")
    _set(wall.database_url, "cnc-1", online=True, locked=True, lock_reason="spindle service")
    expect(page.locator("#wall-cnc-1")).to_contain_text("spindle service")
    assert page.evaluate("window.__sameLoad") is True


def test_a_larger_lab_in_seven_rooms_still_fits_one_screen(wall: Wall, browser: Any) -> None:
    engine = make_engine(wall.database_url)
    with Session(engine) as session:
        laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        for i in range(30):
            session.add(
                Machine(
                    code=f"extra-{i}",
                    name=f"Bench machine {i}",
                    site="lab",
                    location=f"Room {i % 5}",
                    machine_type_id=laser.machine_type_id,
                    online=i % 3 != 0,
                )
            )
        secret, _ = displays.create_display(session, name="big screen", actor="test")
        session.commit()
    engine.dispose()
    page = browser.new_page()
    for size in ({"width": 1920, "height": 1080}, {"width": 3840, "height": 2160}):
        page.set_viewport_size(size)
        page.goto(f"{wall.settings.url}/wall/{secret}")
        playwright_api.expect(page.locator(".wall-card")).to_have_count(34)
        shown = _layout(page)
        # Every card on the screen, none cut, nothing to scroll: the type got smaller.
        assert shown["scrollHeight"] <= shown["height"], shown
        assert shown["scrollWidth"] <= shown["width"], shown
        assert shown["bottom"] <= shown["height"], shown
        names = page.locator(".wall-card h3")
        assert all(
            names.nth(i).evaluate("el => el.scrollWidth <= el.clientWidth + 1")
            for i in range(0, 34, 5)
        )
