"""Column types and defaults every table family of the hub shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field
from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are UTC and timezone-aware on the way in and out, whatever the database
    (SQLite stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A 64-bit integer column (protocol.limits.SEQ_MAX): BIGINT on PostgreSQL; SQLite's INTEGER
# already holds 64 bits, and naming it so spares rewriting its event table.
Int64 = BigInteger().with_variant(Integer(), "sqlite")

# Row ids as the databases store them (32-bit on PostgreSQL): anything larger is a 422, not
# an overflow in the driver. hub.core.deps builds its path and query ids on these.
MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def utcnow() -> datetime:
    return datetime.now(UTC)
