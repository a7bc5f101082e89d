"""The web app in a real browser (Debian's chromium through Playwright) against a running
`atelier hub serve`, a real Mosquitto and a simulated laser cutter's agent.

Set ATELIER_SCREENSHOTS=docs/images to refresh the README's screenshots.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session, select

from edge.hardware.sim_reader import request
from hub.auth import create_user
from hub.core.db import make_engine, migrate
from hub.demo.seed import DEMO_PASSWORD, seed_demo, seed_demo_users
from hub.models import BusyPeriod, MachineSession, Member, Role, Training
from hub.services.maintenance.tasks import add_task
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import Proc, atelier_command, wait_until

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HUGO_BADGE = "04C3D4E5"  # Hugo Petit, trained on the laser in the demo data
WAIT_MS = 15_000


@dataclass
class Lab:
    http: str
    hub: Proc
    agent_config: Path
    database_url: str


def _history(session: Session, rng: random.Random) -> None:
    """Ten weeks of past sessions, busier on weekday afternoons, for the statistics."""
    members = [m.ref for m in session.exec(select(Member))]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for n in range(160):
        day = today - timedelta(days=rng.randint(1, 70))
        hour = rng.choice([10, 11, 14, 14, 15, 15, 16, 16, 17, 18, 19])
        start = day + timedelta(hours=hour - 1, minutes=rng.randint(0, 59))
        minutes = rng.randint(15, 150)
        machine = rng.choice(["laser-1", "printer-1", "printer-2", "cnc-1", "laser-1"])
        ref = rng.choice(members)
        session.add(
            MachineSession(
                id=f"history-{n}",
                site="lab",
                machine=machine,
                member_ref=ref,
                started_at=start,
                ended_at=start + timedelta(minutes=minutes),
                end_reason="badge-out",
                duration_s=minutes * 60.0,
            )
        )
        session.add(
            BusyPeriod(
                site="lab",
                machine=machine,
                source="test",
                session_id=f"history-{n}",
                member_ref=ref,
                started_at=start + timedelta(minutes=5),
                ended_at=start + timedelta(minutes=minutes * 0.8),
                busy_s=minutes * 60 * 0.75,
            )
        )


@pytest.fixture
def lab(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[Lab]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is needed for the browser tests: apt-get install chromium")
    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        seed_demo_users(session)
        camille = session.exec(select(Member).where(Member.email == "camille@example.org")).one()
        # Camille maintains the CNC: her maintainer login signs its work off.
        create_user(
            session,
            username="maxime",
            password=DEMO_PASSWORD,
            role=Role.MAINTAINER,
            member=camille,
        )
        add_task(session, title="Clean the spindle", actor="test", machine="cnc-1", every_days=1)
        _history(session, random.Random(7))
        session.commit()
    engine.dispose()
    settings = HubSettings(tmp_path / "hub", database_url, "lab", mosquitto)
    public_key = settings.public_key()
    user, password = mosquitto.agent_credentials("laser-1")
    config = tmp_path / "laser-1.toml"
    config.write_text(f"""
[agent]
site = "lab"
machine = "laser-1"
machine_type = "laser"
state_dir = "{tmp_path / "agent"}"
hub_public_key = "{public_key}"
heartbeat_s = 2
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
username = "{user}"
[gpio]
pin_factory = "mock"
[relay]
pin = 17
[reader]
type = "sim"
""")
    hub = start_hub(settings, log=tmp_path / "hub.log")
    agent = None
    try:
        agent = Proc(
            ["edge", "run", "--config", str(config)],
            log=tmp_path / "agent.log",
            env={"ATELIER_EDGE_MQTT_PASSWORD": password},
        )
        wait_until(
            lambda: request(tmp_path / "agent" / "sim-reader.sock", {"op": "state"})["acl_version"],
            timeout=30,
            what="the agent to receive its signed allow-list",
            proc=agent,
        )
        yield Lab(settings.url, hub, config, database_url)
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """Debian's chromium, headless, with a fresh profile; never a downloaded browser."""
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 900},
            locale="en-GB",
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


