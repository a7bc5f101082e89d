"""One contract, two checkers: the agent's msgspec side (protocol/lite.py) accepts and refuses
exactly the messages the hub's pydantic side (protocol/envelope.py, messages.py, allowlist.py,
commands.py) does, on Hypothesis-generated values at and past every bound (NUL, lone
surrogates, NaN, infinities, 64-bit overflow, far dates, wrong types, unknown fields)."""

from __future__ import annotations

import json
import math
import typing
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol import limits, lite
from protocol.allowlist import sign_body
from protocol.allowlist import verify_allowlist as hub_verify_allowlist
from protocol.commands import verify_command as hub_verify_command
from protocol.envelope import DATA_MODELS, decode_envelope
from protocol.keys import HubKey
from protocol.messages import Status, Telemetry, decode_message
from protocol.signed import MAX_BOOKINGS, canonical_json, key_id
from protocol.vocab import PROTOCOL_VERSION, EventType, ProtocolError

EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "a\x00b", "\ud800", "m-1", "badge", "x" * 20, "x" * 21, "x" * 64]),
    st.integers(0, 5000).map(lambda n: "y" * n),
)
# Floats past 2**53 are left out: JSON cannot carry them exactly, and a whole one given for a
# count is taken by pydantic's lax integers and refused by msgspec's (no agent sends one).
numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(-(2.0**53), 2.0**53),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.sampled_from(
        [0, -1, 0.0, -0.0, 1e15, -1e15 - 1, limits.DURATION_MAX_S, limits.DURATION_MAX_S + 1, 2**63]
    ),
)
hostile = st.one_of(
    texts,
    numbers,
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["1.5", "12", "nan", "true"]),
)


def _good(name: str, annotation: Any) -> st.SearchStrategy[Any]:
    """A value a field of this name takes (the usual case), to reach deep checks too."""
    text = str(annotation)
    if "DenyReason" in text:
        return st.sampled_from(["unknown_badge", "not_trained", "booked", "spool_tag", "nope"])
    if "datetime" in text:  # a booking's start (session.warned `until`), at and past the bounds
        return st.one_of(
            st.datetimes(
                min_value=datetime(1, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]),
            ).map(lambda at: at.isoformat()),
            st.sampled_from(
                ["2026-12-08T14:00:00Z", "2026-12-08T14:00:00", "2200-01-01T00:00:00Z"]
            ),
        )
    if "float" in text or "Duration" in text:
        return st.floats(0, 1e6)
    if "int" in text:
        return st.integers(0, 10)
    if name == "mode":
        return st.sampled_from(["normal", "supervised", "maintenance", "other"])
    return st.text(alphabet="abc-1", min_size=1, max_size=10)


@st.composite
def event_data(draw: st.DrawFn) -> tuple[EventType, dict[str, Any]]:
    kind = draw(st.sampled_from(list(EventType)))
    hints = typing.get_type_hints(lite.DATA_STRUCTS[kind], include_extras=True)
    data: dict[str, Any] = {}
    for name, annotation in hints.items():
        choice = draw(st.sampled_from(["good", "good", "hostile", "absent"]))
        if choice == "good":
            data[name] = draw(_good(name, annotation))
        elif choice == "hostile":
            data[name] = draw(hostile)
    if draw(st.booleans()):
        # Additive fields: a newer revision's, and those the bookings added to events the
        # models do not name (badge.denied free_at, session.started until and slot_end,
        # session.ended overrun): kept as given, checked as JSON.
        extra = ["extra", "a\x00", "note2", "free_at", "until", "slot_end", "overrun"]
        data[draw(st.sampled_from(extra))] = draw(
            st.one_of(hostile, st.just("2026-12-08T14:00:00Z"))
        )
    return kind, data


def hub_takes_data(kind: EventType, data: dict[str, Any]) -> bool:
    """What the hub's envelope does with `data`: check_json on the whole, then the model."""
    try:
        limits.check_json(data)
        DATA_MODELS[kind].model_validate(data)
    except (ValueError, ValidationError):
        return False
    return True


def edge_takes_data(kind: EventType, data: dict[str, Any]) -> bool:
    try:
        lite.check_data(kind, data)
    except lite.ValidationError:
        return False
    return True


@EXAMPLES
@given(case=event_data())
def test_the_agent_accepts_and_refuses_event_data_as_the_hub_does(
    case: tuple[EventType, dict[str, Any]],
) -> None:
    kind, data = case
    assert edge_takes_data(kind, data) == hub_takes_data(kind, data), (kind, data)


