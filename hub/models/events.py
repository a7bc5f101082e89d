"""What the machines tell the hub (events, sessions, busy time, jobs, telemetry, dead letters)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from hub.models.base import Int64, UTCDateTime, utcnow
from protocol import limits


class Event(SQLModel, table=True):
    __table_args__ = (Index("ix_event_machine_seq", "machine", "seq"),)
    id: uuid.UUID = Field(primary_key=True)
    site: str = Field(max_length=limits.SLUG_MAX_CHARS)
    machine: str = Field(max_length=limits.SLUG_MAX_CHARS)
    seq: int = Field(sa_type=Int64)  # up to protocol.limits.SEQ_MAX
    ts: datetime = Field(sa_type=UTCDateTime, index=True)
    type: str = Field(max_length=40, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MachineSession(SQLModel, table=True):
    """A badge session on a machine, built from session.started / session.ended events."""

    __tablename__ = "session"
    id: str = Field(primary_key=True, max_length=limits.SESSION_ID_MAX_CHARS)
    site: str = Field(max_length=limits.SLUG_MAX_CHARS)
    machine: str = Field(max_length=limits.SLUG_MAX_CHARS, index=True)
    member_ref: str = Field(max_length=limits.MEMBER_REF_MAX_CHARS, index=True)
    badge: str = Field(default="", max_length=limits.BADGE_MAX_CHARS)
    mode: str = Field(default="normal", max_length=limits.MODE_MAX_CHARS)
    supervisor_ref: str | None = Field(default=None, max_length=limits.MEMBER_REF_MAX_CHARS)
    started_at: datetime | None = Field(default=None, index=True, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=limits.REASON_MAX_CHARS)
    duration_s: float | None = None
    busy_s: float = 0.0
    # kWh its machine's smart plug counted during the session (None: no metering plug).
    energy_kwh: float | None = None
    # The spool tapped after the badge (issue 21), whose filament its prints are counted on.
    spool_id: int | None = Field(default=None, foreign_key="spool.id")


class SessionPublic(SQLModel):
    id: str
    site: str
    machine: str
    member_ref: str
    badge: str
    mode: str
    supervisor_ref: str | None
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    duration_s: float | None
    busy_s: float


class BusyPeriod(SQLModel, table=True):
    """The machine working (beam on, printing, current drawn), billed to the session's member."""

    __tablename__ = "busy_period"
    id: int | None = Field(default=None, primary_key=True)
    site: str = Field(max_length=limits.SLUG_MAX_CHARS)
    machine: str = Field(max_length=limits.SLUG_MAX_CHARS, index=True)
    source: str = Field(max_length=limits.SOURCE_MAX_CHARS)
    session_id: str | None = Field(default=None, max_length=limits.SESSION_ID_MAX_CHARS, index=True)
    member_ref: str | None = Field(default=None, max_length=limits.MEMBER_REF_MAX_CHARS, index=True)
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    busy_s: float | None = None
    # kWh of the period, and of its part after its session ended (billed to that session).
    energy_kwh: float | None = None
    run_on_energy_kwh: float | None = None


class PrintJob(SQLModel, table=True):
    """A print or cut job, attributed to the badge session open when it started."""

    __tablename__ = "print_job"
    id: str = Field(primary_key=True, max_length=128)  # "<machine>:<job_id>"
    site: str = Field(max_length=limits.SLUG_MAX_CHARS)
    machine: str = Field(max_length=limits.SLUG_MAX_CHARS, index=True)
    job_id: str = Field(max_length=limits.JOB_ID_MAX_CHARS)
    file: str = Field(default="", max_length=limits.JOB_FILE_MAX_CHARS)
    session_id: str | None = Field(default=None, max_length=limits.SESSION_ID_MAX_CHARS)
    member_ref: str | None = Field(default=None, max_length=limits.MEMBER_REF_MAX_CHARS, index=True)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration_s: float | None = None
    state: str = Field(default="printing", max_length=20)  # printing, finished, failed
    error: str | None = Field(default=None, max_length=limits.JOB_ERROR_MAX_CHARS)
    # Why it ended (completed, cancelled, error, no-session, printer-offline); None from an
    # agent older than issue 21, which said only `error`.
    end_reason: str | None = Field(default=None, max_length=limits.REASON_MAX_CHARS)
    # From its start to the last poll that saw it printing: billed "until-offline".
    printing_seen_s: float | None = None


class MachineCounters(SQLModel):
    machine: str
    sessions: int
    session_hours: float
    busy_hours: float
    jobs: int
    jobs_failed: int


class TelemetrySample(SQLModel, table=True):
    """Machine samples: raw for a day, then one per minute, then gone (settings)."""

    __tablename__ = "telemetry_sample"
    __table_args__ = (Index("ix_telemetry_machine_ts", "machine", "ts"),)
    id: int | None = Field(default=None, primary_key=True)
    machine: str = Field(max_length=limits.SLUG_MAX_CHARS)
    ts: datetime = Field(sa_type=UTCDateTime)
    resolution_s: int = 0  # 0: as received; 60: the mean of a minute
    values: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class TelemetryPoint(SQLModel):
    ts: datetime
    resolution_s: int
    values: dict[str, Any]


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letter"
    id: int | None = Field(default=None, primary_key=True)
    """A message the ingest could not store, with why. `payload` is its first
    DEAD_LETTER_PAYLOAD_BYTES only; `size` and `sha256` describe the whole of it."""

    topic: str = Field(max_length=limits.DEAD_LETTER_TOPIC_MAX_CHARS)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int = 0  # the payload's full length in bytes (0 before revision 0012_ingest_limits)
    sha256: str | None = Field(default=None, max_length=64)
    reason: str = Field(max_length=limits.REASON_MAX_CHARS, index=True)
    detail: str = Field(max_length=limits.DEAD_LETTER_DETAIL_MAX_CHARS)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class RetentionRule(SQLModel, table=True):
    """How long a kind of record is kept, set by an admin; absent, the hub's settings apply.
    `days` None keeps it for good."""

    __tablename__ = "retention"
    kind: str = Field(primary_key=True, max_length=20)  # telemetry, events, dead_letters
    days: float | None = None
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EventPublic(SQLModel):
    id: str
    site: str
    machine: str
    seq: int
    ts: datetime
    type: str
    data: dict[str, Any]
    received_at: datetime
