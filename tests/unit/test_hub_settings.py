"""Hub settings: TOML file and ATELIER_* variables; mistakes name the setting, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.settings import SettingsError, get_settings

runner = CliRunner()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('site = "fablab-nord"\nmqtt_port = 8883\nhttp_port = 8080\n')
    monkeypatch.setenv("ATELIER_HTTP_PORT", "9000")
    settings = get_settings(config)
    assert (settings.site, settings.mqtt_port, settings.http_port) == ("fablab-nord", 8883, 9000)
    assert settings.database_url == f"sqlite:///{Path('atelier-data') / 'atelier.db'}"


def test_mistakes_name_the_setting(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('sitee = "x"\nmqtt_port = 99999\n')
    with pytest.raises(SettingsError) as caught:
        get_settings(config)
    text = str(caught.value)
    assert "sitee: unknown setting" in text and "mqtt_port" in text
    with pytest.raises(SettingsError, match="does not exist"):
        get_settings(tmp_path / "missing.toml")


def test_cli_exits_2_without_a_traceback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ATELIER_MQTT_PORT", "not-a-port")
    result = runner.invoke(app, ["hub", "migrate"])
    assert result.exit_code == 2
    assert "mqtt_port" in result.output and "Traceback" not in result.output


def test_keys_are_created_once_and_shown(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    first = runner.invoke(app, ["hub", "keys"])
    second = runner.invoke(app, ["hub", "keys"])
    assert first.exit_code == 0 and first.output == second.output
    assert (tmp_path / "hub_ed25519.pem").stat().st_mode & 0o777 == 0o600
    from protocol.allowlist import load_public_key

    load_public_key(first.output.strip().splitlines()[-1])


@settings(max_examples=40, deadline=None)
@given(value=st.text(max_size=40))
def test_agent_broker_is_host_colon_port_or_refused_naming_it(value: str) -> None:
    try:
        got = get_settings(None, agent_broker=value)
    except SettingsError as exc:
        assert any(e.startswith("agent_broker:") and "host:port" in e for e in exc.errors)
        return
    host, _, port = (got.agent_broker or "").rpartition(":")
    assert host and 1 <= int(port) <= 65535 and " " not in host
