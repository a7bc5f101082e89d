"""The ingest writer on a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter, database_unavailable
from hub.models import AgentSeq, DeadLetter, Event, Machine, MachineSession
from protocol import EventType, encode_envelope, new_envelope
from protocol.limits import DEAD_LETTER_PAYLOAD_BYTES

T0 = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
TOPIC = "atelier/v1/lab/laser-1/event"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    yield engine
    engine.dispose()


def env(
    seq: int, type: EventType, data: dict[str, object], at: datetime = T0, machine: str = "laser-1"
) -> bytes:
    return encode_envelope(
        new_envelope(machine=machine, type=type, seq=seq, data=data, now=lambda: at)
    )


def started(seq: int, sid: str, at: datetime = T0) -> bytes:
    return env(
        seq,
        EventType.SESSION_STARTED,
        {"session_id": sid, "member": "m-1", "badge": "04A1B2C3"},
        at,
    )


def ended(seq: int, sid: str, at: datetime, duration: float) -> bytes:
    return env(
        seq,
        EventType.SESSION_ENDED,
        {
            "session_id": sid,
            "member": "m-1",
            "reason": "badge-out",
            "duration_s": duration,
            "busy_s": 12.5,
        },
        at,
    )


def test_an_event_delivered_twice_is_stored_once(engine: Engine) -> None:
    writer = IngestWriter(engine)
    payload = started(1, "s1")
    writer.write_batch([Incoming(TOPIC, payload), Incoming(TOPIC, payload)])
    writer.write_batch([Incoming(TOPIC, payload)])
    with Session(engine) as session:
        assert len(session.exec(select(Event)).all()) == 1
        assert len(session.exec(select(MachineSession)).all()) == 1
    assert writer.stats.stored == 1 and writer.stats.duplicates == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json at all", "not_json"),
        (b'{"hello": "world"}', "missing_field"),
        (b"[1,2,3]", "not_object"),
        (json.dumps({"v": 9}).encode(), "unknown_version"),
        (b"\xff" * 10, "not_utf8"),
        (b"{" * 20_000, "too_large"),
    ],
)
def test_what_is_not_an_envelope_becomes_a_dead_letter(
    engine: Engine, payload: bytes, reason: str
) -> None:
    writer = IngestWriter(engine)
    writer.write_batch([Incoming(TOPIC, payload), Incoming(TOPIC, started(1, "s1"))])
    with Session(engine) as session:
        (letter,) = session.exec(select(DeadLetter)).all()
        assert letter.reason == reason and letter.topic == TOPIC and letter.detail
        # What identifies the payload, and no more of it than the limit.
        assert letter.payload == payload[:DEAD_LETTER_PAYLOAD_BYTES]
        assert letter.size == len(payload)
        assert letter.sha256 == hashlib.sha256(payload).hexdigest()
        # The good message in the same batch is kept.
        assert len(session.exec(select(Event)).all()) == 1


def test_a_machine_cannot_speak_for_another(engine: Engine) -> None:
    writer = IngestWriter(engine)
    forged = env(
        1,
        EventType.SESSION_STARTED,
        {"session_id": "s9", "member": "m-1", "badge": "04A1B2C3"},
        machine="cnc-1",
    )
    writer.write_batch([Incoming(TOPIC, forged), Incoming("atelier/v1/lab/x/y/event", b"{}")])
    with Session(engine) as session:
        reasons = sorted(d.reason for d in session.exec(select(DeadLetter)))
        assert reasons == ["bad_topic", "machine_mismatch"]
        assert session.exec(select(Event)).all() == []


def test_sessions_are_built_whatever_order_start_and_end_arrive_in(engine: Engine) -> None:
    writer = IngestWriter(engine)
    end_at = T0 + timedelta(minutes=30)
    writer.write_batch([Incoming(TOPIC, ended(2, "s1", end_at, 1800.0))])
    writer.write_batch([Incoming(TOPIC, started(1, "s1"))])
    writer.write_batch(
        [
            Incoming(TOPIC, started(3, "s2", end_at)),
            Incoming(TOPIC, ended(4, "s2", end_at + timedelta(minutes=1), 60.0)),
        ]
    )
    with Session(engine) as session:
        s1 = session.get(MachineSession, "s1")
        s2 = session.get(MachineSession, "s2")
    assert s1 is not None and s2 is not None
    assert s1.started_at == T0 and s1.ended_at == end_at and s1.duration_s == 1800
    assert s1.end_reason == "badge-out" and s1.busy_s == 12.5 and s1.badge == "04A1B2C3"
    assert s2.duration_s == 60 and s2.machine == "laser-1"


def test_sequence_gaps_are_detected_and_filled(engine: Engine) -> None:
    writer = IngestWriter(engine)
    writer.write_batch([Incoming(TOPIC, started(1, "a")), Incoming(TOPIC, started(4, "b"))])
    with Session(engine) as session:
        row = session.exec(select(AgentSeq)).one()
        assert row.max_seq == 4 and row.missing == 2
    assert writer.stats.gaps_detected == 2
    writer.write_batch([Incoming(TOPIC, started(2, "c")), Incoming(TOPIC, started(3, "d"))])
    with Session(engine) as session:
        assert session.exec(select(AgentSeq)).one().missing == 0


def test_status_updates_the_machine_and_bad_status_is_kept(engine: Engine) -> None:
    writer = IngestWriter(engine)
    status = {
        "v": 1,
        "machine": "laser-1",
        "state": "online",
        "relay": "closed",
        "session": {"session_id": "s1", "member": "m-1"},
    }
    writer.write_batch(
        [
            Incoming("atelier/v1/lab/laser-1/status", json.dumps(status).encode()),
            Incoming("atelier/v1/lab/cnc-1/status", b"garbage"),
        ]
    )
    with Session(engine) as session:
        laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        assert laser.online and laser.last_status and laser.last_status["relay"] == "closed"
        assert laser.last_seen is not None and laser.last_seen.tzinfo is not None
        assert [d.reason for d in session.exec(select(DeadLetter))] == ["not_json"]
    offline = {"v": 1, "machine": "laser-1", "state": "offline"}
    writer.write_batch([Incoming("atelier/v1/lab/laser-1/status", json.dumps(offline).encode())])
    with Session(engine) as session:
        assert not session.exec(select(Machine).where(Machine.code == "laser-1")).one().online


def test_event_ids_are_unique_keys(engine: Engine) -> None:
    writer = IngestWriter(engine)
    same_id = uuid.uuid4()
    a = new_envelope(
        machine="laser-1", type=EventType.AGENT_STARTED, seq=1, data={"version": "1"}, id=same_id
    )
    b = new_envelope(
        machine="laser-1", type=EventType.AGENT_STARTED, seq=2, data={"version": "2"}, id=same_id
    )
    writer.write_batch([Incoming(TOPIC, encode_envelope(a))])
    writer.write_batch([Incoming(TOPIC, encode_envelope(b))])
    with Session(engine) as session:
        (stored,) = session.exec(select(Event)).all()
        assert stored.seq == 1


def test_the_events_read_back_through_the_orm_as_they_were_sent(engine: Engine) -> None:
    """The writer's driver-level insert stores exactly what the ORM reads: id, times, data."""
    writer = IngestWriter(engine)
    sent = [
        new_envelope(
            machine="laser-1",
            type=EventType.BADGE_DENIED,
            seq=i,
            data={"badge": f"{i:08X}", "reason": "not_trained", "member": "m-1"},
            now=lambda i=i: T0 + timedelta(microseconds=i * 1_000_001),
        )
        for i in range(1, 1201)  # more than one SQLite chunk
    ]
    writer.write_batch([Incoming(TOPIC, encode_envelope(e)) for e in sent])
    with Session(engine) as session:
        stored = {e.id: e for e in session.exec(select(Event))}
    assert len(stored) == 1200 and writer.stats.stored == 1200
    for envelope in sent:
        row = stored[envelope.id]
        assert (row.site, row.machine, row.seq, row.type) == (
            "lab",
            "laser-1",
            envelope.seq,
            "badge.denied",
        )
        assert row.ts == envelope.ts and row.data == envelope.data
        assert row.received_at.tzinfo is not None
    # Ordered by time in the database as in Python (the stored text sorts as the instants).
    with Session(engine) as session:
        first = session.exec(select(Event).order_by(Event.ts).limit(1)).one()  # type: ignore[arg-type]
    assert first.seq == 1


