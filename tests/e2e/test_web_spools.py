"""Issue 21 item 6: spools below their threshold on the maintenance board, in English and
French, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from hub.models import MachineSession, MaterialUse
from hub.services.materials import add_material, add_spool, record_use
from tests.e2e.test_web_screens import hub  # noqa: F401
from tests.e2e.web import sign_in
from tests.support.api import PASSWORD


def test_a_spool_below_its_threshold_is_on_the_maintenance_board(
    hub: TestClient,  # noqa: F811 - the fixture imported above
) -> None:
    engine = hub.app.state.engine
    sign_in(hub, "test-maintainer", PASSWORD)
    assert "No spool running low." in hub.get("/web/maintenance").text
    with Session(engine) as session:
        add_material(
            session, code="petg-blue", name="PETG blue", unit="gram", cents_per_price_unit=3000,
            actor="t",
        )  # fmt: skip
        add_spool(
            session, material="petg-blue", code="petg-blue-03", weight_g=1000, low_g=150,
            location="drawer 2", actor="t",
        )  # fmt: skip
        add_spool(session, material="petg-blue", code="petg-blue-04", weight_g=1000, actor="t")
        session.commit()
    assert "petg-blue-03" not in hub.get("/web/maintenance").text
    with Session(engine) as session:
        session.add(MachineSession(id="w1", site="lab", machine="printer-1", member_ref="m-x"))
        session.flush()
        record_use(
            session, session_id="w1", material="petg-blue", quantity=900, spool="petg-blue-03",
            actor="t",
        )  # fmt: skip
        session.commit()
    board = hub.get("/web/maintenance").text
    assert "Spools running low" in board
    assert "<td>petg-blue-03</td><td>PETG blue</td><td>100 g</td><td>150 g</td>" in board
    assert "drawer 2" in board and "petg-blue-04" not in board
    french = hub.get("/web/maintenance", headers={"Accept-Language": "fr"}).text
    assert "Bobines presque vides" in french and "petg-blue-03" in french


def test_sheets_are_recorded_on_a_session_from_the_machine_page(
    hub: TestClient,  # noqa: F811 - the fixture imported above
) -> None:
    engine = hub.app.state.engine
    with Session(engine) as session:
        add_material(
            session, code="plywood-3", name="Plywood 3 mm", unit="sheet", cents_per_price_unit=450,
            actor="t",
        )  # fmt: skip
        session.add(
            MachineSession(
                id="cut-1", site="lab", machine="laser-1", member_ref="m-x",
                started_at=datetime(2026, 11, 3, 9, tzinfo=UTC),
            )
        )  # fmt: skip
        session.commit()
    token = sign_in(hub, "test-maintainer", PASSWORD)
    page = hub.get("/web/machines/laser-1").text
    assert "Record material" in page and "Plywood 3 mm (sheet)" in page
    form = {"session_id": "cut-1", "material": "plywood-3", "csrf": token}
    bad = hub.post("/web/machines/laser-1/material", data={**form, "quantity": "two"})
    assert bad.status_code == 422
    assert '<p class="error" id="use-quantity-error">&#39;two&#39; must be a number' in bad.text
    french = hub.post(
        "/web/machines/laser-1/material",
        data={**form, "quantity": "-1"},
        headers={"Accept-Language": "fr"},
    )
    assert "doit être un nombre" in french.text
    ok = hub.post("/web/machines/laser-1/material", data={**form, "quantity": "2"})
    assert ok.status_code == 200 and "material recorded" in ok.text
    with Session(engine) as session:
        (use,) = session.exec(select(MaterialUse)).all()
        assert (use.session_id, use.quantity, use.source) == ("cut-1", 2.0, "web")
