"""The wire contract: envelope round trips and refusals, topics, the signed allow-list."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    MAX_PAYLOAD_BYTES,
    EventType,
    ProtocolError,
    TopicKind,
    decode_envelope,
    encode_envelope,
    new_envelope,
    parse_topic,
    topic,
)
from protocol.allowlist import (
    AllowEntry,
    AllowList,
    load_public_key,
    public_key_b64,
    sign_allowlist,
    verify_allowlist,
)
from protocol.badges import normalise_uid, uid_from_mfrc522_id
from protocol.messages import Command, CommandName, Status, decode_message

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _valid() -> dict[str, object]:
    return {
        "v": 1,
        "id": str(uuid.uuid4()),
        "seq": 7,
        "ts": "2026-11-22T12:00:00Z",
        "machine": "laser-1",
        "type": "badge.denied",
        "data": {"badge": "04A1B2C3", "reason": "not_trained"},
    }


def test_envelope_round_trip_keeps_every_field() -> None:
    env = new_envelope(
        machine="laser-1",
        type=EventType.SESSION_STARTED,
        seq=42,
        data={"session_id": "s1", "member": "m-1", "badge": "04A1B2C3"},
        now=lambda: NOW,
    )
    wire = encode_envelope(env)
    assert json.loads(wire)["ts"] == "2026-11-22T12:00:00Z"
    assert decode_envelope(wire) == env


def test_timestamps_are_normalised_to_utc() -> None:
    payload = _valid() | {"ts": "2026-11-22T13:00:00+01:00"}
    env = decode_envelope(json.dumps(payload))
    assert env.ts == NOW


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p | {"v": 2}, "unknown_version"),
        (lambda p: p | {"v": True}, "unknown_version"),
        (lambda p: {k: v for k, v in p.items() if k != "v"}, "missing_field"),
        (lambda p: {k: v for k, v in p.items() if k != "id"}, "missing_field"),
        (lambda p: {k: v for k, v in p.items() if k != "seq"}, "missing_field"),
        (lambda p: p | {"seq": -1}, "invalid_field"),
        (lambda p: p | {"id": "not-a-uuid"}, "invalid_field"),
        (lambda p: p | {"ts": "2026-11-22T12:00:00"}, "invalid_field"),  # no timezone
        (lambda p: p | {"machine": "Laser 1"}, "invalid_field"),
        (lambda p: p | {"machine": "atelier/#"}, "invalid_field"),
        (lambda p: p | {"type": "badge.teleported"}, "unknown_type"),
        (lambda p: p | {"extra": 1}, "unknown_field"),
        (lambda p: p | {"data": {"badge": "04A1B2C3"}}, "invalid_data"),
        (lambda p: p | {"data": {"badge": "04A1B2C3", "reason": "bored"}}, "invalid_data"),
    ],
)
def test_decode_refuses_with_a_reason(mutate, reason) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_envelope(json.dumps(mutate(_valid())))
    assert caught.value.reason == reason
    assert caught.value.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not_json"),
        (b"{", "not_json"),
        (b"\xff\xfe", "not_utf8"),
        (b"[1, 2]", "not_object"),
        (b'"offline"', "not_object"),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), "too_large"),
        (b"[" * 100_000, "too_large"),
    ],
)
def test_decode_refuses_what_is_not_an_envelope(payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_envelope(payload)
    assert caught.value.reason == reason


def test_deeply_nested_json_under_the_size_limit_is_refused_not_crashing() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_envelope(b"[" * 8_000 + b"]" * 8_000)
    assert caught.value.reason in {"not_json", "not_object"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {},
            optional={
                "v": json_values,
                "id": st.uuids().map(str) | json_values,
                "seq": st.integers() | json_values,
                "ts": st.just("2026-11-22T12:00:00Z") | json_values,
                "machine": st.just("laser-1") | json_values,
                "type": st.sampled_from([t.value for t in EventType]) | json_values,
                "data": json_values,
            },
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_decoder_never_raises_anything_but_protocol_error(payload: bytes) -> None:
    try:
        env = decode_envelope(payload)
    except ProtocolError as exc:
        assert exc.reason
        return
    # Whatever was accepted encodes back and decodes to the same thing.
    assert decode_envelope(encode_envelope(env)) == env


def test_topics_round_trip_and_reject_wildcards() -> None:
    t = topic("fablab-paris", "laser-1", TopicKind.EVENT)
    assert t == "atelier/v1/fablab-paris/laser-1/event"
    parts = parse_topic(t)
    assert (parts.site, parts.machine, parts.kind) == ("fablab-paris", "laser-1", TopicKind.EVENT)
    for bad in [
        "atelier/v1/+/laser-1/event",
        "atelier/v2/a/b/event",
        "atelier/v1/a/b/c/event",
        "atelier/v1/a/b/gossip",
    ]:
        with pytest.raises(ValueError):
            parse_topic(bad)
    with pytest.raises(ValueError, match="site"):
        topic("Fab Lab", "laser-1", TopicKind.ACL)


def _list(version: int = 3, expires: timedelta = timedelta(days=7)) -> AllowList:
    return AllowList(
        site="lab",
        machine="laser-1",
        machine_type="laser",
        version=version,
        issued_at=NOW,
        expires_at=NOW + expires,
        entries=[AllowEntry(badge="04A1B2C3", member="m-1", level="trainer")],
    )


def test_signed_allowlist_verifies_and_survives_reserialisation() -> None:
    key = Ed25519PrivateKey.generate()
    wire = sign_allowlist(_list(), key)
    # A broker or bridge may re-encode JSON with other spacing and key order.
    reencoded = json.dumps(json.loads(wire), indent=2, sort_keys=False).encode()
    pub = load_public_key(public_key_b64(key.public_key()))
    got = verify_allowlist(reencoded, pub, now=NOW)
    assert got.by_badge()["04A1B2C3"].level == "trainer"


def test_allowlist_refusals() -> None:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    wire = sign_allowlist(_list(version=3), key)
    cases = {
        "bad_signature": lambda: verify_allowlist(
            sign_allowlist(_list(), Ed25519PrivateKey.generate()), pub, now=NOW
        ),
        "expired": lambda: verify_allowlist(wire, pub, now=NOW + timedelta(days=8)),
        "stale": lambda: verify_allowlist(wire, pub, now=NOW, current_version=3),
        "unsigned": lambda: verify_allowlist(
            json.dumps({"v": 1, "list": json.loads(wire)["list"]}), pub, now=NOW
        ),
        "not_json": lambda: verify_allowlist(b"{nope", pub, now=NOW),
    }
    for reason, call in cases.items():
        with pytest.raises(ProtocolError) as caught:
            call()
        assert caught.value.reason == reason, reason


def test_tampered_allowlist_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    wire = json.loads(sign_allowlist(_list(), key))
    wire["list"]["entries"][0]["badge"] = "DEADBEEF"
    with pytest.raises(ProtocolError) as caught:
        verify_allowlist(json.dumps(wire), key.public_key(), now=NOW)
    assert caught.value.reason == "bad_signature"


def test_public_key_config_error_names_the_fix() -> None:
    with pytest.raises(ValueError, match="atelier hub keys"):
        load_public_key("not base64!")


def test_badge_uids() -> None:
    assert normalise_uid("04:a1:b2:c3") == "04A1B2C3"
    assert normalise_uid(" 04a1b2c3d4e5f6 ") == "04A1B2C3D4E5F6"
    for bad in ["04A1B2", "ZZZZZZZZ", "04A1B2C3D", ""]:
        with pytest.raises(ValueError, match="badge uid"):
            normalise_uid(bad)
    uid = bytes([0x04, 0xA1, 0xB2, 0xC3])
    bcc = uid[0] ^ uid[1] ^ uid[2] ^ uid[3]
    assert uid_from_mfrc522_id(int.from_bytes(uid + bytes([bcc]), "big")) == "04A1B2C3"
    with pytest.raises(ValueError, match="BCC"):
        uid_from_mfrc522_id(int.from_bytes(uid + bytes([bcc ^ 1]), "big"))


def test_status_and_command_messages() -> None:
    will = Status(machine="laser-1", state="offline").encode()
    assert json.loads(will) == {"v": 1, "machine": "laser-1", "state": "offline"}
    cmd = Command(ts=NOW, cmd=CommandName.LOCK, args={"reason": "tube"})
    back = decode_message(Command, cmd.encode())
    assert back.cmd is CommandName.LOCK and back.id == cmd.id
    with pytest.raises(ProtocolError) as caught:
        decode_message(Command, b'{"v":1,"ts":"2026-11-22T12:00:00Z","cmd":"selfdestruct"}')
    assert caught.value.reason == "invalid_field"