def tap(lab: Lab, uid: str) -> dict:
    out = subprocess.run(
        [*atelier_command(), "edge", "tap", "--config", str(lab.agent_config), "--uid", uid],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def sign_in(page: object, lab: Lab, username: str) -> None:
    page.goto(f"{lab.http}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{lab.http}/")


def keep(path: Path, name: str) -> None:
    target = os.environ.get("ATELIER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)


def printing(lab: Lab, broker: MosquittoBroker) -> None:
    """printer-1's status (online, busy, Léa's session) and telemetry, on its own account."""
    engine = make_engine(lab.database_url)
    try:
        with Session(engine) as session:
            lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
    finally:
        engine.dispose()
    user, password = broker.agent_credentials("printer-1")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="printer-1")
    client.username_pw_set(user, password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        now = datetime.now(UTC).isoformat()
        status = {
            "v": 1,
            "machine": "printer-1",
            "state": "online",
            "busy": True,
            "session": {"session_id": "p1", "member": lea.ref, "badge": "04B2C3D4"},
        }
        telemetry = {
            "v": 1,
            "machine": "printer-1",
            "ts": now,
            "values": {
                "progress": 42.5,
                "tool0_actual": 209.8,
                "tool0_target": 210.0,
                "bed_actual": 60.1,
                "bed_target": 60.0,
                "print_time_left_s": 2520,
            },
        }
        root = "atelier/v1/lab/printer-1"
        client.publish(f"{root}/status", json.dumps(status), qos=1, retain=True).wait_for_publish(5)
        client.publish(f"{root}/telemetry", json.dumps(telemetry), qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_manager_watches_a_machine_go_busy_live_and_exports_usage(
    lab: Lab, browser: object, tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    expect = playwright_api.expect
    page = browser.new_page()
    sign_in(page, lab, "manager")
    card = page.locator("#card-laser-1")
    expect(card.locator(".state")).to_contain_text("Free")
    # A mark on the window: it survives only if the page is never reloaded.
    page.evaluate("window.__notReloaded = true")
    # A printer's agent reports a print under way (as its OctoPrint watcher does).
    printing(lab, mosquitto)
    printer = page.locator("#card-printer-1")
    expect(printer.locator(".state")).to_contain_text("Printing 42 %")
    expect(printer.locator("progress")).to_have_attribute("value", "42.5")
    expect(printer).to_contain_text("42 min left")
    expect(printer).to_contain_text("Léa Bernard")
    expect(printer.locator(".temps")).to_contain_text("210")
    assert tap(lab, HUGO_BADGE)["decision"] == "granted"
    expect(card.locator(".state")).to_contain_text("In use")
    expect(card.locator(".who")).to_contain_text("Hugo Petit")
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator("#today")).to_contain_text("laser-1")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, "dashboard.png")

    page.get_by_role("link", name="Statistics").click()
    expect(page.get_by_role("heading", name="Hours by hour of the week")).to_be_visible()
    expect(page.locator("table.heatmap")).to_be_visible()
    shot = tmp_path / "statistics.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, "statistics.png")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    csv_path = tmp_path / "usage.csv"
    download.value.save_as(str(csv_path))
    text = csv_path.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].count(",") >= 2 and "laser-1" in text
    assert tap(lab, HUGO_BADGE)["decision"] == "ended"

    # The manager enters a new member from the keyboard alone: labels find the fields, Enter
    # sends the form; a refusal lands next to its field, the corrected form goes through.
    page.get_by_role("link", name="Members").click()
    page.get_by_role("link", name="New member").click()
    page.get_by_label("Name", exact=True).fill("Yanis Caron")
    page.get_by_label("Email").fill("hugo@example.org")
    page.get_by_label("Email").press("Enter")
    expect(page.locator("#email-error")).to_contain_text("another member already has email")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Yanis Caron")
    page.get_by_label("Email").fill("yanis@example.org")
    page.get_by_label("Email").press("Enter")
    expect(page.get_by_role("heading", name="Yanis Caron")).to_be_visible()
    expect(page.get_by_role("link", name="Edit this member")).to_be_visible()


def test_a_trainer_certifies_in_two_clicks_and_a_maintainer_signs_off(
    lab: Lab, browser: object
) -> None:
    expect = playwright_api.expect
    page = browser.new_page()
    sign_in(page, lab, "camille")
    page.get_by_role("link", name="Trainings").click()
    page.get_by_label("Find a member (name or email)").fill("Nathan")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Nathan Roux").click()  # click 1: the member
    page.get_by_role("button", name="Certify on Laser cutter").click()  # click 2
    expect(page.locator(".notice")).to_contain_text("Nathan Roux is certified to use the Laser")
    engine = make_engine(lab.database_url)
    try:
        with Session(engine) as session:
            nathan = session.exec(select(Member).where(Member.email == "nathan@example.org")).one()
            trainings = session.exec(select(Training).where(Training.member_id == nathan.id)).all()
            assert [t.granted_by_id is not None for t in trainings] == [True]
    finally:
        engine.dispose()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{lab.http}/login")
    sign_in(page, lab, "maxime")
    page.get_by_role("link", name="Maintenance").click()
    row = page.get_by_role("row").filter(has_text="Clean the spindle")
    row.get_by_label("What was done").fill("spindle cleaned, collet checked")
    row.get_by_role("button", name="Sign off").click()
    expect(page.locator(".notice")).to_contain_text("Shapeoko 4: signed off")
    signed = page.get_by_role("row").filter(has_text="Clean the spindle")
    expect(signed.locator("td.status-ok")).to_have_count(1)


def test_a_member_has_no_members_page(lab: Lab, browser: object) -> None:
    expect = playwright_api.expect
    page = browser.new_page()
    sign_in(page, lab, "hugo")
    nav = page.get_by_role("navigation", name="Main menu")
    expect(nav.get_by_role("link", name="My page")).to_be_visible()
    expect(nav.get_by_role("link", name="Members")).to_have_count(0)
    answer = page.goto(f"{lab.http}/web/members")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("alert")).to_contain_text("not open to your role")
