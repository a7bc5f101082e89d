"""An overdue critical task locks the machine at the agent; the maintainer's sign-off unlocks it.

Real Mosquitto, the hub's real ingest and allow-list publisher, a real agent on gpiozero's
mock pins: the busy hours come from the machine's busy input, through the broker, into rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from edge.agent import Agent
from edge.config import parse_config
from hub.maintenance_watch import MaintenanceWatch
from hub.models import (
    AuditEntry,
    BusyPeriod,
    Downtime,
    DowntimeCause,
    Incident,
    Machine,
    MaintenanceSignOff,
)
from tests.integration.test_admin_commands import hub_env  # noqa: F401
from tests.integration.test_agent_offline import Hub, hub  # noqa: F401
from tests.support.processes import wait_until

runner = CliRunner()
INES = "04E5F607"  # a plain CNC user in the demo data
CAMILLE = "04A1B2C3"  # maintainer of the CNC
BUSY_PIN, BUTTON_PIN = 22, 23


@pytest.fixture
def cnc(hub_env: Hub) -> Iterator[tuple[Agent, MockFactory]]:  # noqa: F811
    config = parse_config(
        hub_env.agent_config(
            "cnc-1",
            busy_input={"pin": BUSY_PIN, "pull_up": False, "bounce_s": 0},
            incident_button={"pin": BUTTON_PIN, "pull_up": True, "bounce_s": 0},
        )
    )
    factory = MockFactory()
    agent = Agent(config, pin_factory=factory)
    agent.start()
    try:
        wait_until(lambda: agent.state()["acl_version"], timeout=15, what="cnc-1's allow-list")
        yield agent, factory
    finally:
        agent.stop()
        factory.reset()


def _busy_hours(lab: Hub) -> float:
    with Session(lab.engine) as session:
        rows = session.exec(select(BusyPeriod).where(BusyPeriod.machine == "cnc-1")).all()
        return sum(r.busy_s or 0 for r in rows) / 3600


def _machine(lab: Hub) -> Machine:
    with Session(lab.engine) as session:
        machine = session.exec(select(Machine).where(Machine.code == "cnc-1")).one()
        session.expunge(machine)
        return machine


def _work(agent: Agent, factory: MockFactory, seconds: float) -> None:
    """Inès badges in, the spindle turns for `seconds`, she badges out."""
    assert agent.tap(INES)["decision"] == "granted"
    factory.pin(BUSY_PIN).drive_high()
    wait_until(lambda: agent.state()["busy"], timeout=5, what="the machine busy")
    time.sleep(seconds)
    factory.pin(BUSY_PIN).drive_low()
    wait_until(lambda: not agent.state()["busy"], timeout=5, what="the machine idle")
    assert agent.tap(INES)["decision"] == "ended"


def test_an_overdue_critical_task_locks_the_machine_until_a_maintainer_signs_it_off(
    hub_env: Hub,  # noqa: F811
    cnc: tuple[Agent, MockFactory],
) -> None:
    agent, factory = cnc
    # 2 s of spindle time is 0.00056 h: a task every 0.0004 busy hours is then overdue.
    added = runner.invoke(
        app,
        [
            "hub", "maintenance", "task", "add", "--title", "spindle bearing grease",
            "--machine", "cnc-1", "--every-hours", "0.0004", "--critical",
        ],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "cnc-1: ok" in added.output
    watch = MaintenanceWatch(
        hub_env.engine, hub_env.publisher.publish, period_s=0.3, first_after_s=0
    )
    watch.start()
    try:
        time.sleep(0.6)
        assert not agent.state()["locked"], "nothing is overdue yet"
        _work(agent, factory, 2.0)
        wait_until(
            lambda: _busy_hours(hub_env) > 0.0004, timeout=15, what="the busy period at the hub"
        )
        wait_until(lambda: agent.state()["locked"], timeout=10, what="the lockout at the agent")
        reply = agent.tap(INES)
        assert reply["decision"] == "denied" and reply["reason"] == "locked_out"
        machine = _machine(hub_env)
        assert machine.locked and "spindle bearing grease" in (machine.lock_reason or "")
        with Session(hub_env.engine) as session:
            downtime = session.exec(select(Downtime)).one()
            assert downtime.cause is DowntimeCause.MAINTENANCE and downtime.ended_at is None
            lock_audit = session.exec(
                select(AuditEntry).where(AuditEntry.action == "machine.lock")
            ).one()
            assert lock_audit.entity_id == "cnc-1" and lock_audit.actor == "hub:maintenance-check"

        refused = runner.invoke(
            app,
            ["hub", "maintenance", "sign-off", "1", "--by", "ines@example.org", "--note", "done"],
        )
        assert refused.exit_code == 2
        assert refused.output.startswith("--by: ")  # the service's field, as the CLI's flag
        assert "no valid maintainer training for cnc" in refused.output
        assert "Traceback" not in refused.output
        assert agent.tap(INES)["reason"] == "locked_out"

        signed = runner.invoke(
            app,
            [
                "hub", "maintenance", "sign-off", "1", "--by", "camille@example.org",
                "--note", "greased, bearing quiet",
            ],
        )  # fmt: skip
        assert signed.exit_code == 0, signed.output
        assert "cnc-1 unlocked" in signed.output and "published 1 allow-list(s)" in signed.output
        wait_until(lambda: not agent.state()["locked"], timeout=10, what="the unlock at the agent")
        # The periodic check keeps running: the reset counter keeps the machine open.
        time.sleep(0.8)
        assert not agent.state()["locked"]
        assert agent.tap(INES)["decision"] == "granted"
        agent.tap(INES)
        with Session(hub_env.engine) as session:
            sign_off = session.exec(select(MaintenanceSignOff)).one()
            assert sign_off.counter_hours == pytest.approx(_busy_hours(hub_env))
            assert sign_off.note == "greased, bearing quiet"
            downtime = session.exec(select(Downtime)).one()
            assert downtime.ended_at is not None and downtime.ended_at > downtime.started_at
    finally:
        watch.stop()


def test_the_incident_button_opens_a_ticket_at_the_hub(
    hub_env: Hub,  # noqa: F811
    cnc: tuple[Agent, MockFactory],
) -> None:
    agent, factory = cnc
    assert agent.tap(INES)["decision"] == "granted"
    button = factory.pin(BUTTON_PIN)
    button.drive_low()  # pulled up: pressing connects to ground
    button.drive_high()

    def tickets() -> list[Incident]:
        with Session(hub_env.engine) as session:
            return list(session.exec(select(Incident)).all())

    wait_until(lambda: tickets(), timeout=15, what="the incident ticket at the hub")
    (ticket,) = tickets()
    assert ticket.source == "button" and ticket.closed_at is None
    assert ticket.reported_by_ref is not None and ticket.reported_by_ref.startswith("m-")
    listed = runner.invoke(app, ["hub", "incident", "list"])
    assert listed.exit_code == 0 and "cnc-1" in listed.output and "button" in listed.output
    closed = runner.invoke(
        app, ["hub", "incident", "close", str(ticket.id), "--note", "loose plug"]
    )
    assert closed.exit_code == 0, closed.output
    assert tickets()[0].resolution == "loose plug"
    agent.tap(INES)
