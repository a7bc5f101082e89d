"""The web's "Add a machine" and setup page over HTTP: the kind from the type, a refusal under
its field in French, the config and password downloads, and who may see them."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from edge.config import parse_config
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import AuditEntry, Machine, MachineKind, Role
from tests.e2e.web import csrf_of, sign_in
from tests.support.api import PASSWORD, role_tokens


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, str, Path, str]]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        session.commit()
    admin = role_tokens(engine)[Role.ADMIN]
    engine.dispose()
    secrets = tmp_path / "agents"
    settings = get_settings(
        None,
        database_url=database_url,
        data_dir=tmp_path,
        mqtt_secrets_dir=secrets,
        agent_broker="hub.fablab.lan:8883",
        mqtt_tls_ca=tmp_path / "ca.crt",
    )
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nlab\n")
    with TestClient(create_app(settings, start_ingest=False)) as client:
        yield client, database_url, secrets, admin


def _form(**values: str) -> dict[str, str]:
    base = {"code": "", "name": "", "site": "lab", "machine_type": "", "kind": "",
            "reader": "mfrc522", "relay_pin": "17"}  # fmt: skip
    return base | values


def test_a_cnc_added_on_the_web_takes_its_types_kind_and_gives_its_agent_config(
    hub: tuple[TestClient, str, Path, str],
) -> None:
    client, url, secrets, _ = hub
    token = sign_in(client, "test-admin", PASSWORD)
    client.cookies.set("atelier_lang", "fr")
    form = _form(code="laser-3", name="Laser 3", machine_type="laser", csrf=token)
    page = client.post("/web/machines/add", data=form)
    # A laser without a Ruida controller nor a fire signal: refused under that field, in French.
    assert page.status_code == 422
    assert 'id="ruida_host-error"' in page.text and "un laser a besoin" in page.text
    page = client.post(
        "/web/machines/add",
        data=_form(code="cnc-2", name="CNC 2", machine_type="cnc", busy_pin="22", relay_pin="0",
                   plug_kind="tasmota", plug_topic="tele/plug-cnc2/SENSOR", csrf=token),
        follow_redirects=False,
    )  # fmt: skip
    assert page.status_code == 303, page.text[:2000]
    # No broker files configured here: the page says what to run.
    assert page.headers["location"] == "/web/machines/cnc-2/setup?broker=pending"
    assert "Le broker ne connaît pas encore cet agent" in client.get(page.headers["location"]).text
    engine = make_engine(url)
    with Session(engine) as session:
        machine = session.exec(select(Machine).where(Machine.code == "cnc-2")).one()
        assert machine.kind == MachineKind.CNC  # no kind chosen: the type's
        audit = session.exec(select(AuditEntry).where(AuditEntry.entity_id == "cnc-2")).one()
        assert audit.actor == "user:test-admin" and audit.detail["kind_from_type"] is True
    engine.dispose()
    setup = client.get("/web/machines/cnc-2/setup")
    assert setup.status_code == 200
    assert 'data-check="agent_never_connected"' in setup.text
    assert 'data-ready="no"' in setup.text and "ne s&#39;est jamais connecté" in setup.text
    config = client.get("/web/machines/cnc-2/agent.toml")
    assert config.headers["content-disposition"] == 'attachment; filename="edge.toml"'
    parsed = parse_config(tomllib.loads(config.text))
    assert (parsed.mqtt.host, parsed.mqtt.port, parsed.mqtt.tls) == ("hub.fablab.lan", 8883, True)
    assert parsed.power_meter is not None and parsed.power_meter.topic == "plug-cnc2"
    assert parsed.busy_input is not None and parsed.busy_input.pin == 22
    assert parsed.relay.pin == 0  # GPIO 0 is a pin, not "left empty"
    password = client.get("/web/machines/cnc-2/mqtt-password").text.strip()
    assert password == (secrets / "cnc-2.mqtt-password").read_text().strip()
    assert client.get("/web/machines/cnc-2/ca.crt").text.startswith("-----BEGIN CERTIFICATE")
    # The API says where the kind comes from.
    machine_page = client.get("/web/machines/cnc-2").text
    assert "de son type" in machine_page


def test_only_admins_add_machines_or_read_their_secrets(
    hub: tuple[TestClient, str, Path, str],
) -> None:
    client, _, _, _ = hub
    sign_in(client, "test-manager", PASSWORD)
    for path in (
        "/web/machines/add",
        "/web/machines/laser-1/setup",
        "/web/machines/laser-1/agent.toml",
        "/web/machines/laser-1/mqtt-password",
    ):
        assert client.get(path, follow_redirects=False).status_code == 403, path  # fmt: skip
    sign_in(client, "test-admin", PASSWORD)
    page = client.get("/web/machines/add")
    assert page.status_code == 200
    token = csrf_of(page.text)
    assert client.post("/web/machines/add", data=_form(code="x")).status_code == 403  # no token
    assert client.get("/web/machines/nope/setup").status_code == 404
    assert token


def test_the_api_gives_a_machine_its_types_kind_and_says_so(
    hub: tuple[TestClient, str, Path, str],
) -> None:
    client, url, _, admin = hub
    auth = {"Authorization": f"Bearer {admin}"}
    body = {"code": "printer-9", "name": "Printer 9", "site": "lab", "machine_type": "printer"}
    made = client.post("/api/v1/machines", json=body, headers=auth)
    assert made.status_code == 201, made.text
    assert made.json()["kind"] == "printer" and made.json()["kind_from_type"] is True
    changed = client.patch("/api/v1/machines/printer-9", json={"kind": "other"}, headers=auth)
    assert changed.json()["kind_from_type"] is False and changed.json()["kind_conflict"] is None
    engine = make_engine(url)
    with Session(engine) as session:
        machine = session.exec(select(Machine).where(Machine.code == "printer-9")).one()
        machine.octoprint_url, machine.octoprint_api_key = "http://127.0.0.1:9", "SECRET-KEY"
        session.add(machine)
        session.commit()
    engine.dispose()
    # OctoPrint on a machine that is no longer a printer: flagged, and the key never shown.
    answer = client.get("/api/v1/machines/printer-9", headers=auth)
    assert answer.json()["kind_conflict"] == "octoprint_on_non_printer"
    assert (
        "SECRET-KEY" not in answer.text
        and "SECRET-KEY" not in client.get("/api/v1/machines", headers=auth).text
    )
    sign_in(client, "test-admin", PASSWORD)
    client.cookies.set("atelier_lang", "fr")
    page = client.get("/web/machines/printer-9").text
    assert "un OctoPrint est réglé sur une machine dont la sorte n&#39;est pas printer" in page
