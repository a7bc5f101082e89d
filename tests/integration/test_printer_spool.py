"""Issue 21 acceptance on a real OctoPrint virtual printer, a real agent, Mosquitto and the hub's
ingest: badge, tap a spool, print; the statement shows the grams and their price, and the
spool's remaining weight goes down by the same amount. And a spool's tag tapped first never
opens the printer."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlmodel import Session, col, select

from edge.agent import Agent
from edge.config import parse_config
from edge.integrations.octoprint import OctoPrintClient
from hub.models import MachineSession, MaterialUse, PrintJob, Spool
from hub.services.billing import close_month, lines_of, month_statements
from hub.services.materials import add_material, add_spool, spool_history
from tests.integration.test_agent_offline import HUGO, Hub, hub  # noqa: F401
from tests.integration.test_octoprint import octoprint  # noqa: F401
from tests.integration.test_printer_run_on import busy_rate_for_hugo
from tests.support import octoprint as support
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow
PARIS = ZoneInfo("Europe/Paris")
TAG = "5F00AA11"
PLA_CENTS_PER_KG = 2500
DIAMETER, DENSITY = 1.75, 1.24


def extruding_gcode(path: Path, moves: int) -> Path:
    """A print that extrudes 20 mm of filament per move, for OctoPrint's analysis to measure."""
    lines = ["M104 S205", "M140 S60", "G28", "G90", "M82", "G92 E0"]
    for i in range(1, moves + 1):
        lines.append(f"G1 X{10 + i % 50} Y{10 + i % 30} E{20 * i} F1200")
        lines.append("G4 P150")
    lines += ["M104 S0", "M140 S0"]
    path.write_text("\n".join(lines) + "\n")
    return path


def analysed_length(server: support.OctoPrintServer, name: str) -> float:
    headers = {"X-Api-Key": server.api_key}

    def length() -> float | None:
        info = requests.get(
            f"{server.url}/api/files/local/{name}", headers=headers, timeout=5
        ).json()
        filament = (info.get("gcodeAnalysis") or {}).get("filament") or {}
        tool = filament.get("tool0") or {}
        return tool.get("length")

    return float(wait_until(length, timeout=60, what="OctoPrint's analysis of the file"))


def printer_agent(lab: Hub, server: support.OctoPrintServer, spool_mode: str) -> Agent:
    config = lab.agent_config(
        "printer-1",
        octoprint={
            "url": server.url,
            "api_key": server.api_key,
            "poll_interval_s": 0.3,
            "telemetry_min_interval_s": 0,
        },
    )
    config["session"] = {"spool": spool_mode}
    agent = Agent(parse_config(config))
    agent.start()
    wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the allow-list")
    return agent


def pla_spool(lab: Hub) -> None:
    with Session(lab.engine) as session:
        add_material(
            session,
            code="pla-black",
            name="PLA black",
            kind="PLA",
            unit="gram",
            cents_per_price_unit=PLA_CENTS_PER_KG,
            diameter_mm=DIAMETER,
            density_g_cm3=DENSITY,
            actor="test",
        )
        add_spool(
            session,
            material="pla-black",
            code="pla-black-07",
            tag=TAG,
            weight_g=1000,
            location="shelf B",
            actor="test",
        )
        session.commit()
    lab.publisher.publish()  # the lists now carry the spool's tag


def test_a_spool_tag_tapped_first_never_opens_the_printer(
    hub: Hub,  # noqa: F811 - the fixture imported above
    octoprint: support.OctoPrintServer,  # noqa: F811 - the fixture imported above
) -> None:
    pla_spool(hub)
    agent = printer_agent(hub, octoprint, "required")
    try:
        wait_until(
            lambda: agent.allowlist is not None and agent.allowlist.is_spool(TAG),
            timeout=15,
            what="the list with the spool's tag",
        )
        answer = agent.tap(TAG)
        assert answer["decision"] == "denied" and answer["reason"] == "spool_tag"
        assert answer["relay"] == "open" and answer["relay_pin"] == 0
        assert agent.state()["session"] is None
        # Required: the badge alone does not power the printer; the spool after it does.
        granted = agent.tap(HUGO)
        assert granted["decision"] == "granted" and granted["relay_pin"] == 0
        spool = agent.tap(TAG)
        assert spool["decision"] == "spool" and spool["relay_pin"] == 1
    finally:
        agent.stop()


def test_badge_spool_print_bills_the_grams_and_takes_them_off_the_spool(
    hub: Hub,  # noqa: F811 - the fixture imported above
    octoprint: support.OctoPrintServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    member_ref = busy_rate_for_hugo(hub)
    pla_spool(hub)
    client = OctoPrintClient(octoprint.url, octoprint.api_key, timeout_s=5)
    path = extruding_gcode(tmp_path / "hook.gcode", moves=60)
    client._rest.upload(str(path))
    length_mm = analysed_length(octoprint, path.name)
    assert length_mm > 1000  # 60 moves of 20 mm
    agent = printer_agent(hub, octoprint, "optional")
    try:
        wait_until(
            lambda: agent.allowlist is not None and agent.allowlist.is_spool(TAG),
            timeout=15,
            what="the list with the spool's tag",
        )
        assert agent.tap(HUGO)["decision"] == "granted"
        assert agent.tap(TAG)["decision"] == "spool"
        client._rest.select(path.name)
        client._rest.start()

        def finished() -> PrintJob | None:
            with Session(hub.engine) as session:
                return session.exec(select(PrintJob).where(PrintJob.state == "finished")).first()

        wait_until(finished, timeout=120, what="the finished print at the hub")
        time.sleep(0.5)
        assert agent.tap(HUGO)["decision"] == "ended"
        wait_until(lambda: _ended(hub, member_ref), timeout=15, what="the session's end at the hub")
    finally:
        agent.stop()
    expected_g = round(math.pi * (DIAMETER / 2) ** 2 * length_mm / 1000 * DENSITY, 1)
    with Session(hub.engine) as session:
        use = session.exec(select(MaterialUse)).one()
        spool = session.exec(select(Spool).where(Spool.code == "pla-black-07")).one()
        row = session.exec(
            select(MachineSession).where(col(MachineSession.spool_id).is_not(None))
        ).one()
        assert use.quantity == pytest.approx(expected_g) and use.source == "octoprint"
        # The spool lost exactly what the session is billed for.
        assert spool.remaining_g == pytest.approx(1000 - use.quantity)
        _, history = spool_history(session, "pla-black-07")
        assert [(h.session_id, h.member_ref, h.quantity) for h in history] == [
            (row.id, member_ref, use.quantity)
        ]
        assert row.started_at is not None
        grams = use.quantity
        month = row.started_at.astimezone(PARIS).strftime("%Y-%m")
        close_month(
            session, month, tz=PARIS, now=datetime.now(UTC) + timedelta(days=40), actor="test"
        )
        session.commit()
        (line,) = [
            line
            for statement in month_statements(session, month)
            for line in lines_of(session, statement)
        ]
    grams_cents = int(grams * PLA_CENTS_PER_KG / 1000 + 0.5)
    assert grams_cents > 0
    assert f"{grams:g} g of PLA black at 25,00 €/kg" in line.explanation
    time_cents = line.billed_minutes * 100  # the busy rate: one euro a minute
    assert line.cents == time_cents + grams_cents


def _ended(lab: Hub, member_ref: str) -> bool:
    with Session(lab.engine) as session:
        row = session.exec(
            select(MachineSession).where(MachineSession.member_ref == member_ref)
        ).one()
        return row.ended_at is not None
