"""Machine configs: every error reported at once, naming the field; the CLI exits 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from atelier_cli import app
from edge.config import ConfigError, load_config
from protocol.allowlist import public_key_b64

REPO = Path(__file__).resolve().parents[2]
KEY = public_key_b64(Ed25519PrivateKey.generate().public_key())
runner = CliRunner()


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "machine.toml"
    path.write_text(body)
    return path


def valid(tmp_path: Path, relay: str = "pin = 17") -> str:
    return f"""
[agent]
site = "lab"
machine = "laser-1"
state_dir = "{tmp_path / "state"}"
hub_public_key = "{KEY}"
[gpio]
pin_factory = "mock"
[relay]
{relay}
[reader]
type = "sim"
"""


def test_a_valid_config_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, valid(tmp_path)))
    assert cfg.relay.pin == 17 and cfg.mqtt.protocol == "5"
    assert cfg.sim_socket == tmp_path / "state" / "sim-reader.sock"


def test_wrong_field_name_is_named_with_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, valid(tmp_path, relay="pinn = 17")))
    text = caught.value.report()
    assert "relay.pinn: unknown field" in text and "allowed here: active_high, pin" in text
    assert "relay.pin: required field is missing" in text


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    body = valid(tmp_path, relay="pin = 99").replace('"laser-1"', '"Laser 1"')
    body += "\n[session]\nidle_timeout_s = -3\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, body))
    fields = {e.split(":")[0] for e in caught.value.errors}
    assert fields == {"agent.machine", "relay.pin", "session.idle_timeout_s"}


@pytest.mark.parametrize("command", ["run", "tap"])
def test_cli_names_the_field_and_exits_2(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, valid(tmp_path, relay="pin = 40"))
    args = ["edge", command, "--config", str(path)] + (
        ["--uid", "04A1B2C3"] if command == "tap" else []
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "relay.pin" in result.output and "0..27" in result.output
    assert "Traceback" not in result.output


def test_check_config_reports_problems_and_exit_codes(tmp_path: Path) -> None:
    bad = write(tmp_path, valid(tmp_path, relay="pinn = 3"))
    result = runner.invoke(app, ["edge", "check-config", str(bad)])
    assert result.exit_code == 2 and "relay.pinn" in result.output
    good = write(tmp_path, valid(tmp_path))
    result = runner.invoke(app, ["edge", "check-config", str(good)])
    assert result.exit_code == 0 and "ok" in result.output
    missing = runner.invoke(app, ["edge", "check-config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "file not found" in missing.output
    broken = write(tmp_path, "[agent\n")
    assert runner.invoke(app, ["edge", "check-config", str(broken)]).exit_code == 2


def test_tap_refuses_a_non_sim_reader_and_a_stopped_agent(tmp_path: Path) -> None:
    body = valid(tmp_path).replace('type = "sim"', 'type = "mfrc522"')
    result = runner.invoke(
        app, ["edge", "tap", "--config", str(write(tmp_path, body)), "--uid", "04A1B2C3"]
    )
    assert result.exit_code == 2 and "only be simulated" in result.output
    result = runner.invoke(
        app, ["edge", "tap", "--config", str(write(tmp_path, valid(tmp_path))), "--uid", "04A1B2C3"]
    )
    assert result.exit_code == 2 and "no agent is running" in result.output
    result = runner.invoke(
        app, ["edge", "tap", "--config", str(write(tmp_path, valid(tmp_path))), "--uid", "xyz"]
    )
    assert result.exit_code == 2 and "--uid" in result.output


@pytest.mark.parametrize("example", sorted((REPO / "firmware_config").glob("*.toml")))
def test_shipped_examples_are_valid_once_the_key_is_filled_in(
    tmp_path: Path, example: Path
) -> None:
    body = re.sub(r'hub_public_key = ".*"', f'hub_public_key = "{KEY}"', example.read_text())
    assert load_config(write(tmp_path, body)).agent.machine == example.stem


@pytest.mark.parametrize(
    ("reader", "names"),
    [
        ('type = "sim"\nsecure = true\nsite_key_file = "/etc/s"', 'reader.type = "mfrc522"'),
        ('type = "mfrc522"\nsecure = true', "reader.site_key_file"),
        ('type = "mfrc522"\nsecure_sector = 3\ntag_sector = 3', "give two different sectors"),
    ],
)
def test_secure_mode_settings_are_checked_with_the_fix(
    tmp_path: Path, reader: str, names: str
) -> None:
    body = valid(tmp_path).replace('[reader]\ntype = "sim"', f"[reader]\n{reader}")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, body))
    assert len(caught.value.errors) == 1 and caught.value.errors[0].startswith("reader")
    assert names in caught.value.errors[0]


@pytest.mark.parametrize(
    ("tables", "says"),
    [
        (
            '[[interlock]]\nname = "lid"\nkind = "lid"\npin = 17\n',
            "interlock 'lid': GPIO17 is already relay.pin",
        ),
        (
            '[[accessory]]\nname = "fan"\npin = 5\n[[accessory]]\nname = "fan"\npin = 6\n',
            "accessory: two share a name",
        ),
        ('[[interlock]]\nname = "lid"\nkind = "door"\npin = 5\n', "interlock.0.kind"),
    ],
)
def test_interlocks_and_accessories_are_checked_with_the_fix(
    tmp_path: Path, tables: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, valid(tmp_path) + tables))
    assert says in caught.value.report()
