"""Every change made through the commands is in the audit log, with who made it."""

from __future__ import annotations

import getpass
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from atelier_cli import app
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from tests.support.api import admin_headers

runner = CliRunner()


def test_changes_are_audited_newest_first(database_url: str, tmp_path: Path, monkeypatch) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("ATELIER_MQTT_PORT", "1")  # no broker: changes are saved all the same
    monkeypatch.delenv("SUDO_USER", raising=False)
    members = tmp_path / "members.csv"
    members.write_text("name,email,category,badges\nZoé Blanc,zoe@example.org,student,04ABCDEF\n")
    commands = [
        ["hub", "badge", "revoke", "04C3D4E5"],
        ["hub", "member", "suspend", "lea@example.org"],
        ["hub", "machine", "lock", "laser-1", "--reason", "tube"],
        ["hub", "machine", "unlock", "laser-1"],
        ["hub", "import", "members", str(members)],
        ["hub", "member", "export", "zoe@example.org", "--out", str(tmp_path / "zoe.json")],
        ["hub", "member", "erase", "zoe@example.org", "--yes"],
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with TestClient(
        create_app(settings, start_ingest=False), headers=admin_headers(database_url)
    ) as client:
        log = client.get("/api/v1/audit").json()
        actions = [entry["action"] for entry in log]
        assert actions == [
            "member.erase",
            "member.export",
            "member.import",
            "machine.unlock",
            "machine.lock",
            "member.suspended",
            "badge.revoke",
        ]
        assert {entry["actor"] for entry in log} == {f"cli:{getpass.getuser()}"}
        lock = next(e for e in log if e["action"] == "machine.lock")
        assert lock["entity_id"] == "laser-1" and lock["detail"]["reason"] == "tube"
        only_machines = client.get("/api/v1/audit", params={"entity": "machine"}).json()
        assert [e["action"] for e in only_machines] == ["machine.unlock", "machine.lock"]
