"""The wire contract shared by edge agents and the hub: topics, message models, signing.

The names below are loaded on first use: `import protocol.topics` on the agent must not bring
in the hub's pydantic models (protocol/lite.py is the agent's side of the same contract).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocol.envelope import (
        Envelope,
        decode_envelope,
        encode_envelope,
        new_envelope,
    )
    from protocol.limits import MAX_PAYLOAD_BYTES
    from protocol.topics import TopicKind, TopicParts, parse_topic, topic
    from protocol.vocab import PROTOCOL_VERSION, EventType, ProtocolError

_HOMES = {
    "MAX_PAYLOAD_BYTES": "protocol.limits",
    "PROTOCOL_VERSION": "protocol.vocab",
    "Envelope": "protocol.envelope",
    "EventType": "protocol.vocab",
    "ProtocolError": "protocol.vocab",
    "TopicKind": "protocol.topics",
    "TopicParts": "protocol.topics",
    "decode_envelope": "protocol.envelope",
    "encode_envelope": "protocol.envelope",
    "new_envelope": "protocol.envelope",
    "parse_topic": "protocol.topics",
    "topic": "protocol.topics",
}

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "Envelope",
    "EventType",
    "ProtocolError",
    "TopicKind",
    "TopicParts",
    "decode_envelope",
    "encode_envelope",
    "new_envelope",
    "parse_topic",
    "topic",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'protocol' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
