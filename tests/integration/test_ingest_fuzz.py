"""5,000 bad payloads thrown at the ingest: none crashes it, each lands as a dead letter."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import DeadLetter, Event
from protocol import MAX_PAYLOAD_BYTES
from protocol.limits import DEAD_LETTER_PAYLOAD_BYTES

TOPIC = "atelier/v1/lab/laser-1/event"


def valid() -> dict[str, object]:
    return {
        "v": 1,
        "id": str(uuid.uuid4()),
        "seq": 3,
        "ts": "2026-11-22T12:00:00Z",
        "machine": "laser-1",
        "type": "session.ended",
        "data": {"session_id": "s1", "member": "m-1", "reason": "badge-out", "duration_s": 12.5},
    }


WRONG = {
    "v": [2, "1", True, None, 1.5, [1]],
    "id": [123, "not-a-uuid", None, [], {}],
    "seq": ["7", 1.5, None, True, [], -1],
    "ts": [17000000, "yesterday", "2026-11-22T12:00:00", None, []],
    "machine": [5, "Laser 1", "a/b", "", None, "x" * 80],
    "type": [1, "session.teleported", None, ""],
    "data": [[1, 2], "text", 3, None],
}
DATA_WRONG = {
    "session_id": [None, [], {}],
    "member": [None, [1]],
    "reason": [None, {}],
    "duration_s": ["long", [], {}, -5],
}

truncated = st.builds(
    lambda cut, env: json.dumps(env).encode()[:cut],
    st.integers(min_value=0, max_value=150),
    st.builds(valid),
)
oversized = st.integers(min_value=1, max_value=4096).map(
    lambda extra: json.dumps(
        valid() | {"data": {"note": "x" * (MAX_PAYLOAD_BYTES + extra)}}
    ).encode()
)
wrong_typed = st.sampled_from(sorted(WRONG)).flatmap(
    lambda key: st.sampled_from(WRONG[key]).map(
        lambda bad: json.dumps(valid() | {key: bad}).encode()
    )
)
wrong_data = st.sampled_from(sorted(DATA_WRONG)).flatmap(
    lambda key: st.sampled_from(DATA_WRONG[key]).map(
        lambda bad: json.dumps(valid() | {"data": valid()["data"] | {key: bad}}).encode()
    )
)  # type: ignore[operator]
missing = st.sampled_from(["v", "id", "seq", "ts", "machine", "type"]).map(
    lambda key: json.dumps({k: v for k, v in valid().items() if k != key}).encode()
)
noise = st.binary(max_size=200)
bad_payloads = st.one_of(truncated, oversized, wrong_typed, wrong_data, missing, noise)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


BATCH = 50
EXAMPLES = 100  # 100 batches of 50: 5,000 bad payloads


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(payloads=st.lists(bad_payloads, min_size=BATCH, max_size=BATCH))
def test_every_bad_payload_becomes_a_dead_letter(engine: Engine, payloads: list[bytes]) -> None:
    with Session(engine) as session:
        last_id = session.exec(select(func.max(DeadLetter.id))).one() or 0
    writer = IngestWriter(engine)
    writer.write_batch([Incoming(TOPIC, p) for p in payloads])
    assert writer.stats.stored == 0 and writer.stats.dead_letters == BATCH
    with Session(engine) as session:
        rows = session.exec(
            select(DeadLetter)
            .where(DeadLetter.id > last_id)  # type: ignore[operator]
            .order_by(DeadLetter.id)
        ).all()
    assert [r.payload for r in rows] == [p[:DEAD_LETTER_PAYLOAD_BYTES] for p in payloads]
    assert [r.size for r in rows] == [len(p) for p in payloads]
    assert all(r.reason and r.detail for r in rows)


def test_the_ingest_still_stores_good_events_after_the_garbage(engine: Engine) -> None:
    writer = IngestWriter(engine)
    writer.write_batch([Incoming(TOPIC, json.dumps(valid()).encode())])
    assert writer.stats.stored == 1 and count(engine, Event) >= 1