def test_one_batch_from_many_agents_counts_each_agents_sequence(engine: Engine) -> None:
    writer = IngestWriter(engine)
    items = [
        Incoming(
            f"atelier/v1/lab/m-{a:02d}/event",
            env(seq, EventType.AGENT_STARTED, {"version": "1"}, machine=f"m-{a:02d}"),
        )
        for a in range(60)
        for seq in (1, 2, 5)  # 3 and 4 missing on every agent
    ]
    writer.write_batch(items)
    writer.write_batch(items[:3])  # delivered again: counted once
    with Session(engine) as session:
        rows = session.exec(select(AgentSeq)).all()
    assert len(rows) == 60
    assert {(r.max_seq, r.seen, r.missing) for r in rows} == {(5, 3, 2)}
    assert all(r.last_event_at == T0 for r in rows)
    assert writer.stats.gaps_detected == 120


def test_two_writers_at_once_lose_no_count(engine: Engine) -> None:
    """Ingest workers on one database: the counts are added by the database itself."""
    import threading

    writers = [IngestWriter(engine), IngestWriter(engine)]
    errors: list[BaseException] = []

    def run(writer: IngestWriter, seqs: range) -> None:
        try:
            for seq in seqs:
                writer.write_batch([Incoming(TOPIC, started(seq, f"s{seq}"))])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(writers[0], range(1, 80, 2))),
        threading.Thread(target=run, args=(writers[1], range(2, 81, 2))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with Session(engine) as session:
        row = session.exec(select(AgentSeq)).one()
    assert (row.max_seq, row.seen, row.missing) == (80, 80, 0)


def test_a_message_the_database_refuses_is_found_and_the_rest_of_its_batch_stored(
    engine: Engine,
) -> None:
    # A constraint the protocol cannot know of: the database itself refuses the second busy
    # period with the same source (IntegrityError), after validation passed.
    with engine.begin() as conn:
        conn.execute(text("CREATE UNIQUE INDEX ux_test_busy_source ON busy_period (source)"))
    busy = [
        env(10 + i, EventType.MACHINE_BUSY, {"source": "beam" if i in (3, 11) else f"s{i}"})
        for i in range(16)
    ]
    writer = IngestWriter(engine)
    writer.write_batch([Incoming(TOPIC, payload) for payload in busy])
    with Session(engine) as session:
        (letter,) = session.exec(select(DeadLetter)).all()
        stored = {e.seq for e in session.exec(select(Event)).all()}
    assert letter.reason == "db_refused" and "IntegrityError" in letter.detail
    assert letter.payload == busy[11] and letter.sha256 == hashlib.sha256(busy[11]).hexdigest()
    assert stored == {10 + i for i in range(16)} - {21}
    assert writer.stats.stored == 15 and writer.stats.dead_letters == 1
    assert writer.stats.dead_letters_by_reason() == {"db_refused": 1}


def test_only_a_database_that_is_away_is_retried(engine: Engine) -> None:
    # Nothing listens on port 1: the database's absence, not the batch's fault, so the writer
    # raises (the consumer keeps the batch unacknowledged and retries it) and keeps nothing.
    away = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/atelier?connect_timeout=2")
    writer = IngestWriter(away)
    with pytest.raises(OperationalError) as lost:
        writer.write_batch([Incoming(TOPIC, started(1, "s1")), Incoming(TOPIC, b"not json")])
    assert database_unavailable(away, lost.value)
    assert writer.stats.dead_letters == 0 and writer.stats.stored == 0
    away.dispose()
    # An error of the statement's own on a database that answers (SQLite calls a missing
    # table an OperationalError) is the batch's: split and dead-lettered, not retried.
    with pytest.raises(DBAPIError) as own, engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert not database_unavailable(engine, own.value)


def test_an_error_of_the_hubs_own_on_one_message_dead_letters_it_alone(engine: Engine) -> None:
    # The prepaid drawdown runs in the batch's transaction (on_sessions_ended); a fault of its
    # own on one session must cost that message, not the batch nor the writer.
    def drawdown(session: Session, ended: list[str]) -> None:
        if "s-bad" in ended:
            raise ValueError("no rate for this session")

    writer = IngestWriter(engine, on_sessions_ended=drawdown)
    ids = ["s0", "s1", "s-bad", "s3", "s4"]
    batch = [Incoming(TOPIC, ended(i + 1, sid, T0, 60.0)) for i, sid in enumerate(ids)]
    writer.write_batch(batch)
    with Session(engine) as session:
        (letter,) = session.exec(select(DeadLetter)).all()
        stored = {s.id for s in session.exec(select(MachineSession)).all()}
    assert letter.reason == "not_storable" and "ValueError" in letter.detail
    assert letter.payload == batch[2].payload and stored == set(ids) - {"s-bad"}


def test_a_failure_after_the_commit_keeps_the_batch_as_stored(engine: Engine) -> None:
    # What the prepaid hook does once the batch is committed (re-publish the lists) may fail;
    # the batch is stored already: nothing is dead-lettered nor stored twice.
    def republish() -> None:
        raise ConnectionError("broker away")

    writer = IngestWriter(engine, on_sessions_ended=lambda session, ended: republish)
    writer.write_batch([Incoming(TOPIC, ended(1, "s1", T0, 60.0)), Incoming(TOPIC, b"not json")])
    with Session(engine) as session:
        assert len(session.exec(select(DeadLetter)).all()) == 1
        assert len(session.exec(select(Event)).all()) == 1
    assert writer.stats.stored == 1 and writer.stats.dead_letters == 1
