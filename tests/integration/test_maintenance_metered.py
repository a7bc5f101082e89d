"""Issue 21 item 4: maintenance tasks metered in grams of filament or kWh, on SQLite and
PostgreSQL (the migration adds the counters to PostgreSQL's enum type)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.ingest.writer import IngestWriter
from hub.models import MaintenanceCounter
from hub.services.maintenance.tasks import add_task, task_states
from hub.services.materials import record_use
from tests.integration.test_billing_store import example_lab
from tests.integration.test_materials_store import catalogue
from tests.integration.test_run_on_billing import Agent, november_prints

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        example_lab(session)
        catalogue(session)
        session.commit()
    agent = Agent()
    november_prints(agent)  # N1: 0.25 kWh in session, 1.3 kWh of run-on
    IngestWriter(engine).write_batch(agent.sent)
    yield engine
    engine.dispose()


def test_tasks_come_due_by_the_grams_and_kwh_used_on_the_machine(lab: Engine) -> None:
    with Session(lab) as session:
        add_task(
            session, title="Clean the nozzle", actor="t", machine="printer-1",
            counter=MaintenanceCounter.GRAMS, every_hours=500,
        )  # fmt: skip
        add_task(
            session, title="Check the heater", actor="t", machine="printer-1",
            counter=MaintenanceCounter.KWH, every_hours=1.5,
        )  # fmt: skip
        session.commit()
        record_use(session, session_id="N1", material="pla-black", quantity=420, actor="t")
        record_use(session, session_id="N2", material="plywood-3", quantity=3, actor="t")  # sheets
        session.commit()
        states = {s.task.title: s for s in task_states(session, now=NOW)}
    nozzle, heater = states["Clean the nozzle"], states["Check the heater"]
    assert nozzle.counter_hours == pytest.approx(420)  # the sheets are not grams
    assert nozzle.state.busy_hours_left == pytest.approx(80)
    assert nozzle.state.status.value != "overdue"
    assert heater.counter_hours == pytest.approx(1.55)
    assert heater.state.status.value == "overdue"


def test_cli_takes_the_new_counters_and_refuses_an_unknown_one(
    lab: Engine, database_url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    ok = CliRunner().invoke(
        app,
        ["hub", "maintenance", "task", "add", "--title", "Grease the rails", "--machine",
         "printer-1", "--counter", "grams", "--every-hours", "2000"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(
        app,
        ["hub", "maintenance", "task", "add", "--title", "x", "--machine", "printer-1",
         "--counter", "litres", "--every-hours", "2"],
    )  # fmt: skip
    assert bad.exit_code == 2 and "grams, kwh" in bad.output and "Traceback" not in bad.output