@EXAMPLES
@given(
    case=event_data(),
    seq=st.one_of(st.integers(0, 10), st.integers(-5, -1), st.integers(2**63 - 2, 2**64)),
    ts=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    machine=st.sampled_from(["laser-1", "Laser 1", "", "a" * 63, "a" * 64]),
)
def test_every_event_the_agent_builds_the_hub_stores_and_the_rest_both_refuse(
    case: tuple[EventType, dict[str, Any]], seq: int, ts: datetime, machine: str
) -> None:
    kind, data = case
    try:
        event = lite.new_event(machine=machine, type=kind, seq=seq, data=data, now=lambda: ts)
    except lite.ValidationError:
        event = None
    hub_ok = (
        hub_takes_data(kind, data)
        and 0 <= seq <= limits.SEQ_MAX
        and limits.TS_MIN <= ts < limits.TS_MAX
        and len(machine) <= 63
        and machine[:1].isalnum()
        and machine == machine.lower()
        and " " not in machine
    )
    assert (event is not None) == hub_ok, (kind, data, seq, ts, machine)
    if event is not None:
        stored = decode_envelope(lite.encode_event(event))  # ProtocolError fails the test
        assert (stored.id, stored.seq, stored.type, stored.data) == (
            event.id,
            seq,
            kind,
            json.loads(json.dumps(data)),
        )
        assert stored.ts == ts


@EXAMPLES
@given(case=event_data())
def test_fitted_data_is_the_same_on_both_sides(case: tuple[EventType, dict[str, Any]]) -> None:
    """What the agent cuts to fit (a printer's file name, a plug's reading), the hub's former
    pydantic fitting cut the same way; what neither can fit, both refuse."""
    from protocol.envelope import fit_data as hub_fit

    kind, data = case
    try:
        hub = hub_fit(kind, dict(data))
    except ValidationError:
        hub = None
    try:
        edge = lite.fit_data(kind, dict(data))
    except lite.ValidationError:
        edge = None
    assert (edge is None) == (hub is None), (kind, data, edge, hub)
    if edge is not None and hub is not None:
        assert edge == hub
        assert hub_takes_data(kind, edge)


# The agent builds its status from typed values: each field gets values of its JSON type,
# hostile in content (NUL, lone surrogates, NaN, overflow, lengths, unknown literals); the two
# libraries' lax coercions across types (a float for a boolean) are not part of the contract.
status_fields = st.fixed_dictionaries(
    {},
    optional={
        "ts": st.one_of(
            st.datetimes(timezones=st.just(UTC)),
            st.datetimes(timezones=st.just(timezone(timedelta(hours=2)))),
        ),
        "version": texts,
        "uptime_s": numbers,
        "relay": st.sampled_from(["open", "closed", "ajar"]),
        "session": st.one_of(
            st.fixed_dictionaries({"session_id": texts, "member": texts}),
            st.fixed_dictionaries({"session_id": texts}),
        ),
        "busy": st.booleans(),
        "backlog": numbers,
        "acl_version": numbers,
        "acl_refused": texts,
        "last_seq": numbers,
        "interlocks": st.dictionaries(texts, st.booleans(), max_size=2),
        "journal": hostile,
    },
)


def hub_takes(model: type[Any], wire: dict[str, Any]) -> bool:
    try:
        decode_message(model, json.dumps(wire))
    except (ProtocolError, ValueError):
        return False
    return True


@EXAMPLES
@given(
    fields=status_fields,
    machine=st.sampled_from(["laser-1", "Laser"]),
    state=st.sampled_from(["online", "offline", "asleep"]),
)
def test_a_status_the_agent_sends_is_one_the_hub_takes(
    fields: dict[str, Any], machine: str, state: str
) -> None:
    try:
        sent: bytes | None = lite.status(machine=machine, state=state, **fields).encode()
    except (lite.ValidationError, ValueError):
        sent = None
    given = {k: v for k, v in fields.items() if v is not None}
    wire = json.loads(json.dumps(lite._wire({"v": 1, "machine": machine, "state": state, **given})))
    if sent is not None:
        assert decode_message(Status, sent).machine == machine
    else:
        # The agent refused: the hub would have too (checked on the same values as JSON; what
        # JSON cannot carry at all, NaN and infinities, the agent refuses before sending).
        finite = all(not (isinstance(v, float) and not math.isfinite(v)) for v in fields.values())
        if finite:
            try:
                ok = hub_takes(Status, wire)
            except ValueError:
                ok = False
            assert not ok, (fields, machine, state)


