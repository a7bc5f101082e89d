"""Signed hub messages as the agent opens them: the wrapper, the key id, the signature check.

Free of any validation library, so both the hub (protocol/allowlist.py, protocol/commands.py)
and the agent (protocol/lite.py) open allow-lists and commands with this one code.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from protocol.keys import HubKey
from protocol.vocab import ProtocolError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# 5,000 members with a few badges each fit comfortably; the event limit does not apply here.
MAX_ALLOWLIST_BYTES = 4 * 1024 * 1024
MAX_LIST_VERSION = 2**63 - 1  # the hub's machine.acl_version is a BIGINT
# A machine booked back to back in 30-minute slots for a list's validity (a week at most).
MAX_BOOKINGS = 2_000


class ListRefused(ProtocolError):
    """A list signed by the hub but not taken: `offered` is its (signed) version."""

    def __init__(self, reason: str, detail: str, offered: int) -> None:
        super().__init__(reason, detail)
        self.offered = offered


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key: Ed25519PublicKey | HubKey) -> str:
    return hashlib.sha256(HubKey.of(public_key).raw).hexdigest()[:16]


def load_public_key(b64: str) -> HubKey:
    """The hub's public key as written in an agent config (base64 of the 32 raw bytes)."""
    return HubKey.from_b64(b64)


def open_signed(
    payload: bytes | str,
    public_key: HubKey | Ed25519PublicKey,
    *,
    field: str,
    what: str,
    max_bytes: int,
) -> dict[str, Any]:
    """The signed object `field` of a hub wrapper (`{"v", "key_id", "sig", field: {...}}`),
    once its signature is the hub's; or ProtocolError: too_large, not_json, invalid_field,
    unsigned, bad_signature. Allow-lists and commands travel this way."""
    raw = payload.encode() if isinstance(payload, str) else payload
    if len(raw) > max_bytes:
        raise ProtocolError("too_large", f"{what} is {len(raw)} bytes, limit {max_bytes}")
    try:
        wire = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("not_json", f"{what} is not JSON: {exc}") from None
    if not isinstance(wire, dict) or not isinstance(wire.get(field), dict):
        raise ProtocolError("invalid_field", f"{what} must be an object with a '{field}' object")
    sig = wire.get("sig")
    if not isinstance(sig, str) or not sig:
        raise ProtocolError("unsigned", f"{what} carries no signature")
    body: dict[str, Any] = wire[field]
    if not HubKey.of(public_key).verify(sig, canonical_json(body)):
        raise ProtocolError(
            "bad_signature", f"{what} signature does not match the hub key in this config"
        )
    return body
