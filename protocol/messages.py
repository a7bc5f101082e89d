"""Non-event messages: retained status, telemetry samples and hub commands."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from protocol import limits
from protocol.envelope import (
    PROTOCOL_VERSION,
    BadgeUid,
    MemberRef,
    Mode,
    ProtocolError,
    SessionId,
    Text,
    Timestamp,
    utc_iso,
)
from protocol.limits import MAX_PAYLOAD_BYTES
from protocol.topics import SLUG_PATTERN


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    v: Literal[1] = 1

    @field_validator("v", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # JSON `true` and `1.0` equal 1 in Python; the agent (protocol/lite.py) refuses both.
        if isinstance(value, bool | float):
            raise ValueError("the protocol version is the whole number 1")
        return value

    @model_validator(mode="after")
    def _storable(self) -> _Message:
        # Retained statuses and telemetry are stored as JSON and shown on pages: nothing a
        # database or a JSON answer refuses (NUL, NaN, 64-bit overflow) gets past here,
        # in the typed fields' free-form parts nor in fields from a newer revision.
        limits.check_json(self.model_dump(exclude_none=True))
        return self

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class StatusSession(BaseModel):
    """The session open on the machine, as its status reports it (the dashboard shows it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    session_id: SessionId
    member: MemberRef
    badge: BadgeUid | None = None
    mode: Mode | None = None
    started_at: Timestamp | None = None


class Status(_Message):
    """Retained on .../status. The agent's last will is the same model with state "offline"."""

    machine: str = Field(pattern=SLUG_PATTERN)
    state: Literal["online", "offline"]
    ts: Timestamp | None = None
    version: Text | None = None
    uptime_s: Annotated[float, Field(ge=0, le=limits.UPTIME_MAX_S, allow_inf_nan=False)] | None = (
        None
    )
    relay: Literal["open", "closed"] | None = None
    session: StatusSession | None = None
    busy: bool | None = None
    locked: bool | None = None
    reader_ok: bool | None = None
    backlog: int | None = Field(default=None, ge=0, le=limits.SEQ_MAX)
    acl_version: int | None = Field(default=None, ge=0, le=limits.VERSION_MAX)
    # The last allow-list the agent refused, while it has not accepted a newer one: the
    # reason code (`stale`, `bad_signature`, `expired`, ...) and the version it offered.
    acl_refused: str | None = Field(default=None, max_length=40)
    acl_offered: int | None = Field(default=None, ge=0, le=limits.VERSION_MAX)
    # The sequence number of the agent's newest event: the hub repairs a gap at the tail
    # (events it never received after the last one it has) as it does one in the middle.
    last_seq: int | None = Field(default=None, ge=0, le=limits.SEQ_MAX)
    # Safety inputs by name, true when OK; accessory relays by name, true when on.
    interlocks: dict[str, bool] | None = None
    accessories: dict[str, bool] | None = None

    @field_serializer("ts")
    def _ts(self, value: datetime | None) -> str | None:
        return utc_iso(value) if value else None


class Telemetry(_Message):
    """One sample set on .../telemetry (QoS 0): temperatures, progress, watts."""

    machine: str = Field(pattern=SLUG_PATTERN)
    ts: Timestamp
    values: dict[str, float | int | str | bool | None]

    @field_serializer("ts")
    def _ts(self, value: datetime) -> str:
        return utc_iso(value)


class CommandName(StrEnum):
    LOCK = "lock"
    UNLOCK = "unlock"
    UNLOCK_FOR_MAINTENANCE = "unlock-for-maintenance"
    SYNC = "sync"
    END_SESSION = "end-session"
    ENROL = "enrol"  # the next card read is reported (badge.read), not decided


class Command(_Message):
    """Hub -> agent on .../cmd, QoS 1."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    ts: Timestamp
    cmd: CommandName
    args: dict[str, Any] = Field(default_factory=dict)

    @field_serializer("ts")
    def _ts(self, value: datetime) -> str:
        return utc_iso(value)


M = TypeVar("M", bound=_Message)


def decode_message(model: type[M], payload: bytes | str) -> M:
    """Parse a status/telemetry/command payload, or raise ProtocolError with a reason code."""
    raw = payload.encode() if isinstance(payload, str) else payload
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("too_large", f"payload is {len(raw)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("not_json", f"payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not_object", f"payload is JSON {type(obj).__name__}, not an object")
    if obj.get("v") != PROTOCOL_VERSION:
        raise ProtocolError("unknown_version", f"protocol version {obj.get('v')!r} not supported")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        raise ProtocolError("invalid_field", f"field '{where}': {err['msg']}") from None