@EXAMPLES
@given(
    values=st.dictionaries(texts, hostile, max_size=4),
    ts=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
)
def test_telemetry_the_agent_sends_is_telemetry_the_hub_takes(
    values: dict[str, Any], ts: datetime
) -> None:
    try:
        sent: bytes | None = lite.telemetry(machine="laser-1", ts=ts, values=values).encode()
    except (lite.ValidationError, ValueError):
        sent = None
    if sent is not None:
        assert decode_message(Telemetry, sent).values == json.loads(json.dumps(values))
    elif all(not (isinstance(v, float) and not math.isfinite(v)) for v in values.values()):
        wire = {"v": 1, "machine": "laser-1", "ts": lite.utc_iso(ts), "values": values}
        assert not hub_takes(Telemetry, wire), (values, ts)


KEY = Ed25519PrivateKey.generate()
HUB_KEY = HubKey.of(KEY.public_key())
NOW = datetime(2026, 12, 8, 12, tzinfo=UTC)


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten: lists that pass every check but one are the interesting ones."""
    return st.integers(0, 9).flatmap(lambda n: bad if n == 0 else good)


@st.composite
def list_bodies(draw: st.DrawFn) -> dict[str, Any]:
    when = mostly(
        st.datetimes(
            min_value=datetime(2026, 12, 9), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ).map(iso),
        # Not a Unix time as a number or a numeric text: pydantic takes those as times, msgspec
        # does not; the hub writes ISO-8601 only (a difference no list of the hub's can show).
        st.one_of(
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(iso),
            st.datetimes(timezones=st.just(UTC)).map(iso),
            st.sampled_from(["yesterday", "", "2026-13-01T00:00:00Z", "2026-12-09", None, True]),
            st.text(alphabet="abcT:-", max_size=8),
        ),
    )
    entry = st.fixed_dictionaries(
        {
            "badge": mostly(
                st.sampled_from(["04A1B2C3", "04A1B2C3D4E5F6"]),
                st.one_of(st.just("04a1b2c3"), texts),
            )
        },
        optional={
            "member": mostly(st.just("m-1"), hostile),
            "level": mostly(st.sampled_from(["user", "trainer", "maintainer"]), st.just("god")),
            "supervised_only": mostly(st.booleans(), hostile),
            "training_expires_at": st.one_of(st.none(), when),
            "block": mostly(st.sampled_from([None, "balance", "quota"]), st.just("bogus")),
            "trainings": st.dictionaries(
                st.sampled_from(["rotary", "laser"]), st.one_of(st.none(), when), max_size=2
            ),
        },
    )
    slot = st.fixed_dictionaries(
        {"starts_at": when, "ends_at": when},
        optional={"member": mostly(st.one_of(st.none(), st.just("m-1")), hostile), "x": hostile},
    )
    bookings = st.one_of(
        st.lists(slot, max_size=3),
        # At and past the bound on bookings (protocol/signed.py MAX_BOOKINGS).
        st.sampled_from([MAX_BOOKINGS, MAX_BOOKINGS + 1]).map(
            lambda n: [{"starts_at": "2026-12-09T10:00:00Z", "ends_at": "2026-12-09T10:30:00Z"}] * n
        ),
        hostile,
    )
    spools = mostly(
        st.lists(st.one_of(st.just("04C0FFEE"), texts), max_size=3),
        st.one_of(hostile, st.lists(hostile, max_size=2)),
    )
    body = draw(
        st.fixed_dictionaries(
            {
                "site": mostly(st.just("lab"), st.just("Lab")),
                "machine": mostly(st.just("laser-1"), st.just("laser 1")),
                "machine_type": mostly(st.just("laser"), hostile),
                "version": mostly(st.integers(1, 10), numbers),
                "issued_at": when,
                "expires_at": when,
            },
            optional={
                "v": mostly(st.just(1), st.sampled_from([2, True, 1.0, "1"])),
                "locked": mostly(st.booleans(), hostile),
                "lock_reason": mostly(st.none(), texts),
                "entries": st.lists(entry, max_size=3),
                "spools": spools,
                "bookings": mostly(st.lists(slot, max_size=3), bookings),
                "newer_field": hostile,
            },
        )
    )
    return body


def outcome(check: Any) -> tuple[str, Any]:
    try:
        allowlist = check()
    except ProtocolError as exc:
        return exc.reason, None
    entries = [
        (e.badge, e.member, e.level, e.supervised_only, e.training_expires_at, e.block)
        for e in allowlist.entries
    ]
    slots = [(b.starts_at, b.ends_at, b.member) for b in allowlist.slots()]
    spools = sorted(s for s in allowlist.spools if allowlist.is_spool(s))
    return "ok", (allowlist.version, allowlist.expires_at, allowlist.locked, entries, slots, spools)


@EXAMPLES
@given(body=list_bodies(), current=st.sampled_from([None, 1, 5]))
def test_the_agent_takes_and_refuses_allow_lists_as_the_hubs_model_does(
    body: dict[str, Any], current: int | None
) -> None:
    try:
        json.dumps(body, allow_nan=False)  # NaN is not JSON; the hub signs none
        payload = sign_body(body, KEY)
    except (TypeError, ValueError):
        return
    hub = outcome(lambda: hub_verify_allowlist(payload, HUB_KEY, now=NOW, current_version=current))
    edge = outcome(
        lambda: lite.verify_allowlist(payload, HUB_KEY, now=NOW, current_version=current)
    )
    assert edge == hub, (repr(body), edge, hub)


@EXAMPLES
@given(
    cmd=mostly(st.sampled_from(["lock", "unlock", "sync", "enrol"]), st.just("reboot")),
    args=st.dictionaries(st.sampled_from(["from_seq", "reason", "window_s"]), hostile, max_size=2),
    age=mostly(st.just(timedelta(0)), st.sampled_from([timedelta(hours=25), timedelta(days=-1)])),
    machine=mostly(st.just("laser-1"), st.just("printer-2")),
    extra=mostly(st.none(), st.fixed_dictionaries({"id": hostile})),
)
def test_the_agent_takes_and_refuses_commands_as_the_hubs_model_does(
    cmd: str, args: dict[str, Any], age: timedelta, machine: str, extra: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "id": str(uuid.uuid4()),
        "ts": (NOW - age).isoformat(),
        "cmd": cmd,
        "args": args,
        "machine": machine,
        **(extra or {}),
    }
    try:
        json.dumps(body, allow_nan=False)  # NaN is not JSON; the hub signs none
        signature = KEY.sign(canonical_json(body))
    except (TypeError, ValueError):
        return
    import base64

    wire = json.dumps(
        {
            "v": 1,
            "key_id": key_id(HUB_KEY),
            "sig": base64.b64encode(signature).decode(),
            "command": body,
        }
    ).encode()

    def run(check: Any) -> tuple[str, Any]:
        try:
            command = check(wire, HUB_KEY, machine="laser-1", now=NOW)
        except ProtocolError as exc:
            return exc.reason, None
        return "ok", (str(command.id), command.ts, str(command.cmd.value), command.args)

    assert run(lite.verify_command) == run(hub_verify_command), body


def test_the_agent_loads_no_pydantic() -> None:
    """The point of protocol/lite.py: the agent's process never imports pydantic."""
    import subprocess
    import sys

    code = (
        "import sys, edge.service, edge.agent, edge.config, edge.hardware.mfrc522_reader;"
        "print('pydantic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kind", list(EventType))
