"""Issue 5 end to end: badge in on a printer, print on a real OctoPrint, find the job and its
busy time, with the member, in the hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from edge.agent import Agent
from edge.config import parse_config
from edge.integrations.octoprint import OctoPrintClient
from hub.models import Badge, BusyPeriod, Member, PrintJob
from tests.integration.test_agent_offline import HUGO, Hub, hub  # noqa: F401
from tests.integration.test_octoprint import gcode, octoprint  # noqa: F401
from tests.support import octoprint as support
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow


def test_a_badged_print_reaches_the_hub_with_its_member(
    hub: Hub,  # noqa: F811 - the fixture imported above
    octoprint: support.OctoPrintServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    config = hub.agent_config(
        "printer-1",
        octoprint={
            "url": octoprint.url,
            "api_key": octoprint.api_key,
            "poll_interval_s": 0.3,
            "telemetry_min_interval_s": 0,
        },
    )
    agent = Agent(parse_config(config))
    agent.start()
    try:
        wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the allow-list")
        assert agent.tap(HUGO)["decision"] == "granted"
        OctoPrintClient(octoprint.url, octoprint.api_key, timeout_s=5).upload_and_print(
            gcode(tmp_path / "clip.gcode", dwells=25)
        )
        wait_until(lambda: agent.state()["busy"], timeout=20, what="the printer busy")
        # The member badges out mid-print: power stays on, the job stays theirs.
        assert agent.tap(HUGO)["decision"] == "ended"
        assert agent.state()["relay_pin"] == 1

        def finished() -> PrintJob | None:
            with Session(hub.engine) as session:
                return session.exec(select(PrintJob).where(PrintJob.state == "finished")).first()

        job = wait_until(finished, timeout=90, what="the finished job at the hub")
        wait_until(
            lambda: agent.state()["relay_pin"] == 0,
            timeout=15,
            what="the power cut once the print is done",
        )
        with Session(hub.engine) as session:
            hugo = session.exec(select(Member).join(Badge).where(Badge.uid == HUGO)).one()
            period = session.exec(select(BusyPeriod).where(BusyPeriod.machine == "printer-1")).one()
        assert job.member_ref == hugo.ref and job.file == "clip.gcode"
        assert job.duration_s is not None and job.duration_s > 3
        assert period.member_ref == hugo.ref and period.busy_s and period.busy_s > 3
    finally:
        agent.stop()
