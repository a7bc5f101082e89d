"""The hub's signing key: made once, even when the hub and its workers start together."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hub.core.security import KEY_FILE, load_or_create_signing_key
from protocol.allowlist import public_key_b64


def _public_key(data_dir: str) -> str:
    return public_key_b64(load_or_create_signing_key(Path(data_dir)).public_key())


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    for attempt in range(5):
        data_dir = tmp_path / str(attempt)
        with ProcessPoolExecutor(4) as pool:
            keys = set(pool.map(_public_key, [str(data_dir)] * 8))
        assert len(keys) == 1
        assert [p.name for p in data_dir.iterdir()] == [KEY_FILE]  # no temporary file left
        assert (data_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600
        assert _public_key(str(data_dir)) in keys  # and it is the one kept