def test_both_sides_know_the_same_event_types_and_fields(kind: EventType) -> None:
    hub_fields = set(DATA_MODELS[kind].model_fields)
    edge_fields = set(typing.get_type_hints(lite.DATA_STRUCTS[kind]))
    assert hub_fields == edge_fields


@pytest.mark.parametrize("count", [0, 1, MAX_BOOKINGS, MAX_BOOKINGS + 1])
def test_both_sides_bound_a_lists_bookings_alike(count: int) -> None:
    """A list may carry MAX_BOOKINGS bookings (a week of back-to-back half hours), not one
    more: past it, both sides refuse the list as invalid rather than decide on a part of it."""
    start = datetime(2026, 12, 9, 8, tzinfo=UTC)
    body: dict[str, Any] = {
        "site": "lab",
        "machine": "laser-1",
        "machine_type": "laser",
        "version": 3,
        "issued_at": NOW.isoformat(),
        "expires_at": (NOW + timedelta(days=7)).isoformat(),
        "spools": ["04C0FFEE"],
        "bookings": [
            {
                "starts_at": (start + timedelta(minutes=30 * i)).isoformat(),
                "ends_at": (start + timedelta(minutes=30 * (i + 1))).isoformat(),
                "member": None if i % 3 else "m-1",
            }
            for i in reversed(range(count))
        ],
    }
    payload = sign_body(body, KEY)
    hub = outcome(lambda: hub_verify_allowlist(payload, HUB_KEY, now=NOW))
    edge = outcome(lambda: lite.verify_allowlist(payload, HUB_KEY, now=NOW))
    assert edge == hub
    assert hub[0] == ("ok" if count <= MAX_BOOKINGS else "invalid_field")
    if count and count <= MAX_BOOKINGS:
        assert hub[1][4][0][0] == start  # sorted by start, though sent the other way round
        assert hub[1][5] == ["04C0FFEE"]
