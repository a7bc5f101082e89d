"""Interlocks at the hub: the allow-list carries each member's other trainings (for an
accessory's own), the machine card shows the interlocks, and maintenance counts faults."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from edge.agent import Agent
from edge.config import parse_config
from hub.app import create_app
from hub.auth import create_user
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import Event, Machine, MachineType, Member, Role, Training
from hub.services.allowlists import allowlist_body, build_allowlist
from hub.services.maintenance.interlocks import interlock_faults
from tests.e2e.web import sign_in
from tests.integration.test_agent_offline import Hub, hub  # noqa: F401
from tests.support.api import PASSWORD, admin_headers
from tests.support.processes import wait_until

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def test_the_list_carries_other_trainings_and_faults_are_counted(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        rotary = MachineType(code="laser-rotary", name="Laser rotary axis", kind="laser")
        session.add(rotary)
        session.flush()
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
        assert rotary.id and hugo.id and lea.id
        session.add(Training(member_id=hugo.id, machine_type_id=rotary.id))
        session.add(  # expired: not listed
            Training(member_id=lea.id, machine_type_id=rotary.id, expires_at=NOW - timedelta(1))
        )
        for i, (machine, name, kind) in enumerate(
            [("laser-1", "chiller", "chiller_flow")] * 3 + [("laser-1", "extraction", "extraction")]
        ):
            session.add(
                Event(
                    id=uuid.uuid4(),
                    site="lab",
                    machine=machine,
                    seq=i + 1,
                    ts=NOW - timedelta(days=i),
                    type="interlock.fault",
                    data={"interlock": name, "kind": kind, "action": "session-ended"},
                )
            )
        session.add(  # outside the 90 days
            Event(
                id=uuid.uuid4(),
                site="lab",
                machine="laser-1",
                seq=9,
                ts=NOW - timedelta(days=91),
                type="interlock.fault",
                data={"interlock": "chiller", "kind": "chiller_flow", "action": "warned"},
            )
        )
        session.commit()
        laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        body = allowlist_body(session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False)
        model = build_allowlist(session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False)
        counted = interlock_faults(session, now=NOW)
    engine.dispose()
    assert body == model.model_dump(mode="json")
    trainings = {e["badge"]: e.get("trainings", {}) for e in body["entries"]}
    assert "laser-rotary" in trainings["04C3D4E5"]  # Hugo
    assert "laser-rotary" not in trainings["04B2C3D4"]  # Léa's has expired
    assert "laser" not in trainings["04C3D4E5"]  # the machine's own type is the entry itself
    assert [(f.machine, f.interlock, f.kind, f.count) for f in counted] == [
        ("laser-1", "chiller", "chiller_flow", 3),
        ("laser-1", "extraction", "extraction", 1),
    ]
    assert counted[0].last_at == NOW


def test_the_machine_card_shows_a_chiller_fault_and_maintenance_counts_it(
    hub: Hub,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = hub.engine.url.render_as_string(hide_password=False)
    config = hub.agent_config(
        "laser-1",
        interlock=[
            {"name": "extraction", "kind": "extraction", "pin": 5},
            {"name": "chiller", "kind": "chiller_flow", "pin": 6},
        ],
    )
    agent = Agent(parse_config(config))
    agent.start()
    try:
        assert agent.devices is not None
        factory = agent.devices.pin_factory
        factory.pin(5).drive_high()
        factory.pin(6).drive_high()
        wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the allow-list")
        assert agent.tap("04C3D4E5")["decision"] == "granted"  # Hugo, trained on the laser
        factory.pin(6).drive_low()
        wait_until(
            lambda: any(e.type == "interlock.fault" for e in hub.events("laser-1")),
            timeout=15,
            what="the fault at the hub",
        )
        settings = get_settings(None, database_url=url, data_dir=hub.tmp / "hub")
        with TestClient(create_app(settings, start_ingest=False)) as client:
            headers = admin_headers(url)
            machines = wait_until(
                lambda: (
                    answer
                    if (answer := client.get("/api/v1/machines", headers=headers).json())
                    and next(m for m in answer if m["code"] == "laser-1").get("interlocks")
                    == {"extraction": True, "chiller": False}
                    else None
                ),
                timeout=15,
                what="the interlocks in the machine's status",
            )
            assert machines
            faults = client.get("/api/v1/maintenance/interlock-faults", headers=headers).json()
            assert [(f["machine"], f["interlock"], f["count"]) for f in faults] == [
                ("laser-1", "chiller", 1)
            ]
            with Session(hub.engine) as session:
                create_user(session, username="desk", password=PASSWORD, role=Role.MANAGER)
                session.commit()
            sign_in(client, "desk", PASSWORD)
            client.cookies.set("atelier_lang", "fr")
            dashboard = client.get("/").text
            assert "✗ chiller: en défaut" in dashboard and "✓ extraction: en ordre" in dashboard
            maintenance = client.get("/web/maintenance").text
            assert "Défauts de sécurité (90 derniers jours)" in maintenance
            assert "chiller (débit du refroidisseur)</td><td>1</td>" in maintenance
    finally:
        agent.stop()
