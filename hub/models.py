"""SQLModel tables and API schemas of the hub."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from protocol import limits


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


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_member_ref() -> str:
    # What machines, events and reports see instead of a name.
    return "m-" + secrets.token_hex(4)


class MemberCategory(StrEnum):
    INDIVIDUAL = "individual"
    STUDENT = "student"
    PROFESSIONAL = "professional"
    COMPANY = "company"
    STAFF = "staff"


class MemberStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    LEFT = "left"


class MachineKind(StrEnum):
    LASER = "laser"
    PRINTER = "printer"
    CNC = "cnc"
    OTHER = "other"


class TrainingLevel(StrEnum):
    USER = "user"
    TRAINER = "trainer"
    MAINTAINER = "maintainer"


# --- members and badges -------------------------------------------------------------------
class MemberBase(SQLModel):
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    category: MemberCategory = MemberCategory.INDIVIDUAL
    status: MemberStatus = MemberStatus.ACTIVE
    payer_id: int | None = Field(default=None, foreign_key="member.id")


class Member(MemberBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(
        default_factory=new_member_ref,
        unique=True,
        index=True,
        max_length=limits.MEMBER_REF_MAX_CHARS,
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MemberCategoryChange(SQLModel, table=True):
    """A member's category changing from a lab-local day on; billing prices each session with
    the category in force on its start day (hub/category_history.py). No row for a member:
    the current category applies to every open month."""

    __tablename__ = "member_category_change"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    category: str = Field(max_length=20)
    previous_category: str = Field(max_length=20)
    effective_from: date = Field(sa_column=Column(Date, nullable=False))
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(default="", max_length=100)


class MemberPublic(MemberBase):
    id: int
    ref: str
    created_at: datetime


class Badge(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(index=True, max_length=limits.BADGE_MAX_CHARS)
    member_id: int = Field(foreign_key="member.id", index=True)
    enrolled_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# --- machines -----------------------------------------------------------------------------
class MachineType(SQLModel, table=True):
    __tablename__ = "machine_type"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, max_length=limits.SLUG_MAX_CHARS)
    name: str = Field(max_length=200)
    kind: MachineKind = MachineKind.OTHER


class MachineBase(SQLModel):
    code: str = Field(unique=True, index=True, max_length=limits.SLUG_MAX_CHARS)
    name: str = Field(max_length=200)
    site: str = Field(max_length=limits.SLUG_MAX_CHARS, index=True)
    location: str = Field(default="", max_length=200)
    kind: MachineKind = MachineKind.OTHER


class Machine(MachineBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    machine_type_id: int = Field(foreign_key="machine_type.id")
    agent_id: str | None = Field(default=None, max_length=limits.SLUG_MAX_CHARS)
    # The MQTT topic of a smart plug (Tasmota, Shelly) the agent reads on the lab's broker:
    # `atelier hub mqtt-credentials` lets the machine's account read it and writes the plug's
    # own account (plug-<code>), which may publish it only.
    plug_topic: str | None = Field(default=None, max_length=200)
    # A printer's OctoPrint, as its agent reaches it: the setup check asks it whether it
    # answers and takes the key (hub/services/machines.py); the key never leaves for the API.
    octoprint_url: str | None = Field(default=None, max_length=300)
    octoprint_api_key: str | None = Field(default=None, max_length=200)
    # What its agent's config was written with (reader, relay and busy pins, Ruida host, plug
    # kind), so the setup page can give the same config again.
    setup: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    locked: bool = False
    lock_reason: str | None = None
    # Never below the time of issue in ms since the epoch (hub/allowlist.py): a BIGINT.
    acl_version: int = Field(default=0, sa_type=BigInteger)
    online: bool = False
    last_telemetry: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    last_status: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    last_seen: datetime | None = Field(default=None, sa_type=UTCDateTime)


class MachinePublic(MachineBase):
    id: int
    machine_type: str
    locked: bool
    lock_reason: str | None
    online: bool
    last_seen: datetime | None
    state: str  # offline, idle, in_use, busy, locked
    in_use_by: str | None = None
    session_id: str | None = None
    session_started_at: datetime | None = None
    progress: float | None = None  # printing, from the latest telemetry
    telemetry: dict[str, Any] | None = None
    # The allow-list: the version the hub issued last, the one the agent reports holding,
    # whether they agree (None: offline, or not reported), and the reason code of the last
    # list the agent refused since it accepted one (stale, bad_signature, expired, ...).
    # The kind comes from the machine's type unless set on the machine (kind_from_type false);
    # kind_conflict names an integration the kind disagrees with (octoprint_on_non_printer,
    # ruida_on_non_laser): such a machine shows no print progress, or no beam time.
    kind_from_type: bool = True
    kind_conflict: str | None = None
    acl_version: int = 0
    agent_acl_version: int | None = None
    acl_current: bool | None = None
    acl_refused: str | None = None
    # The agent's safety inputs by name, true when OK (its last status; online only).
    interlocks: dict[str, bool] | None = None
    # The machine's settings only its administrators edit: in answers to an admin only, and
    # left out (not null) for every other role; see hub/api/machines.py.
    agent_id: str | None = Field(
        default=None, description="The agent's broker account, when not the code (admins only)"
    )
    plug_topic: str | None = Field(
        default=None,
        description="The smart plug topic the agent reads on the broker (admins only)",
    )


# --- trainings ----------------------------------------------------------------------------
class Training(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    machine_type_id: int = Field(foreign_key="machine_type.id", index=True)
    level: TrainingLevel = TrainingLevel.USER
    granted_by_id: int | None = Field(default=None, foreign_key="member.id")
    granted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    supervised_only: bool = False


# --- what the machines tell us ------------------------------------------------------------
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


class AgentSeq(SQLModel, table=True):
    """Per agent: the highest sequence number seen and how many were skipped (seq gaps)."""

    __tablename__ = "agent_seq"
    __table_args__ = (UniqueConstraint("site", "machine"),)
    id: int | None = Field(default=None, primary_key=True)
    site: str = Field(max_length=limits.SLUG_MAX_CHARS)
    machine: str = Field(max_length=limits.SLUG_MAX_CHARS)
    max_seq: int = Field(default=0, sa_type=Int64)  # protocol.limits.SEQ_MAX
    seen: int = Field(default=0, sa_type=Int64)
    last_event_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def missing(self) -> int:
        """Sequence numbers below the highest one that have not arrived (yet)."""
        return max(0, self.max_seq - self.seen)


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


class AuditEntry(SQLModel, table=True):
    """Who changed what, when: every change to members, badges, trainings and machines."""

    __tablename__ = "audit"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=60, index=True)
    entity: str = Field(max_length=40)
    entity_id: str = Field(max_length=100)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AuditPublic(SQLModel):
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    detail: dict[str, Any]


class Role(StrEnum):
    """What a person may do through the API and the web pages."""

    MEMBER = "member"  # their own data only
    TRAINER = "trainer"
    MAINTAINER = "maintainer"
    MANAGER = "manager"
    ADMIN = "admin"


class User(SQLModel, table=True):
    """A login. Linked to a member when the person is one (trainers grant trainings as that
    member, members see their own data through it)."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=80)
    password_hash: str = Field(max_length=200)
    role: Role = Role.MEMBER
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    active: bool = True
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserPublic(SQLModel):
    id: int
    username: str
    role: Role
    member_id: int | None
    active: bool
    created_at: datetime


class ApiToken(SQLModel, table=True):
    """A bearer token: only its SHA-256 is stored; the secret is shown once, at creation.
    Web logins are tokens too (kind `web`), so logging out or revoking works the same way."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=100)
    kind: str = Field(default="api", max_length=10)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    prefix: str = Field(max_length=12)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TokenPublic(SQLModel):
    id: int
    user_id: int
    name: str
    kind: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class RetentionRule(SQLModel, table=True):
    """How long a kind of record is kept, set by an admin; absent, the hub's settings apply.
    `days` None keeps it for good."""

    __tablename__ = "retention"
    kind: str = Field(primary_key=True, max_length=20)  # telemetry, events, dead_letters
    days: float | None = None
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
