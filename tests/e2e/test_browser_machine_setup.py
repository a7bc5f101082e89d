"""Issue 24's acceptance in a real browser: a fab manager adds a 3D printer through the web
against a real OctoPrint virtual printer, starts its agent with the config the page gives, sees
the setup check go from red to green, and the first print shows "printing" with its progress.

`atelier hub serve` as a subprocess writes the broker's password file and ACL and reloads the
real Mosquitto; the agent runs with the downloaded edge.toml (a test bench's GPIO and reader).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session

from edge.agent import Agent
from edge.config import parse_config
from edge.integrations.octoprint import OctoPrintClient
from hub.billing_store import BillingRate
from hub.core.db import make_engine, migrate
from hub.demo.seed import DEMO_PASSWORD, seed_demo, seed_demo_users
from hub.services.broker_accounts import write_credentials
from tests.e2e.test_browser import browser  # noqa: F401 - Debian's chromium, the fixture
from tests.integration.test_octoprint import gcode, octoprint  # noqa: F401 - the fixture
from tests.support import octoprint as support
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MOSQUITTO_HINT, MosquittoBroker, find_binary
from tests.support.processes import Proc, wait_until

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")
HUGO = "04C3D4E5"  # trained on the printers in the demo data
HUB_PASSWORD = "hub-secret-for-tests"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, Proc]]:
    """The demo lab (printer type with a trainer and trainees, a rate), its own broker whose
    accounts the hub writes and reloads, and `atelier hub serve`."""
    if find_binary("mosquitto") is None:
        pytest.skip(MOSQUITTO_HINT)
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        seed_demo_users(session)
        session.add(
            BillingRate(machine_type="printer", category="individual",
                        effective_from=date(2026, 1, 1), cents_per_hour=300)
        )  # fmt: skip
        session.commit()
    passwd, acl, secrets = tmp_path / "passwd", tmp_path / "acl", tmp_path / "agents"
    write_credentials(
        engine, password_file=passwd, acl_file=acl, secrets_dir=secrets, hub_user="hub",
        hub_password=HUB_PASSWORD, file_mode=0o600,
    )  # fmt: skip
    engine.dispose()
    broker = MosquittoBroker(tmp_path / "broker", password_file=passwd, acl_file=acl)
    broker.hub_password = HUB_PASSWORD
    broker.start()
    assert broker.process is not None
    settings = HubSettings(
        tmp_path / "hub",
        url,
        "lab",
        broker,
        extra_env={
            "ATELIER_MQTT_SECRETS_DIR": str(secrets),
            "ATELIER_MQTT_PASSWORD_FILE": str(passwd),
            "ATELIER_MQTT_ACL_FILE": str(acl),
            "ATELIER_MQTT_RELOAD_COMMAND": f"kill -HUP {broker.process.pid}",
        },
    )
    process = start_hub(settings, log=tmp_path / "hub.log")
    try:
        yield settings.url, process
    finally:
        process.stop()
        broker.stop()


def test_a_printer_added_on_the_web_goes_green_as_its_agent_starts_and_shows_its_print(
    hub: tuple[str, Proc],
    browser: object,  # noqa: F811 - the fixture imported above
    octoprint: support.OctoPrintServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    http, process = hub
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{http}/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{http}/")
    page.goto(f"{http}/web/machines")
    page.get_by_role("link", name="Add a machine").click()
    page.get_by_label("Short code").fill("printer-3")
    page.get_by_label("Name").fill("Prusa MK4 #3")
    page.get_by_label("Machine type").select_option("printer")  # the kind: its type's
    page.get_by_label("Badge reader").select_option("keyboard")
    page.get_by_label("OctoPrint address").fill(octoprint.url)
    page.get_by_label("OctoPrint application key").fill("NOT" + octoprint.api_key)
    page.get_by_role("button", name="Add the machine").click()
    # Checked at once: OctoPrint refused the key, said under the key's field.
    refusal = page.locator("#octoprint_api_key-error")
    refusal.wait_for()
    assert "refused this key" in refusal.inner_text()
    page.get_by_label("OctoPrint application key").fill(octoprint.api_key)
    page.get_by_role("button", name="Add the machine").click()
    page.wait_for_url(f"{http}/web/machines/printer-3/setup")
    assert page.locator('[data-check="agent_never_connected"]').count() == 1
    assert page.locator('[data-ready="no"]').count() == 1
    assert page.locator('[data-check="octoprint_ok"]').count() == 1

    # The agent's files, as the page offers them.
    config = tomllib.loads(page.request.get(f"{http}/web/machines/printer-3/agent.toml").text())
    password = page.request.get(f"{http}/web/machines/printer-3/mqtt-password").text().strip()
    key = page.request.get(f"{http}/web/machines/printer-3/octoprint-api-key").text().strip()
    assert config["octoprint"]["url"] == octoprint.url and key == octoprint.api_key
    # A test bench instead of a Pi: mock GPIO, a simulated reader, files under tmp_path.
    config["gpio"]["pin_factory"] = "mock"
    config["reader"] = {"type": "sim"}
    config["agent"]["state_dir"] = str(tmp_path / "agent")
    config["agent"]["heartbeat_s"] = 1
    config["mqtt"]["password"] = password
    (tmp_path / "octoprint-api-key").write_text(key + "\n")
    config["octoprint"] |= {
        "api_key_file": str(tmp_path / "octoprint-api-key"),
        "poll_interval_s": 0.3,
        "telemetry_min_interval_s": 0,
    }
    agent = Agent(parse_config(config))
    agent.start()
    try:
        # Red to green without reloading: the page asks for the check every 3 s.
        page.locator('[data-ready="yes"]').wait_for(timeout=60_000)
        assert page.locator('[data-check="agent_online"]').count() == 1
        assert page.locator('[data-check="acl_current"]').count() == 1
        assert page.locator(".blocking").count() == 0
        assert agent.tap(HUGO)["decision"] == "granted"
        OctoPrintClient(octoprint.url, octoprint.api_key, timeout_s=5).upload_and_print(
            gcode(tmp_path / "first.gcode", dwells=150)
        )
        card = page.locator("article.state-printing:has(#name-printer-3)")

        def shown() -> bool:
            page.goto(f"{http}/")
            return card.count() == 1 and card.locator("progress").count() == 1

        wait_until(shown, timeout=60, what="printer-3 printing with progress", proc=process)
        assert "Printing" in card.locator(".label").inner_text()
    finally:
        agent.stop()
