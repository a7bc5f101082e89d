"""The ingest's own SQLite timestamp text is SQLAlchemy's, to the character."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from hub.core.db import make_engine
from hub.ingest.writer import EventInsert, sqlite_timestamp
from hub.models import Event

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-11, minutes=-30))]
)


@given(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30), timezones=ZONES)
)
def test_sqlite_timestamp_is_what_sqlalchemy_writes(value: datetime) -> None:
    engine = make_engine("sqlite://")
    column_type = Event.__table__.c.ts.type  # type: ignore[attr-defined]
    reference = column_type._cached_bind_processor(engine.dialect)
    assert sqlite_timestamp(value) == reference(value)


def test_the_sqlite_insert_uses_it() -> None:
    assert EventInsert(make_engine("sqlite://"))._ts is sqlite_timestamp
