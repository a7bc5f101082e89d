"""The hub's Ed25519 signing key for allow-lists and commands."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE = "hub_ed25519.pem"


def _load(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_or_create_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The key in data_dir, made on first use. The hub and its ingest workers may start at
    the same moment: the key is written whole to a private temporary file, then linked into
    place, so exactly one of them creates it and every other one reads that same key."""
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        return _load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd, temporary = tempfile.mkstemp(prefix=".hub-key-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # fails if another process got there first
        except FileExistsError:
            return _load(path)
    finally:
        os.unlink(temporary)
    return key
