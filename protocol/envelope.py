"""The event envelope: one durable fact from an edge agent, JSON on the wire."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from protocol import limits
from protocol.limits import MAX_PAYLOAD_BYTES as MAX_PAYLOAD_BYTES
from protocol.topics import SLUG_PATTERN
from protocol.vocab import PROTOCOL_VERSION as PROTOCOL_VERSION
from protocol.vocab import DenyReason as DenyReason
from protocol.vocab import EventType as EventType
from protocol.vocab import ProtocolError as ProtocolError
from protocol.vocab import utc_iso as utc_iso

_Clean = AfterValidator(limits.check_text)  # no NUL, valid Unicode: any column stores it
# Strings sized as the columns that store them (protocol/limits.py).
Text = Annotated[str, Field(max_length=limits.TEXT_MAX_CHARS), _Clean]
MemberRef = Annotated[str, Field(max_length=limits.MEMBER_REF_MAX_CHARS), _Clean]
BadgeUid = Annotated[str, Field(max_length=limits.BADGE_MAX_CHARS), _Clean]
SessionId = Annotated[str, Field(max_length=limits.SESSION_ID_MAX_CHARS), _Clean]
Source = Annotated[str, Field(max_length=limits.SOURCE_MAX_CHARS), _Clean]
Reason = Annotated[str, Field(max_length=limits.REASON_MAX_CHARS), _Clean]
JobId = Annotated[str, Field(max_length=limits.JOB_ID_MAX_CHARS), _Clean]
Mode = Annotated[str, Field(max_length=limits.MODE_MAX_CHARS), _Clean]
# What a lab names in an agent's config: an interlock, an accessory, a machine type's code.
Name = Annotated[str, Field(max_length=limits.SLUG_MAX_CHARS), _Clean]
Duration = Annotated[float, Field(ge=0, le=limits.DURATION_MAX_S, allow_inf_nan=False)]
Energy = Annotated[float, Field(ge=0, le=limits.ENERGY_MAX_KWH, allow_inf_nan=False)]
Timestamp = Annotated[AwareDatetime, AfterValidator(limits.check_timestamp)]


class _Data(BaseModel):
    # Additive fields from a newer minor revision are kept, not refused (and checked as the
    # envelope's `data` is: clean text, bounded numbers).
    model_config = ConfigDict(extra="allow", frozen=True)


class BadgeGranted(_Data):
    badge: BadgeUid
    member: MemberRef
    session_id: SessionId
    level: Mode = "user"


class BadgeDenied(_Data):
    badge: BadgeUid
    reason: DenyReason
    member: MemberRef | None = None


class BadgeRead(_Data):
    badge: BadgeUid
    request_id: SessionId


class SessionStarted(_Data):
    session_id: SessionId
    member: MemberRef
    badge: BadgeUid
    mode: Literal["normal", "supervised", "maintenance"] = "normal"
    supervisor: MemberRef | None = None


class SessionEnded(_Data):
    session_id: SessionId
    member: MemberRef
    reason: Reason
    duration_s: Duration
    busy_s: Duration = 0
    # kWh a smart plug counted during the session (absent: the machine has no metering plug).
    energy_kwh: Energy | None = None


class MachineBusy(_Data):
    source: Source
    session_id: SessionId | None = None


class MachineIdle(_Data):
    source: Source
    busy_s: Duration
    session_id: SessionId | None = None
    # kWh of the busy period, and of the part of it after its session ended (the run-on,
    # billed to that session); absent without a metering plug.
    energy_kwh: Energy | None = None
    run_on_energy_kwh: Energy | None = None


class MachineLocked(_Data):
    reason: Text


class MachineUnlocked(_Data):
    reason: Text = ""


class JobStarted(_Data):
    job_id: JobId
    file: Text = ""  # stored cut to the column's length
    session_id: SessionId | None = None
    member: MemberRef | None = None


class JobEnded(_Data):
    job_id: JobId
    duration_s: Duration
    session_id: SessionId | None = None
    member: MemberRef | None = None
    error: Text | None = None  # stored cut to the column's length
    # Why it ended: completed, cancelled, error, no-session, printer-offline (newer agents).
    reason: Reason | None = None
    # From its start to the last poll that saw it printing: what ran before the printer went
    # offline, for a lab that bills an offline job up to then.
    printing_seen_s: Duration | None = None
    # The filament it used, mm (all extruders): the job's analysed length, all of it when it
    # finished, the share its progress reached when it stopped (issue 21).
    filament_mm: (
        Annotated[float, Field(ge=0, le=limits.FILAMENT_MAX_MM, allow_inf_nan=False)] | None
    ) = None


class SpoolAttached(_Data):
    session_id: SessionId
    member: MemberRef
    spool: BadgeUid  # the spool's tag, as the allow-list's `spools` lists it


class IncidentReported(_Data):
    source: Source
    note: Text = ""
    member: MemberRef | None = None


class InterlockFault(_Data):
    interlock: Name
    kind: Name
    # What the agent did: "session-ended" (relay opened, or held until the job ends),
    # "warned" (buzzer and LED), "none" (no session: the next badge is refused).
    action: Name
    session_id: SessionId | None = None
    member: MemberRef | None = None


class InterlockCleared(_Data):
    interlock: Name
    kind: Name


class AccessoryRefused(_Data):
    accessory: Name
    training: Name
    reason: DenyReason
    member: MemberRef
    session_id: SessionId | None = None


class SessionWarned(_Data):
    """A walk-in session is told the booking that follows starts at `until` (its end)."""

    session_id: SessionId
    member: MemberRef
    until: Timestamp
    reason: Reason = "booking"


class AgentStarted(_Data):
    version: Text
    recovered_sessions: int = Field(default=0, ge=0, le=limits.COUNT_MAX)


DATA_MODELS: dict[EventType, type[_Data]] = {
    EventType.BADGE_GRANTED: BadgeGranted,
    EventType.BADGE_DENIED: BadgeDenied,
    EventType.BADGE_READ: BadgeRead,
    EventType.SESSION_STARTED: SessionStarted,
    EventType.SESSION_ENDED: SessionEnded,
    EventType.MACHINE_BUSY: MachineBusy,
    EventType.MACHINE_IDLE: MachineIdle,
    EventType.MACHINE_LOCKED: MachineLocked,
    EventType.MACHINE_UNLOCKED: MachineUnlocked,
    EventType.JOB_STARTED: JobStarted,
    EventType.JOB_FINISHED: JobEnded,
    EventType.JOB_FAILED: JobEnded,
    EventType.INCIDENT_REPORTED: IncidentReported,
    EventType.AGENT_STARTED: AgentStarted,
    EventType.INTERLOCK_FAULT: InterlockFault,
    EventType.INTERLOCK_CLEARED: InterlockCleared,
    EventType.ACCESSORY_REFUSED: AccessoryRefused,
    EventType.SPOOL_ATTACHED: SpoolAttached,
    EventType.SESSION_WARNED: SessionWarned,
}


class Envelope(BaseModel):
    """`{"v":1,"id":UUID,"seq":int,"ts":UTC ISO-8601,"machine":..,"type":..,"data":{..}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    id: uuid.UUID
    seq: int = Field(ge=0, le=limits.SEQ_MAX)
    ts: Timestamp
    machine: str = Field(pattern=SLUG_PATTERN)
    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        # NUL, lone surrogates, NaN and 64-bit overflow anywhere (keys too, nested): no
        # database refuses what passes here. The other fields are typed and bounded.
        limits.check_json(value)
        return value

    @field_validator("v", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # JSON `true` equals 1 in Python and would pass for the version.
        if isinstance(value, bool):
            raise ValueError("the protocol version is a number, not a boolean")
        return value

    @field_validator("ts")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_serializer("ts")
    def _ts(self, value: datetime) -> str:
        return utc_iso(value)

    def typed_data(self) -> _Data:
        """The `data` object parsed with the model of this event type."""
        return DATA_MODELS[self.type].model_validate(self.data)


def new_envelope(
    *,
    machine: str,
    type: EventType,
    seq: int,
    data: dict[str, Any] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    id: uuid.UUID | None = None,
) -> Envelope:
    """A new event; `data` is checked against the model of its type (pydantic ValidationError)."""
    DATA_MODELS[type].model_validate(data or {})
    return Envelope(
        v=PROTOCOL_VERSION,
        id=id or uuid.uuid4(),
        seq=seq,
        ts=now(),
        machine=machine,
        type=type,
        data=data or {},
    )


def fit_data(type: EventType, data: dict[str, Any]) -> dict[str, Any]:
    """`data` made to fit the protocol where it came from outside the agent (a printer's file
    name or error text, a plug's reading): text cut to its field's length, NUL and invalid
    Unicode replaced, numbers past their bounds clamped, non-finite ones left out. What the
    agent itself got wrong (a missing field, a wrong type) still raises ValidationError."""
    fitted: dict[str, Any] = limits.fit_json(data)
    model = DATA_MODELS[type]
    for _ in range(len(fitted) + 1):
        try:
            model.model_validate(fitted)
            return fitted
        except ValidationError as exc:
            if not any([_fit_one(fitted, err) for err in exc.errors()]):
                raise
    model.model_validate(fitted)
    return fitted


def _fit_one(data: dict[str, Any], err: Any) -> bool:
    """Mend the one value a validation error points at, if it is a matter of size."""
    loc = err["loc"]
    if len(loc) != 1 or loc[0] not in data:
        return False
    key, value, ctx = loc[0], data[loc[0]], err.get("ctx") or {}
    kind = err["type"]
    if kind == "string_too_long" and isinstance(value, str):
        data[key] = value[: ctx["max_length"]]
        return True
    if kind == "less_than_equal" and isinstance(value, int | float):
        data[key] = ctx["le"]
        return True
    if kind == "greater_than_equal" and isinstance(value, int | float):
        data[key] = ctx["ge"]
        return True
    if kind in ("finite_number", "less_than", "greater_than"):
        del data[key]  # an optional field is then left out; a required one still raises
        return True
    return False


def encode_envelope(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


def _first_error(exc: ValidationError) -> ProtocolError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "payload"
    kind = err["type"]
    if kind == "missing":
        return ProtocolError("missing_field", f"field '{where}' is required")
    if kind == "extra_forbidden":
        return ProtocolError("unknown_field", f"field '{where}' is not part of the envelope")
    if where == "type":
        return ProtocolError(
            "unknown_type",
            f"event type {err.get('input')!r} is unknown; expected one of "
            + ", ".join(t.value for t in EventType),
        )
    if where.startswith("data"):
        return ProtocolError("invalid_data", f"{where}: {err['msg']}")
    return ProtocolError("invalid_field", f"field '{where}': {err['msg']}")


def decode_envelope(payload: bytes | str) -> Envelope:
    """Parse and validate one envelope, or raise ProtocolError with a stable reason code.

    The envelope is validated strictly from the JSON text (a string is not a number, a
    number is not a string); the slower classification below runs only for refusals.
    """
    raw = payload.encode() if isinstance(payload, str) else payload
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            "too_large", f"payload is {len(raw)} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("not_utf8", f"payload is not UTF-8 text ({exc.reason})") from None
    try:
        envelope = Envelope.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise _classify(text, exc) from None
    if envelope.type in DATA_MODELS:
        try:
            DATA_MODELS[envelope.type].model_validate(envelope.data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in ("data", *err["loc"]))
            raise ProtocolError("invalid_data", f"{where}: {err['msg']}") from None
    return envelope


def _classify(text: str, exc: ValidationError) -> ProtocolError:
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        return ProtocolError("not_json", f"payload is not JSON: {err}")
    if not isinstance(obj, dict):
        return ProtocolError("not_object", f"payload is JSON {type(obj).__name__}, not an object")
    if "v" not in obj:
        return ProtocolError("missing_field", "field 'v' is required")
    if obj["v"] != PROTOCOL_VERSION or isinstance(obj["v"], bool):
        return ProtocolError(
            "unknown_version",
            f"protocol version {obj['v']!r} is not supported; this side speaks {PROTOCOL_VERSION}",
        )
    return _first_error(exc)
