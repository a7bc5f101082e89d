"""Issue 21 item 5 on a real OctoPrint virtual printer, a real agent, Mosquitto and the hub's
ingest: a member badges out while their print goes on and the statement bills the whole print
on a busy-time rate; a print lost when the printer drops off OctoPrint is recorded as
`printer-offline` and billed as the lab chose."""

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
from hub.models import Badge, BusyPeriod, MachineSession, Member, PrintJob
from hub.services.billing import (
    close_month,
    lines_of,
    month_statements,
    save_rate,
    set_offline_jobs,
)
from tests.integration.test_agent_offline import HUGO, Hub, hub  # noqa: F401
from tests.integration.test_octoprint import gcode, octoprint  # noqa: F401
from tests.support import octoprint as support
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow
PARIS = ZoneInfo("Europe/Paris")
CENTS_PER_HOUR = 6000  # one euro a minute: the cents say the minutes


def printer_agent(lab: Hub, server: support.OctoPrintServer) -> Agent:
    config = lab.agent_config(
        "printer-1",
        octoprint={
            "url": server.url,
            "api_key": server.api_key,
            "poll_interval_s": 0.3,
            "telemetry_min_interval_s": 0,
        },
    )
    agent = Agent(parse_config(config))
    agent.start()
    wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the allow-list")
    return agent


def busy_rate_for_hugo(lab: Hub) -> str:
    """A busy-time printer rate for Hugo's category; his member ref."""
    with Session(lab.engine) as session:
        hugo = session.exec(select(Member).join(Badge).where(Badge.uid == HUGO)).one()
        save_rate(
            session,
            values={
                "machine_type": "printer",
                "category": hugo.category.value,
                "effective_from": "2020-01-01",
                "cents_per_hour": str(CENTS_PER_HOUR),
                "basis": "busy",
            },
            actor="test",
        )
        session.commit()
        return hugo.ref


def close_and_read(lab: Hub, member_ref: str) -> tuple[float, float, int, int, str]:
    """Close the month of Hugo's session: (its length, its busy period's seconds, billed
    minutes, cents, explanation) of his statement line."""
    with Session(lab.engine) as session:
        row = session.exec(
            select(MachineSession).where(MachineSession.member_ref == member_ref)
        ).one()
        period = session.exec(select(BusyPeriod).where(BusyPeriod.session_id == row.id)).one()
        assert row.started_at is not None and row.duration_s is not None
        assert period.busy_s is not None
        length, busy, sid = row.duration_s, period.busy_s, row.id
        month = row.started_at.astimezone(PARIS).strftime("%Y-%m")
        after = datetime.now(UTC) + timedelta(days=40)
        close_month(session, month, tz=PARIS, now=after, actor="test")
        session.commit()
        (line,) = [
            line
            for statement in month_statements(session, month)
            for line in lines_of(session, statement)
            if line.session_id == sid
        ]
        return length, busy, line.billed_minutes, line.cents, line.explanation


def test_a_member_badges_out_and_the_statement_bills_the_whole_print(
    hub: Hub,  # noqa: F811 - the fixture imported above
    octoprint: support.OctoPrintServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    member_ref = busy_rate_for_hugo(hub)
    agent = printer_agent(hub, octoprint)
    try:
        assert agent.tap(HUGO)["decision"] == "granted"
        # 400 dwells of 0.2 s: a print of over a minute and a quarter.
        OctoPrintClient(octoprint.url, octoprint.api_key, timeout_s=5).upload_and_print(
            gcode(tmp_path / "bracket.gcode", dwells=400)
        )
        wait_until(lambda: agent.state()["busy"], timeout=20, what="the printer busy")
        assert agent.tap(HUGO)["decision"] == "ended"  # he leaves; the print goes on

        def done() -> BusyPeriod | None:
            with Session(hub.engine) as session:
                return session.exec(
                    select(BusyPeriod).where(col(BusyPeriod.busy_s).is_not(None))
                ).first()

        wait_until(done, timeout=180, what="the print's busy period closed at the hub")
    finally:
        agent.stop()
    with Session(hub.engine) as session:
        job = session.exec(select(PrintJob)).one()
        assert job.state == "finished" and job.end_reason == "completed"
    length, busy, billed, cents, explanation = close_and_read(hub, member_ref)
    assert busy > 60 and length < 30
    # Every started minute of the print, not the minute he stood there.
    assert billed == math.ceil(busy / 60) > math.ceil(length / 60)
    assert cents == billed * CENTS_PER_HOUR // 60
    assert f"{billed} min of busy time" in explanation


@pytest.mark.parametrize("choice", ["whole", "free"])
def test_a_print_lost_with_the_printer_is_recorded_as_such_and_billed_as_the_lab_chose(
    hub: Hub,  # noqa: F811 - the fixture imported above
    octoprint: support.OctoPrintServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    choice: str,
) -> None:
    member_ref = busy_rate_for_hugo(hub)
    with Session(hub.engine) as session:
        set_offline_jobs(session, machine_type="printer", choice=choice, actor="test")
        session.commit()
    headers = {"X-Api-Key": octoprint.api_key}
    agent = printer_agent(hub, octoprint)
    try:
        assert agent.tap(HUGO)["decision"] == "granted"
        OctoPrintClient(octoprint.url, octoprint.api_key, timeout_s=5).upload_and_print(
            gcode(tmp_path / "lost.gcode", dwells=600)
        )
        wait_until(lambda: agent.state()["busy"], timeout=20, what="the printer busy")
        time.sleep(3)  # a few seconds of printing, seen by several polls
        # The printer drops off OctoPrint's serial link mid-print (a cable, a reset).
        requests.post(
            f"{octoprint.url}/api/connection",
            headers=headers,
            json={"command": "disconnect"},
            timeout=5,
        ).raise_for_status()

        def failed() -> PrintJob | None:
            with Session(hub.engine) as session:
                return session.exec(select(PrintJob).where(PrintJob.state == "failed")).first()

        job = wait_until(failed, timeout=30, what="the lost job at the hub")
        wait_until(lambda: not agent.state()["busy"], timeout=10, what="the printer idle")
        assert agent.tap(HUGO)["decision"] == "ended"
        wait_until(lambda: _ended(hub, member_ref), timeout=15, what="the session's end at the hub")
    finally:
        agent.stop()
        requests.post(
            f"{octoprint.url}/api/connection",
            headers=headers,
            json={"command": "connect", "port": "VIRTUAL", "autoconnect": True},
            timeout=5,
        )
        wait_until(
            lambda: OctoPrintClient(octoprint.url, octoprint.api_key).poll().state == "Operational",
            timeout=60,
            what="the virtual printer back",
        )
    assert job is not None
    assert job.end_reason == "printer-offline" and job.error == "printer-offline"
    assert job.duration_s is not None and job.printing_seen_s is not None
    assert 2 < job.printing_seen_s <= job.duration_s
    _, busy, billed, cents, explanation = close_and_read(hub, member_ref)
    assert busy > 2
    if choice == "whole":  # billing counts whole seconds, then started minutes
        assert billed == math.ceil(round(busy) / 60) == 1 and cents == 100
    else:
        assert (billed, cents, explanation) == (0, 0, "Nothing to bill: no busy time")


def _ended(lab: Hub, member_ref: str) -> bool:
    with Session(lab.engine) as session:
        row = session.exec(
            select(MachineSession).where(MachineSession.member_ref == member_ref)
        ).one()
        return row.ended_at is not None
