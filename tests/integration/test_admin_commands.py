"""Revoking, suspending and locking out from the command line reach the machine in seconds."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from atelier_cli import app
from tests.integration.test_agent_offline import HUGO, Hub, hub, started_agent  # noqa: F401
from tests.support.processes import wait_until

runner = CliRunner()


@pytest.fixture
def hub_env(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:  # noqa: F811
    settings = hub.consumer.settings
    for name, value in {
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": settings.data_dir,
        "SITE": "lab",
        "MQTT_HOST": settings.mqtt_host,
        "MQTT_PORT": settings.mqtt_port,
        "MQTT_USERNAME": settings.mqtt_username,
        "MQTT_PASSWORD": settings.mqtt_password,
        "MQTT_CLIENT_ID": "atelier-cli",
    }.items():
        monkeypatch.setenv(f"ATELIER_{name}", str(value))
    return hub


def test_a_revoked_badge_is_refused_within_seconds(hub_env: Hub) -> None:
    agent = started_agent(hub_env, "laser-1")
    try:
        version = agent.state()["acl_version"]
        result = runner.invoke(app, ["hub", "badge", "revoke", "04:c3:d4:e5"])
        assert result.exit_code == 0, result.output
        assert "published 4 allow-list(s)" in result.output
        wait_until(
            lambda: agent.state()["acl_version"] > version,
            timeout=5,
            what="the new list at the machine",
        )
        assert agent.tap(HUGO)["reason"] == "unknown_badge"
        again = runner.invoke(app, ["hub", "badge", "revoke", HUGO])
        assert again.exit_code == 2 and "no active badge" in again.output
    finally:
        agent.stop()


def test_a_suspended_member_is_refused_then_reactivated(hub_env: Hub) -> None:
    agent = started_agent(hub_env, "laser-1")
    try:
        version = agent.state()["acl_version"]
        assert runner.invoke(app, ["hub", "member", "suspend", "hugo@example.org"]).exit_code == 0
        wait_until(lambda: agent.state()["acl_version"] > version, timeout=5, what="new list")
        assert agent.tap(HUGO)["reason"] == "member_inactive"
        version = agent.state()["acl_version"]
        assert runner.invoke(app, ["hub", "member", "activate", "hugo@example.org"]).exit_code == 0
        wait_until(lambda: agent.state()["acl_version"] > version, timeout=5, what="new list")
        assert agent.tap(HUGO)["decision"] == "granted"
        unknown = runner.invoke(app, ["hub", "member", "suspend", "nobody@example.org"])
        assert unknown.exit_code == 2 and "no member" in unknown.output
    finally:
        agent.stop()


def test_a_lockout_ends_the_session_and_only_a_maintainer_gets_in(hub_env: Hub) -> None:
    agent = started_agent(hub_env, "cnc-1")
    try:
        inès = "04E5F607"  # a CNC user in the demo data; Camille maintains the CNC
        assert agent.tap(inès)["decision"] == "granted"
        result = runner.invoke(
            app, ["hub", "machine", "lock", "cnc-1", "--reason", "spindle bearing"]
        )
        assert result.exit_code == 0 and "published 1 allow-list(s)" in result.output
        wait_until(lambda: agent.state()["locked"], timeout=5, what="the lockout at the machine")
        state = agent.state()
        assert state["session"] is None and state["relay_pin"] == 0
        assert agent.tap(inès)["reason"] == "locked_out"
        reply = agent.tap("04A1B2C3")  # Camille, maintainer
        assert reply["decision"] == "granted"
        assert agent.state()["session"]["mode"] == "maintenance"
        agent.tap("04A1B2C3")
        assert runner.invoke(app, ["hub", "machine", "unlock", "cnc-1"]).exit_code == 0
        wait_until(lambda: not agent.state()["locked"], timeout=5, what="the unlock")
        assert agent.tap(inès)["decision"] == "granted"
    finally:
        agent.stop()
