"""An agent that decides offline from a signed allow-list already in its state directory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.config import AgentConfig, parse_config
from protocol.allowlist import AllowEntry, AllowList, public_key_b64, sign_allowlist
from tests.support.mosquitto import free_port


def offline_config(
    state_dir: Path,
    entries: list[AllowEntry],
    *,
    version: int = 1,
    key: Ed25519PrivateKey | None = None,
    **sections: dict[str, Any] | list[dict[str, Any]],
) -> AgentConfig:
    """Config for machine laser-1 with a cached list signed by a fresh hub key; no broker
    listens on its port, so every decision is taken offline."""
    key = key or Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "allowlist.json").write_bytes(
        sign_allowlist(
            AllowList(
                site="lab",
                machine="laser-1",
                machine_type="laser",
                version=version,
                issued_at=now,
                expires_at=now + timedelta(days=30),
                entries=entries,
            ),
            key,
        )
    )
    data: dict[str, Any] = {
        "agent": {
            "site": "lab",
            "machine": "laser-1",
            "state_dir": str(state_dir),
            "hub_public_key": public_key_b64(key.public_key()),
        },
        "mqtt": {"port": free_port()},
        "gpio": {"pin_factory": "mock"},
        "relay": {"pin": 17},
        "reader": {"type": "sim"},
    }
    for section, values in sections.items():
        # A table is merged into the default one; an array of tables ([[interlock]]) is taken.
        data[section] = values if isinstance(values, list) else {**data.get(section, {}), **values}
    return parse_config(data)
