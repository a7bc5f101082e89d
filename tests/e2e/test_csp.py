"""The nginx example's Content-Security-Policy does not break the web pages.

Debian's chromium (through Playwright) loads every page of the menu, as an admin and as a
member, from a real `atelier hub serve`; each answer is given the Content-Security-Policy
read from deploy/nginx/atelier-hub.conf, as nginx would add it. The pages' scripts must run
(htmx, the live stream, the token field) and the browser must report no violation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from hub.core.db import make_engine, migrate
from hub.demo.seed import DEMO_PASSWORD, seed_demo, seed_demo_users
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import Proc

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")

NGINX = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "atelier-hub.conf"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# Every violation the page sees, kept where the test can read it.
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`);
});
"""


def site_policy() -> str:
    """The first (the site-wide) Content-Security-Policy of the nginx example."""
    found = re.search(r'add_header Content-Security-Policy "([^"]+)" always;', NGINX.read_text())
    assert found, "deploy/nginx/atelier-hub.conf sets no Content-Security-Policy"
    return found.group(1)


@pytest.fixture
def hub(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[Proc]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        seed_demo_users(session)
        session.commit()
    engine.dispose()
    settings = HubSettings(
        data_dir=tmp_path / "hub", database_url=url, site="lab", broker=mosquitto
    )
    settings.public_key()
    proc = start_hub(settings, log=tmp_path / "hub.log")
    proc.url = settings.url  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    policy = site_policy()
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            locale="en-GB",
        )
        context.set_default_timeout(15_000)

        def as_nginx_serves_it(route: object) -> None:
            # The policy governs the document; the stream and static files pass untouched
            # (fetching the never-ending stream whole would wait forever).
            if route.request.resource_type != "document":  # type: ignore[attr-defined]
                route.continue_()  # type: ignore[attr-defined]
                return
            response = route.fetch(max_redirects=0)  # type: ignore[attr-defined]
            headers = {**response.headers, "content-security-policy": policy}
            route.fulfill(response=response, headers=headers)  # type: ignore[attr-defined]

        context.route("**/*", as_nginx_serves_it)
        context.add_init_script(WATCH)
        try:
            yield context
        finally:
            context.close()


def _sign_in(page: object, base: str, username: str) -> None:
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.get_by_label("Username").fill(username)  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(DEMO_PASSWORD)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}/")  # type: ignore[attr-defined]


def _violations(page: object) -> list[str]:
    return list(page.evaluate("window.__violations"))  # type: ignore[attr-defined]


@pytest.mark.parametrize("username", ["admin", "hugo"])
def test_every_page_works_under_the_nginx_policy(hub: Proc, browser: object, username: str) -> None:
    base = hub.url  # type: ignore[attr-defined]
    page = browser.new_page()  # type: ignore[attr-defined]
    _sign_in(page, base, username)
    # htmx ran (the policy let its file load) and its live stream connected (connect-src).
    page.wait_for_function("typeof htmx === 'object'")
    page.wait_for_selector("[sse-connect]")
    page.wait_for_function(
        "document.querySelector('[sse-connect]')['htmx-internal-data']?.sseEventSource"
        "?.readyState === 1"
    )
    links = page.eval_on_selector_all("nav a[href]", "links => links.map(a => a.pathname)")
    assert "/web/machines" in links
    seen = {"/": _violations(page)}
    for path in [*links, "/web/account", "/web/machines/laser-1"]:
        page.goto(f"{base}{path}")
        seen[path] = _violations(page)
    # The page with the most inline markup before: a new token shown in a field that
    # selects itself when focused (an inline handler then, a script file now).
    page.goto(f"{base}/web/account")
    page.get_by_label("What it is for").fill("csp test")
    page.get_by_role("button", name="Create a token").click()
    page.wait_for_load_state()
    page.locator("#secret").blur()
    page.locator("#secret").focus()
    selected = page.evaluate(
        "document.activeElement.selectionEnd - document.activeElement.selectionStart"
    )
    seen["/web/account (token)"] = _violations(page)
    assert {path: found for path, found in seen.items() if found} == {}
    assert selected == len(page.locator("#secret").input_value())
