"""Issue 21 item 3 at the hub, on SQLite and PostgreSQL: the agent's energy fields stored by the
real ingest, the kWh of each session (its run-on included), per machine and month, their cost
and CO2e on the command line, and hostile energy values refused or stored sane."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.ingest.writer import IngestWriter
from hub.models import MachineSession
from hub.services.energy import monthly_energy, session_kwh
from protocol.envelope import EventType
from tests.integration.test_billing_store import example_lab
from tests.integration.test_run_on_billing import PARIS, Agent, paris

runner = CliRunner()


def november_energy(agent: Agent) -> None:
    """bruno's print: 0.2 kWh while he is there, 1.3 kWh after he left; the printer then
    draws 0.05 kWh busy with nobody badged in."""
    agent(paris(10, 10), EventType.SESSION_STARTED, session_id="E1", member="bruno", badge="B1")
    agent(paris(10, 10, 5), EventType.MACHINE_BUSY, source="power", session_id="E1")
    agent(
        paris(10, 10, 15),
        EventType.SESSION_ENDED,
        session_id="E1",
        member="bruno",
        reason="badge-out",
        duration_s=900,
        busy_s=600,
        energy_kwh=0.25,
    )
    agent(
        paris(10, 16, 5),
        EventType.MACHINE_IDLE,
        source="power",
        busy_s=6 * 3600,
        session_id="E1",
        energy_kwh=1.5,
        run_on_energy_kwh=1.3,
    )
    agent(paris(30, 23, 0), EventType.MACHINE_BUSY, source="power")
    agent(paris(30, 23, 30), EventType.MACHINE_IDLE, source="power", busy_s=1800, energy_kwh=0.05)


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        example_lab(session)
    agent = Agent()
    november_energy(agent)
    writer = IngestWriter(engine)
    writer.write_batch(agent.sent)
    assert writer.stats.dead_letters == 0
    yield engine
    engine.dispose()


def test_a_sessions_kwh_include_what_its_print_used_after_it_ended(lab: Engine) -> None:
    with Session(lab) as session:
        row = session.get(MachineSession, "E1")
        assert row is not None and row.energy_kwh == pytest.approx(0.25)
        assert session_kwh(session, ["E1", "S11"]) == {"E1": pytest.approx(1.55)}
        totals = monthly_energy(session, first=date(2026, 11, 1), nxt=date(2026, 12, 1), tz=PARIS)
    assert [(t.month, t.machine, t.machine_type, t.sessions) for t in totals] == [
        ("2026-11", "printer-1", "printer", 1)
    ]
    assert totals[0].kwh == pytest.approx(1.6)
    assert totals[0].outside_sessions_kwh == pytest.approx(0.05)


def test_cli_prints_kwh_cost_and_co2e_naming_the_factors_source(
    lab: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ATELIER_ENERGY_CENTS_PER_KWH", "25")
    result = runner.invoke(app, ["hub", "energy", "--from", "2026-10", "--to", "2026-11"])
    assert result.exit_code == 0, result.output
    assert "2026-11\tprinter-1\tprinter\t1.600\t1\t0.050\t0.08\t0,40 €" in result.output
    assert "CO2e at 0.052 kg/kWh: ADEME Base Empreinte" in result.output
    bad = runner.invoke(app, ["hub", "energy", "--from", "November"])
    assert bad.exit_code == 2 and "--from:" in bad.output and "2026-10" in bad.output
    assert "Traceback" not in bad.output
    monkeypatch.setenv("ATELIER_ENERGY_CO2E_KG_PER_KWH", "nan")
    refused = runner.invoke(app, ["hub", "energy", "--from", "2026-11"])
    assert refused.exit_code == 2 and "energy_co2e_kg_per_kwh" in refused.output


ENERGY = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.001, 1e6, 1e6 + 1, 1e300, float("nan")]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=10),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(energy=ENERGY, run_on=ENERGY)
def test_hostile_energy_is_dead_lettered_or_stored_within_bounds(
    lab: Engine, energy: object, run_on: object
) -> None:
    sid = uuid.uuid4().hex
    agent = Agent()
    agent.seq = 10_000 + abs(hash(sid)) % 10**9
    agent(paris(20, 10), EventType.SESSION_STARTED, session_id=sid, member="bruno", badge="B1")
    agent(
        paris(20, 11),
        EventType.SESSION_ENDED,
        session_id=sid,
        member="bruno",
        reason="badge-out",
        duration_s=3600,
        energy_kwh=energy,
    )
    agent(
        paris(20, 11),
        EventType.MACHINE_IDLE,
        source="power",
        busy_s=10,
        session_id=sid,
        energy_kwh=energy,
        run_on_energy_kwh=run_on,
    )
    try:
        for item in agent.sent:
            json.loads(item.payload)
    except ValueError:
        return
    writer = IngestWriter(lab)
    writer.write_batch(agent.sent)
    assert writer.stats.stored + writer.stats.dead_letters == 3
    with Session(lab) as session:
        kwh = session_kwh(session, [sid])
    for value in kwh.values():
        assert math.isfinite(value) and 0 <= value <= 2e6
