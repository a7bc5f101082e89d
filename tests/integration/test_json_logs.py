"""Every long-running entry point logs one JSON object per line when asked: the hub (by
ATELIER_LOG_FORMAT), an ingest worker and the agent (by --log-format), as real processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.core.db import migrate
from protocol.allowlist import public_key_b64
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import Proc, agent_command, wait_until


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of the log, parsed: a line that is not JSON fails the test."""
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= set(entry), entry
    return entries


def said(proc: Proc, logger: str, words: str) -> bool:
    return any(
        e["logger"].startswith(logger) and words in e["message"] for e in json_lines(proc.output())
    )


def test_the_hub_and_an_ingest_worker_log_json(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    settings = HubSettings(
        data_dir=tmp_path / "hub",
        database_url=url,
        site="lab",
        broker=mosquitto,
        extra_env={"ATELIER_LOG_FORMAT": "json"},
    )
    hub = start_hub(settings, log=tmp_path / "hub.log")
    try:
        wait_until(lambda: said(hub, "hub.app", "hub ready"), timeout=10, what="hub ready")
    finally:
        hub.stop()  # uvicorn re-raises the SIGTERM once shut down: -15 is its clean exit
    entries = json_lines(hub.output())
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn's own lines too

    env = {k: v for k, v in settings.env().items() if k != "ATELIER_LOG_FORMAT"}
    worker = Proc(
        ["hub", "ingest", "--worker", "1", "--log-format", "json"],
        log=tmp_path / "worker.log",
        env=env,
    )
    try:
        wait_until(
            lambda: said(worker, "hub.ingest", "ingest subscribed"),
            timeout=20,
            what="the worker's subscription",
            proc=worker,
        )
    finally:
        worker.stop()
    assert said(worker, "hub.ingest", "ingest worker 1 stopped")


def test_the_agent_logs_json(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    user, password = mosquitto.agent_credentials("laser-1")
    config = tmp_path / "laser-1.toml"
    key = public_key_b64(Ed25519PrivateKey.generate().public_key())
    config.write_text(
        f"""
[agent]
site = "lab"
machine = "laser-1"
state_dir = "{tmp_path / "state"}"
hub_public_key = "{key}"

[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
username = "{user}"
password = "{password}"

[gpio]
pin_factory = "mock"

[relay]
pin = 17

[reader]
type = "sim"
"""
    )
    agent = Proc(
        ["--config", str(config), "--log-format", "json"],
        log=tmp_path / "agent.log",
        program=agent_command(),
    )
    try:
        wait_until(
            lambda: any(e["logger"].startswith("edge") for e in json_lines(agent.output())),
            timeout=20,
            what="the agent's first line",
            proc=agent,
        )
    finally:
        assert agent.stop() == 0
    json_lines(agent.output())  # the lines of its shutdown as well
