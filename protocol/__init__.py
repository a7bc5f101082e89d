"""The wire contract shared by edge agents and the hub: topics, message models, signing."""

from protocol.envelope import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    Envelope,
    EventType,
    ProtocolError,
    decode_envelope,
    encode_envelope,
    new_envelope,
)
from protocol.topics import TopicKind, TopicParts, parse_topic, topic

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
