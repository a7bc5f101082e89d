"""Issue 21 items 1, 4 and 6 at the hub, on SQLite and PostgreSQL: the catalogue and its prices
per category, spools, material recorded on sessions, the month's statement with its material
and energy lines (docs/billing.md's worked example), spool history and low stock, the command
line, and hostile values refused naming the field."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.core.errors import HubError
from hub.ingest.writer import IngestWriter
from hub.models import Material, Spool
from hub.services.badges import enrol_badge
from hub.services.billing import close_month, lines_of, month_statements
from hub.services.materials import (
    add_material,
    add_spool,
    low_spools,
    record_use,
    set_material_price,
    spool_history,
)
from tests.integration.test_billing_store import example_lab
from tests.integration.test_run_on_billing import PARIS, Agent, november_prints

DOC = Path(__file__).resolve().parents[2] / "docs" / "billing.md"
AFTER_NOVEMBER = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
runner = CliRunner()


def catalogue(session: Session) -> None:
    add_material(
        session,
        code="pla-black",
        name="PLA black",
        kind="PLA",
        unit="gram",
        cents_per_price_unit=2500,
        diameter_mm=1.75,
        density_g_cm3=1.24,
        actor="t",
    )
    set_material_price(
        session, material="pla-black", category="student", cents_per_price_unit=2000, actor="t"
    )
    add_material(
        session,
        code="plywood-3",
        name="Plywood 3 mm",
        kind="plywood",
        unit="sheet",
        cents_per_price_unit=450,
        actor="t",
    )
    add_spool(
        session,
        material="pla-black",
        code="pla-black-07",
        tag="5F00AA11",
        weight_g=1000,
        location="shelf B",
        low_g=950,
        actor="t",
    )


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        example_lab(session)
        catalogue(session)
        session.commit()
    agent = Agent()
    november_prints(agent)
    writer = IngestWriter(engine)
    writer.write_batch(agent.sent)
    assert writer.stats.dead_letters == 0
    yield engine
    engine.dispose()


# docs/billing.md, "Material and energy": November, energy at 0,25 €/kWh.
EXAMPLE = {
    "N1": (
        "360 min of busy time on 2026-11-10 at 1,00 €/h; 84.3 g of PLA black at 20,00 €/kg; "
        "1.550 kWh at 0,25 €/kWh",
        600 + 169 + 39,
    ),
    "S11": (
        "60 min of session time on 2026-11-02 at 30,00 €/h; 2 sheet(s) of Plywood 3 mm at "
        "4,50 €/sheet",
        3000 + 900,
    ),
}


def test_the_worked_example_with_material_and_energy(lab: Engine) -> None:
    with Session(lab) as session:
        record_use(
            session,
            session_id="N1",
            material="pla-black",
            quantity="84,3",
            spool="pla-black-07",
            actor="t",
        )
        record_use(session, session_id="S11", material="plywood-3", quantity=2, actor="t")
        session.commit()
        close_month(
            session,
            "2026-11",
            tz=PARIS,
            now=AFTER_NOVEMBER,
            actor="t",
            energy_cents_per_kwh=25,
        )
        session.commit()
        lines = {
            line.session_id: (line.explanation, line.cents)
            for statement in month_statements(session, "2026-11")
            for line in lines_of(session, statement)
        }
        spool, history = spool_history(session, "pla-black-07")
        assert spool.remaining_g == pytest.approx(915.7)
        assert [(h.session_id, h.member_ref, h.quantity) for h in history] == [
            ("N1", "bruno", 84.3)
        ]
        # 915.7 g is below the spool's 950 g threshold: it is on the maintenance board.
        assert [s.code for s, _ in low_spools(session)] == ["pla-black-07"]
    assert {sid: lines[sid] for sid in EXAMPLE} == EXAMPLE
    doc = DOC.read_text()
    for explanation, cents in EXAMPLE.values():
        assert explanation in doc
        assert f"{cents // 100},{cents % 100:02d} €" in doc


def test_a_duty_session_stays_free_of_material(lab: Engine) -> None:
    with Session(lab) as session:
        record_use(session, session_id="S05", material="plywood-3", quantity=1, actor="t")
        session.commit()
        close_month(session, "2026-10", tz=PARIS, now=AFTER_NOVEMBER, actor="t")
        session.commit()
        (s05,) = [
            line
            for statement in month_statements(session, "2026-10")
            for line in lines_of(session, statement)
            if line.session_id == "S05"
        ]
    assert s05.cents == 0 and "Plywood" not in s05.explanation


def test_a_badge_and_a_spool_tag_are_never_the_same_card(lab: Engine) -> None:
    with Session(lab) as session:
        with pytest.raises(HubError) as taken:
            add_spool(
                session, material="pla-black", code="pla-2", tag="5f:00:aa:11", weight_g=1000,
                actor="t",
            )  # fmt: skip
        assert taken.value.code == "spool.tag_taken" and taken.value.field == "tag"
        with pytest.raises(HubError) as spool_card:
            enrol_badge(session, uid="5F00AA11", member_id=1, actor="t")
        assert spool_card.value.code == "badge.is_spool"


def test_cli_adds_records_and_refuses_naming_the_flag(
    lab: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["hub", *args])
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    assert (
        run("material", "add", "petg", "--name", "PETG", "--unit", "gram", "--cents", "3000")[0]
        == 0
    )
    code, out = run("material", "add", "acrylic", "--name", "Acrylic", "--unit", "litre",
                    "--cents", "900")  # fmt: skip
    assert code == 2 and "--unit:" in out and "gram, metre, sheet, unit" in out
    code, out = run("material", "add", "Bad Code", "--name", "x", "--unit", "unit", "--cents", "1")
    assert code == 2 and "CODE:" in out
    code, out = run("spool", "add", "petg-01", "--material", "petg", "--weight-g", "nan")
    assert code == 2 and "--weight-g:" in out
    code, out = run("spool", "add", "petg-01", "--material", "petg", "--weight-g", "750",
                    "--location", "shelf A")  # fmt: skip
    assert code == 0, out
    code, out = run("material", "use", "S11", "--material", "petg", "--quantity", "12",
                    "--spool", "petg-01")  # fmt: skip
    assert code == 0, out
    code, out = run("material", "use", "nope", "--material", "petg", "--quantity", "1")
    assert code == 2 and "SESSION:" in out
    code, out = run("spool", "history", "petg-01")
    assert code == 0 and "738.0 g left of 750 g, shelf A" in out and "S11\tchloe" in out


HOSTILE = st.one_of(
    st.sampled_from(["nan", "inf", "-1", "1e400", "", "\x00", "12,5", "0", "2" * 400]),
    st.text(max_size=30),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(code=HOSTILE, weight=HOSTILE, tag=HOSTILE, quantity=HOSTILE)
def test_hostile_values_are_refused_naming_the_field_or_stored_sane(
    lab: Engine, code: str, weight: str, tag: str, quantity: str
) -> None:
    with Session(lab) as session:
        try:
            add_spool(
                session, material="pla-black", code=code, weight_g=weight, tag=tag or None,
                actor="t",
            )  # fmt: skip
            record_use(session, session_id="N2", material="pla-black", quantity=quantity, actor="t")
        except HubError as error:
            assert error.field in {"code", "weight_g", "low_g", "tag", "quantity"}
            session.rollback()
            return
        session.commit()
        spools = session.exec(select(Spool)).all()
        assert session.exec(select(Material)).all()
    for spool in spools:
        assert math.isfinite(spool.remaining_g) and 0 <= spool.initial_g <= 1e6


def test_the_yearly_review_shows_material_by_type_and_public_and_energy_with_co2e(
    lab: Engine,
) -> None:
    from hub.reports.review import review_tables, yearly_review

    with Session(lab) as session:
        record_use(session, session_id="N1", material="pla-black", quantity=84.3, actor="t")
        record_use(session, session_id="S11", material="plywood-3", quantity=2, actor="t")
        session.commit()
    review = yearly_review(lab, 2026, tz=PARIS, now=AFTER_NOVEMBER)
    tables = {name: rows for name, _, rows in review_tables(review)}
    assert tables["material"] == [
        ["PLA", "student", "gram", 84.3],
        ["plywood", "professional", "sheet", 2.0],
    ]
    # N1: 0.25 kWh in the session and 1.3 kWh of run-on, at the French grid's factor.
    assert tables["energy"][0] == ["printer", 1.55, round(1.55 * 0.052, 2)]
    assert "ADEME Base Empreinte" in tables["energy"][-1][0]
    own = yearly_review(lab, 2026, tz=PARIS, now=AFTER_NOVEMBER, co2e_kg_per_kwh=0.4)
    energy = {name: rows for name, _, rows in review_tables(own)}["energy"]
    assert energy[0] == ["printer", 1.55, 0.62] and "the lab's own factor" in energy[-1][0]


def test_the_prepaid_balance_draws_the_material_with_the_time_at_the_sessions_end(
    lab: Engine,
) -> None:
    from hub.models import BalanceMovement, Member
    from hub.services.billing import draw_ended_sessions, top_up

    with Session(lab) as session:
        school = session.exec(select(Member).where(Member.ref == "ecole-design")).one()
        top_up(session, school, 5000, actor="t")
        # N2 (bruno, 120 min of busy time at 1,00 €/h) used 50 g of PLA at the student price.
        record_use(session, session_id="N2", material="pla-black", quantity=50, actor="t")
        session.commit()
        draw_ended_sessions(session, ["N2"], tz=PARIS)
        session.commit()
        (drawn,) = session.exec(
            select(BalanceMovement).where(BalanceMovement.kind == "provisional")
        ).all()
    assert drawn.cents == -(200 + 100)  # 2,00 € of time and 50 g x 20 €/kg
