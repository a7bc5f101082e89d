"""Hub -> agent commands, signed like the allow-lists.

On the wire (QoS 1 on .../cmd): `{"v":1, "command": {...Command..., "machine": "laser-1"},
"key_id": "...", "sig": "<base64 Ed25519 signature of canonical_json(command)>"}`. The agent
refuses a command the hub did not sign, one meant for another machine, one older than a day
(a command must not wake up long after it was meant) and one it has already applied.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from protocol.allowlist import canonical_json, key_id, open_signed
from protocol.envelope import MAX_PAYLOAD_BYTES, PROTOCOL_VERSION, ProtocolError, utc_iso
from protocol.keys import HubKey
from protocol.messages import Command

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

MAX_AGE = timedelta(hours=24)


def sign_command(command: Command, machine: str, private_key: Ed25519PrivateKey) -> bytes:
    """The wire payload of a command for this machine."""
    body = {**command.model_dump(mode="json"), "machine": machine}
    signature = base64.b64encode(private_key.sign(canonical_json(body))).decode()
    wire: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "key_id": key_id(private_key.public_key()),
        "sig": signature,
        "command": body,
    }
    return json.dumps(wire, separators=(",", ":")).encode()


def verify_command(
    payload: bytes | str,
    public_key: HubKey | Ed25519PublicKey,
    *,
    machine: str,
    now: datetime,
    max_age: timedelta = MAX_AGE,
) -> Command:
    """The command, or ProtocolError with a reason: too_large, not_json, invalid_field,
    unsigned, bad_signature, wrong_machine, stale."""
    body = open_signed(
        payload, public_key, field="command", what="command", max_bytes=MAX_PAYLOAD_BYTES
    )
    if body.get("machine") != machine:
        raise ProtocolError("wrong_machine", f"command is for {body.get('machine')!r}")
    try:
        # Strictly, as the JSON it came as, like the agent's side (protocol/lite.py).
        command = Command.model_validate_json(
            canonical_json({k: v for k, v in body.items() if k != "machine"}), strict=True
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ProtocolError("invalid_field", f"command field '{where}': {err['msg']}") from None
    if command.ts < now - max_age:
        raise ProtocolError("stale", f"command of {utc_iso(command.ts)} is too old to apply")
    return command
