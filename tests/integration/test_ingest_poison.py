"""Poison through the real path: hostile values in every field of every message type, from an
agent's own account through Mosquitto to the hub's ingest, on SQLite and PostgreSQL.

Each example is a burst of hostile messages (events of every type, statuses, telemetry) and
then good events. Afterwards the writer still runs, every good event is stored, and every
hostile message is accounted for: stored when the protocol takes it, a dead letter (found by
its sha256) when it does not. The shapes of broken payloads (truncated, wrong types, not
JSON) are tests/integration/test_ingest_fuzz.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import AwareDatetime
from pydantic.fields import FieldInfo
from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.consumer import IngestConsumer
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import DeadLetter, Event, TelemetrySample
from protocol import EventType, limits
from protocol.envelope import DATA_MODELS, ProtocolError, decode_envelope
from protocol.limits import BROKER_MESSAGE_SIZE_LIMIT, MAX_PAYLOAD_BYTES
from protocol.messages import Status, Telemetry, decode_message
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MACHINE = "laser-1"
TOPIC = f"atelier/v1/lab/{MACHINE}/{{kind}}"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

# A valid `data` for every event type: the base each hostile value replaces one field of.
DATA: dict[EventType, dict[str, Any]] = {
    EventType.BADGE_GRANTED: {"badge": "04A1B2C3", "member": "m-1", "session_id": "s1"},
    EventType.BADGE_DENIED: {"badge": "04A1B2C3", "reason": "not_trained", "member": "m-1"},
    EventType.BADGE_READ: {"badge": "04A1B2C3", "request_id": "r1"},
    EventType.SESSION_STARTED: {
        "session_id": "s1",
        "member": "m-1",
        "badge": "04A1B2C3",
        "mode": "normal",
        "supervisor": "m-2",
    },
    EventType.SESSION_ENDED: {
        "session_id": "s1",
        "member": "m-1",
        "reason": "badge-out",
        "duration_s": 60.0,
        "busy_s": 30.0,
    },
    EventType.MACHINE_BUSY: {"source": "beam", "session_id": "s1"},
    EventType.MACHINE_IDLE: {"source": "beam", "busy_s": 30.0, "session_id": "s1"},
    EventType.MACHINE_LOCKED: {"reason": "maintenance"},
    EventType.MACHINE_UNLOCKED: {"reason": "done"},
    EventType.JOB_STARTED: {"job_id": "j1", "file": "box.gcode", "session_id": "s1"},
    EventType.JOB_FINISHED: {"job_id": "j1", "duration_s": 10.0, "member": "m-1"},
    EventType.JOB_FAILED: {"job_id": "j1", "duration_s": 10.0, "error": "nozzle"},
    EventType.INCIDENT_REPORTED: {"source": "button", "note": "smoke", "member": "m-1"},
    EventType.AGENT_STARTED: {"version": "1.0", "recovered_sessions": 0},
    EventType.INTERLOCK_FAULT: {
        "interlock": "extraction",
        "kind": "extraction",
        "action": "warned",
        "session_id": "s1",
        "member": "m-1",
    },
    EventType.INTERLOCK_CLEARED: {"interlock": "extraction", "kind": "extraction"},
    EventType.ACCESSORY_REFUSED: {
        "accessory": "rotary",
        "training": "rotary",
        "reason": "not_trained",
        "member": "m-1",
        "session_id": "s1",
    },
    EventType.SESSION_WARNED: {
        "session_id": "s1",
        "member": "m-1",
        "until": "2026-12-07T13:00:00Z",
    },
    EventType.SPOOL_ATTACHED: {"session_id": "s1", "member": "m-1", "spool": "04AABBCC"},
}
STATUS: dict[str, Any] = {
    "v": 1,
    "machine": MACHINE,
    "state": "online",
    "ts": "2026-12-07T12:00:00Z",
    "version": "1.0",
    "uptime_s": 12.5,
    "relay": "closed",
    "session": {"session_id": "s1", "member": "m-1", "started_at": "2026-12-07T11:00:00Z"},
    "busy": False,
    "locked": False,
    "reader_ok": True,
    "backlog": 0,
    "acl_version": 3,
}
TELEMETRY: dict[str, Any] = {
    "v": 1,
    "machine": MACHINE,
    "ts": "2026-12-07T12:00:00Z",
    "values": {"progress": 12.5, "nozzle_c": 210, "state": "printing"},
}

# --- hostile values ---------------------------------------------------------------------------
EDGE_INTS = [0, -1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]
NASTY_TEXT = ["", "\x00", "a\x00b", "\ud800", "x\udfffy", "\u202e", "' OR 1=1 --", "\ufeff"]
zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
far_dates = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones
).map(lambda d: d.isoformat())
edge_dates = st.sampled_from(
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z"]
    + ["2199-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "1970-01-01T00:00:00Z"]
)
numbers = (
    st.sampled_from(EDGE_INTS)
    | st.integers()
    | st.floats()  # NaN, ±Infinity, 1e308, -0.0, subnormals
    | st.sampled_from([float("nan"), float("inf"), 1e300, 1e15, 1e16, 366 * 86400 + 1.0])
)
text = (
    st.sampled_from(NASTY_TEXT)
    | st.text(max_size=30)
    | st.text(st.characters(codec=None, categories=["Cs", "Cc"]), min_size=1, max_size=5)
    | st.integers(21, 5000).map(lambda n: "x" * n)  # column widths and the text limit
)
scalars = st.none() | st.booleans() | numbers | text | far_dates | edge_dates
nested = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
deep = st.integers(10, 60).map(lambda n: json.loads("[" * n + "1" + "]" * n))
# What a database refuses or Python cannot date, straight: drawn as often as the rest.
POISON = [float("nan"), float("inf"), float("-inf"), 1e300, 2**63, -(2**63) - 1, 10**30]
POISON += ["\x00", "a\x00b", "\ud800", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
poison = st.sampled_from(POISON)
hostile = poison | scalars | nested | deep


def like(base: Any) -> st.SearchStrategy[Any]:
    """Mostly a value of the field's own JSON type (so that typing alone does not refuse it:
    the limits must), sometimes anything."""
    if isinstance(base, bool):
        return st.booleans() | hostile
    if isinstance(base, int | float):
        return numbers | poison | hostile
    if isinstance(base, str):
        return text | far_dates | edge_dates | poison | hostile
    if isinstance(base, dict):
        return st.dictionaries(text, hostile, max_size=4) | hostile
    return hostile


def mutate(draw: st.DrawFn, body: dict[str, Any], fields: list[str]) -> None:
    """Replace one or two of `fields` ("key" or "outer.key"; "extra" adds a field of a
    newer revision, with a hostile name) with hostile values."""
    for where in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2)):
        target, key = body, where
        if "." in where:
            outer, key = where.split(".", 1)
            if not isinstance(body.get(outer), dict):
                body[outer] = {}
            target = body[outer]
        if key == "extra":
            target[draw(text)] = draw(hostile)
        else:
            target[key] = draw(like(target.get(key)))


@dataclass(frozen=True)
class Hostile:
    kind: str  # event, status, telemetry
    payload: bytes


def encode(obj: dict[str, Any]) -> bytes:
    # ensure_ascii: a lone surrogate travels as its escape, as a hostile agent would send it.
    return json.dumps(obj, allow_nan=True).encode()


@st.composite
def hostile_event(draw: st.DrawFn) -> Hostile:
    type_ = draw(st.sampled_from(list(EventType)))
    body: dict[str, Any] = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "seq": draw(st.integers(1, 10**6)),
        "ts": "2026-12-07T12:00:00Z",
        "machine": MACHINE,
        "type": type_.value,
        "data": dict(DATA[type_]),
    }
    data = [f"data.{key}" for key in [*DATA[type_], "extra", "extra"]]
    mutate(draw, body, ["v", "id", "seq", "ts", "machine", *data, *data])
    return Hostile("event", encode(body))


@st.composite
def hostile_message(draw: st.DrawFn, kind: str, base: dict[str, Any]) -> Hostile:
    body = json.loads(json.dumps(base))
    inner = [
        f"{outer}.{key}" for outer in ("session", "values") for key in ("member", "x", "extra")
    ]
    mutate(draw, body, [*base, "session.started_at", *inner, "extra", "extra"])
    return Hostile(kind, encode(body))


bursts = st.lists(
    hostile_event() | hostile_message("status", STATUS) | hostile_message("telemetry", TELEMETRY),
    min_size=4,
    max_size=16,
)


def accepted(message: Hostile) -> bool:
    """What the protocol takes (the same check the hub runs): stored, not dead-lettered."""
    try:
        if message.kind == "event":
            return decode_envelope(message.payload).machine == MACHINE
        decode_message(Status if message.kind == "status" else Telemetry, message.payload)
        return True
    except ProtocolError:
        return False


# The decoder's reason codes (protocol.md): a db_refused or not_storable dead letter would
# be a value the protocol let through and the database (or the hub's arithmetic) refused.
PROTOCOL_REASONS = {
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "unknown_version",
    "missing_field",
    "invalid_field",
    "unknown_field",
    "unknown_type",
    "invalid_data",
    "machine_mismatch",
}


# --- the real path ---------------------------------------------------------------------------
class Agent:
    """One machine's account on the broker (MQTT 5, as the agents)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        user, password = broker.agent_credentials(MACHINE)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"poison-{MACHINE}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_until(self.client.is_connected, timeout=10, what="the agent connected")

    def send(self, kind: str, payload: bytes, *, retain: bool = False) -> int:
        info = self.client.publish(TOPIC.format(kind=kind), payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        return info.mid

    def close(self) -> None:
        self.client.publish(TOPIC.format(kind="status"), b"", qos=1, retain=True).wait_for_publish(
            5
        )
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def ingest(
    database_url: str, mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[tuple[IngestConsumer, Agent]]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")  # laser-1 exists: statuses, incidents and jobs land
    hub_settings = get_settings(
        None,
        database_url=database_url,
        data_dir=tmp_path,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_username=mosquitto.hub_user,
        mqtt_password=mosquitto.hub_password,
        mqtt_client_id="poison-hub",
    )
    consumer = IngestConsumer(hub_settings, engine)
    consumer.start()
    agent = Agent(mosquitto)
    try:
        wait_until(consumer.subscribed.is_set, timeout=15, what="the ingest subscribed")
        yield consumer, agent
    finally:
        agent.close()
        consumer.stop()
        engine.dispose()


def good_event(seq: int) -> bytes:
    return encode(
        {
            "v": 1,
            "id": str(uuid.uuid4()),
            "seq": seq,
            "ts": "2026-12-07T12:00:00Z",
            "machine": MACHINE,
            "type": "incident.reported",
            "data": {"source": "button", "note": "after the poison"},
        }
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(burst=bursts)
def test_no_payload_stops_the_ingest_and_none_is_lost_silently(
    ingest: tuple[IngestConsumer, Agent], burst: list[Hostile]
) -> None:
    consumer, agent = ingest
    engine = consumer.writer.engine
    with Session(engine) as session:
        samples_before = session.exec(select(func.count()).select_from(TelemetrySample)).one()
    statuses_before = consumer.stats.statuses
    for message in burst:
        agent.send(message.kind, message.payload, retain=message.kind == "status")
    good = [good_event(10**7 + i) for i in range(3)]
    good_ids = [uuid.UUID(json.loads(p)["id"]) for p in good]
    for payload in good:
        agent.send("event", payload)

    def stored_good() -> bool:
        with Session(engine) as session:
            found = session.exec(select(func.count()).where(col(Event.id).in_(good_ids))).one()
        return found == len(good)

    wait_until(stored_good, timeout=30, what="the good events sent after the poison")
    assert consumer.writer_running()

    expected_dead = {hashlib.sha256(m.payload).hexdigest() for m in burst if not accepted(m)}
    with Session(engine) as session:
        hashes = set(
            session.exec(
                select(DeadLetter.sha256).where(col(DeadLetter.sha256).in_(expected_dead))
            ).all()
        )
        kept_events = {
            uuid.UUID(json.loads(m.payload)["id"])
            for m in burst
            if m.kind == "event" and accepted(m)
        }
        stored = set(session.exec(select(Event.id).where(col(Event.id).in_(kept_events))).all())
        samples = session.exec(select(func.count()).select_from(TelemetrySample)).one()
    assert hashes == expected_dead, "a refused message is not a dead letter"
    assert set(consumer.stats.dead_letters_by_reason()) <= PROTOCOL_REASONS
    assert stored == kept_events, "an accepted event was not stored"
    assert samples - samples_before == sum(
        1 for m in burst if m.kind == "telemetry" and accepted(m)
    )
    assert consumer.stats.statuses - statuses_before == sum(
        1 for m in burst if m.kind == "status" and accepted(m)
    )


# --- the edge of what the protocol takes --------------------------------------------------
EDGE_CHARS = ["x", "é", "\u202e", "\U0001f600", "'", "\\", '"', "\t"]


def edge_of(field: FieldInfo) -> st.SearchStrategy[Any]:
    """Values of one data field at the edges the model allows: strings of its full length (in
    characters of one to four UTF-8 bytes), numbers at both bounds, every enum value."""
    annotation, metadata, optional = field.annotation, list(field.metadata), False
    if type(None) in get_args(annotation):
        optional = True
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        for item in more:
            metadata.extend(getattr(item, "metadata", [item]))
    bound = {
        name: getattr(m, name)
        for m in metadata
        for name in ("max_length", "ge", "le")
        if hasattr(m, name)
    }
    values: st.SearchStrategy[Any]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        values = st.sampled_from([e.value for e in annotation])
    elif get_origin(annotation) is Literal:
        values = st.sampled_from(get_args(annotation))
    elif annotation is str:
        longest = bound.get("max_length", limits.TEXT_MAX_CHARS)
        values = st.builds(
            lambda char, n: char * n,
            st.sampled_from(EDGE_CHARS),
            st.sampled_from([longest, longest - 1, 1]),
        )
    elif annotation is float:
        values = st.sampled_from(
            [
                bound.get("ge", -limits.JSON_FLOAT_ABS_MAX),
                bound.get("le", limits.JSON_FLOAT_ABS_MAX),
            ]
        )
    elif annotation is int:
        values = st.sampled_from(
            [bound.get("ge", limits.JSON_INT_MIN), bound.get("le", limits.JSON_INT_MAX)]
        )
    elif annotation in (datetime, AwareDatetime):  # session.warned's until
        values = edge_times
    else:
        values = st.none()
    return values | st.none() if optional else values


edge_extras = st.sampled_from(
    [
        limits.JSON_INT_MAX,
        limits.JSON_INT_MIN,
        limits.JSON_FLOAT_ABS_MAX,
        -limits.JSON_FLOAT_ABS_MAX,
        "x" * limits.TEXT_MAX_CHARS,
        json.loads("[" * (limits.JSON_DEPTH_MAX - 1) + "1" + "]" * (limits.JSON_DEPTH_MAX - 1)),
    ]
)
edge_times = st.builds(
    lambda at, zone: at.astimezone(zone).isoformat(),
    st.sampled_from([limits.TS_MIN, limits.TS_MAX - timedelta(microseconds=1)]),
    zones,
)


@st.composite
def edge_event(draw: st.DrawFn) -> Hostile:
    type_ = draw(st.sampled_from(list(EventType)))
    model = DATA_MODELS[type_]
    data = {name: draw(edge_of(field)) for name, field in model.model_fields.items()}
    data = {k: v for k, v in data.items() if v is not None or model.model_fields[k].is_required()}
    data[draw(st.sampled_from(["x", "é" * 100]))] = draw(edge_extras)
    body = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "seq": draw(st.sampled_from([0, limits.SEQ_MAX])),
        "ts": draw(edge_times),
        "machine": MACHINE,
        "type": type_.value,
        "data": data,
    }
    return Hostile("event", json.dumps(body, ensure_ascii=False).encode())


@pytest.fixture
def writer(database_url: str) -> Iterator[IngestWriter]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    yield IngestWriter(engine)
    engine.dispose()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(burst=st.lists(hostile_event(), min_size=1, max_size=8))
def test_what_the_protocol_takes_the_database_stores(
    writer: IngestWriter, burst: list[Hostile]
) -> None:
    """The same hostile events straight to the writer, many more of them: none that the
    protocol takes is refused by the database (sessions, jobs, busy periods and incident
    tickets included: laser-1 exists), and every other one is a dead letter."""
    before = writer.stats.dead_letters
    writer.write_batch([Incoming(TOPIC.format(kind="event"), m.payload) for m in burst])
    assert set(writer.stats.dead_letters_by_reason()) <= PROTOCOL_REASONS
    assert writer.stats.dead_letters - before == sum(1 for m in burst if not accepted(m))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(burst=st.lists(edge_event(), min_size=1, max_size=6))
def test_every_event_at_the_edge_of_valid_is_stored(
    writer: IngestWriter, burst: list[Hostile]
) -> None:
    """Events with every field at the edge of what the protocol takes (full-width strings,
    bounds, the first and last instant, 64-bit extremes): all stored, none refused."""
    taken = [m for m in burst if len(m.payload) <= MAX_PAYLOAD_BYTES]
    before = writer.stats.stored + writer.stats.duplicates
    writer.write_batch([Incoming(TOPIC.format(kind="event"), m.payload) for m in taken])
    assert writer.stats.dead_letters == 0, writer.stats.dead_letters_by_reason()
    assert writer.stats.stored + writer.stats.duplicates - before == len(taken)


def test_the_broker_passes_what_the_hub_dead_letters_and_refuses_what_is_huge(
    mosquitto: MosquittoBroker,
) -> None:
    """message_size_limit is BROKER_MESSAGE_SIZE_LIMIT in the tests' broker and in the Ansible
    role (whose template is deploy/'s, tests/deploy): a message a little over the hub's limit
    reaches the hub (a dead letter there), a larger one never leaves the broker."""
    defaults = (
        Path(__file__).resolve().parents[2] / "ansible/roles/broker/defaults/main.yml"
    ).read_text()
    (limit,) = re.findall(r"^broker_message_size_limit: (\d+)$", defaults, re.MULTILINE)
    assert int(limit) == BROKER_MESSAGE_SIZE_LIMIT > MAX_PAYLOAD_BYTES
    received: list[int] = []
    hub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="size-hub")
    hub.username_pw_set(mosquitto.hub_user, mosquitto.hub_password)
    hub.on_message = lambda client, userdata, message: received.append(len(message.payload))
    hub.connect(mosquitto.host, mosquitto.port)
    hub.subscribe("atelier/v1/+/+/event", qos=1)
    hub.loop_start()
    # MQTT 3.1.1: Mosquitto drops the oversized message (an MQTT 5 client is disconnected).
    user, password = mosquitto.agent_credentials(MACHINE)
    agent = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="size-agent",
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    agent.username_pw_set(user, password)
    agent.connect(mosquitto.host, mosquitto.port)
    agent.loop_start()
    try:
        wait_until(lambda: hub.is_connected() and agent.is_connected(), timeout=10, what="clients")
        sizes = [BROKER_MESSAGE_SIZE_LIMIT + 1, MAX_PAYLOAD_BYTES + 1, BROKER_MESSAGE_SIZE_LIMIT]
        for size in sizes:
            agent.publish(TOPIC.format(kind="event"), b"x" * size, qos=1).wait_for_publish(10)
        wait_until(lambda: len(received) >= 2, timeout=10, what="the messages under the limit")
        assert received == sizes[1:]
    finally:
        for client in (agent, hub):
            client.loop_stop()
            client.disconnect()
