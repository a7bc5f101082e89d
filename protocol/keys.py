"""The hub's Ed25519 public key as an agent holds it, verified through libsodium (PyNaCl).

On a Pi the agent only ever verifies: libsodium's bindings take about 2 MB of memory where
OpenSSL's (the `cryptography` package, which the hub uses to sign and to run its CA) take 9.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class HubKey:
    """Verifies signatures made with the hub's private key."""

    __slots__ = ("raw", "_verify_key")

    def __init__(self, raw: bytes) -> None:
        from nacl.signing import VerifyKey

        if len(raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        self.raw = raw
        self._verify_key = VerifyKey(raw)

    @classmethod
    def from_b64(cls, value: str) -> HubKey:
        try:
            return cls(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(
                "hub_public_key must be the base64 of a 32-byte Ed25519 public key "
                "(as printed by `atelier hub keys`)"
            ) from exc

    @classmethod
    def of(cls, key: HubKey | Ed25519PublicKey) -> HubKey:
        """Accept the hub's own `cryptography` key object too (hub side, tests)."""
        if isinstance(key, HubKey):
            return key
        from cryptography.hazmat.primitives import serialization

        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def verify(self, signature_b64: str, data: bytes) -> bool:
        """True when `signature_b64` is the hub's signature of exactly these bytes."""
        from nacl.exceptions import BadSignatureError

        try:
            self._verify_key.verify(data, base64.b64decode(signature_b64, validate=True))
        except (BadSignatureError, binascii.Error, ValueError):
            return False
        return True
