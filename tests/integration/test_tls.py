"""MQTT over TLS with the lab's own CA, against a real Mosquitto TLS listener."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session
from typer.testing import CliRunner

from atelier_cli import app
from edge.agent import Agent
from edge.config import parse_config
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.consumer import IngestConsumer
from protocol.allowlist import public_key_b64
from tests.support.mosquitto import MosquittoBroker, find_binary
from tests.support.processes import wait_until

runner = CliRunner()


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", url)
    result = runner.invoke(
        app,
        [
            "hub",
            "tls",
            "init",
            "--dir",
            str(tmp_path / "tls"),
            "--broker-name",
            "127.0.0.1",
            "--broker-name",
            "localhost",
        ],
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "tls"


def broker_with(tmp_path: Path, pki: Path, *, client_certs: bool) -> MosquittoBroker:
    if find_binary("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    broker = MosquittoBroker(
        tmp_path / ("mtls" if client_certs else "tls"),
        tls={
            "cafile": pki / "ca.crt",
            "certfile": pki / "broker.crt",
            "keyfile": pki / "broker.key",
            "require_certificate": client_certs,
        },
    )
    broker.start()
    return broker


def agent_for(
    tmp_path: Path,
    broker: MosquittoBroker,
    *,
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    name: str = "a",
) -> Agent:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    user, password = broker.agent_credentials("laser-1")
    mqtt: dict[str, object] = {
        "host": "127.0.0.1",
        "port": broker.port,
        "username": user,
        "password": password,
        "tls": True,
        "ca_file": str(ca),
    }
    if cert is not None:
        mqtt |= {"cert_file": str(cert), "key_file": str(key)}
    return Agent(
        parse_config(
            {
                "agent": {
                    "site": "lab",
                    "machine": "laser-1",
                    "state_dir": str(tmp_path / name),
                    "hub_public_key": public_key_b64(Ed25519PrivateKey.generate().public_key()),
                },
                "mqtt": mqtt,
                "gpio": {"pin_factory": "mock"},
                "relay": {"pin": 17},
                "reader": {"type": "sim"},
            }
        )
    )


def test_the_ca_issues_what_each_side_needs(pki: Path) -> None:
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    broker = x509.load_pem_x509_certificate((pki / "broker.crt").read_bytes())
    agent = x509.load_pem_x509_certificate((pki / "agents" / "laser-1.crt").read_bytes())
    for cert in (broker, agent):
        ca.public_key().verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert agent.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "laser-1"
    for key in [pki / "ca.key", pki / "broker.key", pki / "agents" / "laser-1.key"]:
        assert key.stat().st_mode & 0o777 == 0o600
    assert sorted(p.stem for p in (pki / "agents").glob("*.crt")) == [
        "cnc-1",
        "laser-1",
        "printer-1",
        "printer-2",
    ]


def test_agents_and_hub_reach_the_broker_over_tls_and_refuse_a_stranger(
    tmp_path: Path, pki: Path
) -> None:
    broker = broker_with(tmp_path, pki, client_certs=False)
    agent = agent_for(tmp_path, broker, ca=pki / "ca.crt")
    settings = get_settings(
        None,
        database_url=f"sqlite:///{tmp_path / 'ingest.db'}",
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        mqtt_username=broker.hub_user,
        mqtt_password=broker.hub_password,
        mqtt_tls_ca=pki / "ca.crt",
    )
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    consumer = IngestConsumer(settings, engine)
    try:
        agent.start()
        consumer.start()
        wait_until(lambda: agent.state()["connected"], timeout=10, what="the agent over TLS")
        wait_until(lambda: consumer.subscribed.is_set(), timeout=10, what="the hub over TLS")
        # An agent that trusts another CA (a man in the middle's view) refuses the broker.
        other = tmp_path / "other-ca"
        runner.invoke(app, ["hub", "tls", "init", "--dir", str(other)])
        stranger = agent_for(tmp_path, broker, ca=other / "ca.crt", name="b")
        stranger.start()
        try:
            time.sleep(3)
            assert not stranger.state()["connected"]
        finally:
            stranger.stop()
    finally:
        consumer.stop()
        engine.dispose()
        agent.stop()
        broker.stop()


def test_client_certificates_identify_each_agent(tmp_path: Path, pki: Path) -> None:
    broker = broker_with(tmp_path, pki, client_certs=True)
    with_cert = agent_for(
        tmp_path,
        broker,
        ca=pki / "ca.crt",
        cert=pki / "agents" / "laser-1.crt",
        key=pki / "agents" / "laser-1.key",
        name="c",
    )
    without = agent_for(tmp_path, broker, ca=pki / "ca.crt", name="d")
    try:
        with_cert.start()
        without.start()
        wait_until(
            lambda: with_cert.state()["connected"],
            timeout=10,
            what="the agent with its certificate",
        )
        time.sleep(2)
        assert not without.state()["connected"]
    finally:
        with_cert.stop()
        without.stop()
        broker.stop()
