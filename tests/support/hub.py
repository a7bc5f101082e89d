"""`atelier hub serve` as a real subprocess: its settings, a bounded wait for /health, a clean stop.

The stop is `Proc.stop`: one SIGTERM, then SIGKILL when the hub has not exited in time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hub.core.security import load_or_create_signing_key
from protocol.allowlist import public_key_b64
from tests.support.mosquitto import MosquittoBroker, free_port
from tests.support.processes import Proc, wait_until


@dataclass(frozen=True)
class HubSettings:
    """What a test hub is started with; `extra_env` adds or overrides ATELIER_* variables."""

    data_dir: Path
    database_url: str
    site: str
    broker: MosquittoBroker
    http_port: int = field(default_factory=free_port)
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        return {
            "ATELIER_DATA_DIR": str(self.data_dir),
            "ATELIER_DATABASE_URL": self.database_url,
            "ATELIER_SITE": self.site,
            "ATELIER_MQTT_HOST": self.broker.host,
            "ATELIER_MQTT_PORT": str(self.broker.port),
            "ATELIER_MQTT_USERNAME": self.broker.hub_user,
            "ATELIER_MQTT_PASSWORD": self.broker.hub_password,
            "ATELIER_HTTP_PORT": str(self.http_port),
            **self.extra_env,
        }

    def public_key(self) -> str:
        """The agents' `hub_public_key`. Creates the hub's signing key in `data_dir` if it is
        not there yet: call it before the hub starts, so that only one process writes the key."""
        return public_key_b64(load_or_create_signing_key(self.data_dir).public_key())


def start_hub(settings: HubSettings, *, log: Path, timeout: float = 30) -> Proc:
    """Start `atelier hub serve` and return once GET /health answers 200.

    A hub that exits or never answers within `timeout` seconds is stopped, and the
    AssertionError carries the tail of its log."""
    hub = Proc(["hub", "serve"], log=log, env=settings.env())
    try:
        wait_until(
            lambda: httpx.get(f"{settings.url}/health", timeout=2).status_code == 200,
            timeout=timeout,
            what="the hub to answer /health",
            proc=hub,
        )
    except BaseException:
        hub.stop()
        raise
    return hub
