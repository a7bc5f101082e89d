"""A member books the laser from its card on a phone-sized page (390 px), in a real browser
(Debian's chromium through Playwright) against a running hub, a real Mosquitto and the laser's
agent, which then holds the slot in its signed allow-list."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from hub.core.db import make_engine
from hub.models import Booking
from hub.services.bookings import set_rules
from tests.e2e.test_browser import Lab, browser, lab, sign_in  # noqa: F401
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")
TZ = ZoneInfo("Europe/Paris")


def test_a_member_books_a_slot_on_a_phone(lab: Lab, browser: object) -> None:  # noqa: F811
    expect = playwright_api.expect
    engine = make_engine(lab.database_url)
    with Session(engine) as session:
        set_rules(
            session,
            machine_type="laser",
            values={"bookable": True, "slot_minutes": 30, "max_minutes": 180},
            actor="test",
        )
    tomorrow = datetime.now(TZ).date() + timedelta(days=1)
    page = browser.new_page()  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, lab, "hugo")
    page.locator("#card-laser-1").get_by_role("link", name="Book this machine").click()
    page.wait_for_url("**/web/bookings?machine=laser-1")
    expect(page.get_by_role("heading", name="Book a slot")).to_be_visible()
    page.get_by_label("Day", exact=True).last.fill(tomorrow.isoformat())
    page.get_by_label("From").fill("10:00")
    page.get_by_label("Until").fill("11:30")
    page.get_by_role("button", name="Book", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("the machine holds the slot for you")
    expect(page.locator(".slot-mine")).to_contain_text("Your booking")
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    with Session(engine) as session:
        (row,) = session.exec(select(Booking)).all()
        start = datetime.combine(tomorrow, time(10), TZ).astimezone(UTC)
        assert (row.starts_at, row.ends_at) == (start, start + timedelta(minutes=90))
    # The same slot again: refused, the reason under the time it names.
    page.get_by_label("From").fill("11:00")
    page.get_by_label("Until").fill("12:00")
    page.get_by_label("Day", exact=True).last.fill(tomorrow.isoformat())
    page.get_by_role("button", name="Book", exact=True).click()
    expect(page.locator("#b-start-error")).to_contain_text("already booked")
    expect(page.get_by_label("From")).to_have_attribute("aria-invalid", "true")
    # The laser's agent holds the booking in its signed list (published after the booking).
    wait_until(
        lambda: _held_by_agent(lab, row.starts_at),
        timeout=20,
        what="the laser's agent to hold the booking",
    )
    engine.dispose()


def _held_by_agent(hub: Lab, starts_at: datetime) -> bool:
    """Whether the list the agent keeps on disk (edge/acl_cache.py) carries the booking."""
    stored = hub.agent_config.parent / "agent" / "allowlist.json"
    text = stored.read_text() if stored.exists() else ""
    return starts_at.strftime("%Y-%m-%dT%H:%M:%SZ") in text and '"bookings"' in text
