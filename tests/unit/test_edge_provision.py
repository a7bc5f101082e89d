"""`atelier edge provision` writes a config that checks; the published JSON Schema is current."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from atelier_cli import app
from edge.config import config_schema, load_config
from protocol.allowlist import public_key_b64

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_the_published_schema_is_the_one_the_code_validates_with() -> None:
    published = json.loads((REPO / "firmware_config" / "schema.json").read_text())
    assert published == config_schema(), (
        "firmware_config/schema.json is out of date: run "
        "`atelier edge schema > firmware_config/schema.json`"
    )


def test_provision_writes_a_valid_config_and_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "laser-1.mqtt-password"
    secret.write_text("s3cret\n")
    key = public_key_b64(Ed25519PrivateKey.generate().public_key())
    result = runner.invoke(
        app,
        [
            "edge",
            "provision",
            "--machine",
            "laser-1",
            "--site",
            "fablab",
            "--hub-public-key",
            key,
            "--broker",
            "hub.fablab.lan:8883",
            "--out",
            str(tmp_path / "pi"),
            "--password-file",
            str(secret),
            "--machine-type",
            "laser",
            "--tls-ca",
            "/etc/atelier/ca.crt",
        ],
    )
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "pi" / "edge.toml")
    assert (config.agent.machine, config.mqtt.host, config.mqtt.port) == (
        "laser-1",
        "hub.fablab.lan",
        8883,
    )
    assert config.mqtt.tls and config.relay.active_high is False
    password = tmp_path / "pi" / "credentials" / "mqtt-password"
    assert password.read_text().strip() == "s3cret"
    assert password.stat().st_mode & 0o777 == 0o600
    check = runner.invoke(app, ["edge", "check-config", str(tmp_path / "pi" / "edge.toml")])
    assert check.exit_code == 0


def test_provision_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    key = public_key_b64(Ed25519PrivateKey.generate().public_key())
    base = [
        "edge",
        "provision",
        "--site",
        "fablab",
        "--hub-public-key",
        key,
        "--out",
        str(tmp_path / "pi"),
    ]
    bad_machine = runner.invoke(app, [*base, "--machine", "Laser 1", "--broker", "h:1883"])
    assert bad_machine.exit_code == 2 and "agent.machine" in bad_machine.output
    bad_broker = runner.invoke(app, [*base, "--machine", "laser-1", "--broker", "nohost"])
    assert bad_broker.exit_code == 2 and "host:port" in bad_broker.output
    bad_pin = runner.invoke(
        app, [*base, "--machine", "laser-1", "--broker", "h:1", "--relay-pin", "40"]
    )
    assert bad_pin.exit_code == 2 and "relay.pin" in bad_pin.output
    no_secret = runner.invoke(
        app,
        [
            *base,
            "--machine",
            "laser-1",
            "--broker",
            "h:1",
            "--password-file",
            str(tmp_path / "missing"),
        ],
    )
    assert no_secret.exit_code == 2 and "mqtt-credentials" in no_secret.output
