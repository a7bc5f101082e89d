"""The wire contract as the agent checks it, with msgspec: no pydantic on a Pi.

The hub validates with the pydantic models of protocol/envelope.py, messages.py and
allowlist.py; this module states the same fields, bounds and refusals for what the agent
builds (events, statuses, telemetry) and what it trusts (allow-lists, commands), every bound
taken from protocol/limits.py as the hub's are, the signed wrapper opened by the same
protocol/signed.py. tests/unit/test_protocol_lite.py proves with Hypothesis that both sides
accept and refuse the same messages. pydantic, with its compiled schemas, took about 20 MB of
the agent's 43; msgspec takes about 3 (docs/performance.md, docs/decisions.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from protocol import limits
from protocol.keys import HubKey
from protocol.signed import (
    MAX_ALLOWLIST_BYTES,
    MAX_BOOKINGS,
    MAX_LIST_VERSION,
    ListRefused,
    canonical_json,
    open_signed,
)
from protocol.topics import SLUG_PATTERN
from protocol.vocab import PROTOCOL_VERSION, DenyReason, EventType, ProtocolError, utc_iso

__all__ = [
    "AllowEntry",
    "AllowList",
    "BookedSlot",
    "Command",
    "CommandName",
    "Event",
    "ListRefused",
    "Message",
    "Status",
    "StatusSession",
    "Telemetry",
    "ValidationError",
    "check_data",
    "encode_event",
    "fit_data",
    "new_event",
    "status",
    "telemetry",
    "verify_allowlist",
    "verify_command",
]

ValidationError = msgspec.ValidationError

Text = Annotated[str, Meta(max_length=limits.TEXT_MAX_CHARS)]
MemberRef = Annotated[str, Meta(max_length=limits.MEMBER_REF_MAX_CHARS)]
BadgeUid = Annotated[str, Meta(max_length=limits.BADGE_MAX_CHARS)]
SessionId = Annotated[str, Meta(max_length=limits.SESSION_ID_MAX_CHARS)]
Source = Annotated[str, Meta(max_length=limits.SOURCE_MAX_CHARS)]
Reason = Annotated[str, Meta(max_length=limits.REASON_MAX_CHARS)]
JobId = Annotated[str, Meta(max_length=limits.JOB_ID_MAX_CHARS)]
Mode = Annotated[str, Meta(max_length=limits.MODE_MAX_CHARS)]
Name = Annotated[str, Meta(max_length=limits.SLUG_MAX_CHARS)]
Duration = Annotated[float, Meta(ge=0, le=limits.DURATION_MAX_S)]
Energy = Annotated[float, Meta(ge=0, le=limits.ENERGY_MAX_KWH)]
Filament = Annotated[float, Meta(ge=0, le=limits.FILAMENT_MAX_MM)]
Slug = Annotated[str, Meta(pattern=SLUG_PATTERN)]
Timestamp = Annotated[datetime, Meta(tz=True)]


class _Data(msgspec.Struct, frozen=True, kw_only=True):
    """An event's `data`: additive fields of a newer revision are kept (the dict travels as
    given), and every value, theirs too, is checked by limits.check_json (check_data)."""


class BadgeGranted(_Data, frozen=True, kw_only=True):
    badge: BadgeUid
    member: MemberRef
    session_id: SessionId
    level: Mode = "user"


class BadgeDenied(_Data, frozen=True, kw_only=True):
    badge: BadgeUid
    reason: DenyReason
    member: MemberRef | None = None


class BadgeRead(_Data, frozen=True, kw_only=True):
    badge: BadgeUid
    request_id: SessionId


class SessionStarted(_Data, frozen=True, kw_only=True):
    session_id: SessionId
    member: MemberRef
    badge: BadgeUid
    mode: Literal["normal", "supervised", "maintenance"] = "normal"
    supervisor: MemberRef | None = None


class SessionEnded(_Data, frozen=True, kw_only=True):
    session_id: SessionId
    member: MemberRef
    reason: Reason
    duration_s: Duration
    busy_s: Duration = 0
    # kWh a smart plug counted during the session (absent: the machine has no metering plug).
    energy_kwh: Energy | None = None


class MachineBusy(_Data, frozen=True, kw_only=True):
    source: Source
    session_id: SessionId | None = None


class MachineIdle(_Data, frozen=True, kw_only=True):
    source: Source
    busy_s: Duration
    session_id: SessionId | None = None
    # kWh of the busy period and of its run-on after the session; absent without a plug.
    energy_kwh: Energy | None = None
    run_on_energy_kwh: Energy | None = None


class MachineLocked(_Data, frozen=True, kw_only=True):
    reason: Text


class MachineUnlocked(_Data, frozen=True, kw_only=True):
    reason: Text = ""


class JobStarted(_Data, frozen=True, kw_only=True):
    job_id: JobId
    file: Text = ""
    session_id: SessionId | None = None
    member: MemberRef | None = None


class JobEnded(_Data, frozen=True, kw_only=True):
    job_id: JobId
    duration_s: Duration
    session_id: SessionId | None = None
    member: MemberRef | None = None
    error: Text | None = None
    # completed, cancelled, error, no-session, printer-offline (newer agents).
    reason: Reason | None = None
    printing_seen_s: Duration | None = None  # its start to the last poll that saw it printing
    filament_mm: Filament | None = None  # all extruders, the share its progress reached


class SpoolAttached(_Data, frozen=True, kw_only=True):
    session_id: SessionId
    member: MemberRef
    spool: BadgeUid  # the spool's tag, as the allow-list's `spools` lists it


class IncidentReported(_Data, frozen=True, kw_only=True):
    source: Source
    note: Text = ""
    member: MemberRef | None = None


class InterlockFault(_Data, frozen=True, kw_only=True):
    interlock: Name
    kind: Name
    action: Name
    session_id: SessionId | None = None
    member: MemberRef | None = None


class InterlockCleared(_Data, frozen=True, kw_only=True):
    interlock: Name
    kind: Name


class AccessoryRefused(_Data, frozen=True, kw_only=True):
    accessory: Name
    training: Name
    reason: DenyReason
    member: MemberRef
    session_id: SessionId | None = None


class SessionWarned(_Data, frozen=True, kw_only=True):
    """A walk-in session is told the booking that follows starts at `until` (its end)."""

    session_id: SessionId
    member: MemberRef
    until: Timestamp
    reason: Reason = "booking"

    def __post_init__(self) -> None:
        limits.check_timestamp(self.until)  # as the hub's Timestamp: 1970..2200


class AgentStarted(_Data, frozen=True, kw_only=True):
    version: Text
    recovered_sessions: Annotated[int, Meta(ge=0, le=limits.COUNT_MAX)] = 0


DATA_STRUCTS: dict[EventType, type[_Data]] = {
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


_NUMBERS: dict[type, frozenset[str]] = {}


def _numeric_fields(shape: type) -> frozenset[str]:
    if shape not in _NUMBERS:
        import typing

        hints = typing.get_type_hints(shape, include_extras=True)
        _NUMBERS[shape] = frozenset(
            name
            for name, annotation in hints.items()
            if _bounds(annotation)[0] in (int, float)
            or any(_bounds(a)[0] in (int, float) for a in typing.get_args(_bounds(annotation)[0]))
        )
    return _NUMBERS[shape]


def _lax(shape: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` as pydantic's lax numbers see it: a boolean given for a number is 0 or 1."""
    numeric = _numeric_fields(shape)
    if not any(isinstance(data.get(name), bool) for name in numeric):
        return data
    return {k: int(v) if k in numeric and isinstance(v, bool) else v for k, v in data.items()}


def check_data(type: EventType, data: dict[str, Any]) -> None:
    """`data` against its event type's fields, or msgspec.ValidationError naming the field.
    Lax as the hub's pydantic check of `data` is: a number given as text is taken."""
    try:
        limits.check_json(data)  # keys too, and fields of a newer revision
    except ValueError as exc:
        raise msgspec.ValidationError(str(exc)) from None
    msgspec.convert(_lax(DATA_STRUCTS[type], data), DATA_STRUCTS[type], strict=False)


class Event(msgspec.Struct, frozen=True):
    """`{"v":1,"id":UUID,"seq":int,"ts":UTC ISO-8601,"machine":..,"type":..,"data":{..}}`."""

    v: Literal[1]
    id: uuid.UUID
    seq: Annotated[int, Meta(ge=0, le=limits.SEQ_MAX)]
    ts: Timestamp
    machine: Slug
    type: EventType
    data: dict[str, Any]

    def __post_init__(self) -> None:
        limits.check_timestamp(self.ts)


def new_event(
    *,
    machine: str,
    type: EventType,
    seq: int,
    data: dict[str, Any] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    id: uuid.UUID | None = None,
) -> Event:
    """A new event; `data` checked against the fields of its type (msgspec.ValidationError)."""
    data = data or {}
    check_data(type, data)
    return msgspec.convert(
        {
            "v": PROTOCOL_VERSION,
            "id": id or uuid.uuid4(),
            "seq": seq,
            "ts": now().astimezone(UTC),
            "machine": machine,
            "type": type,
            "data": data,
        },
        Event,
        from_attributes=False,
    )


def encode_event(event: Event) -> bytes:
    return msgspec.json.encode(
        {
            "v": event.v,
            "id": str(event.id),
            "seq": event.seq,
            "ts": utc_iso(event.ts),
            "machine": event.machine,
            "type": event.type.value,
            "data": event.data,
        }
    )


def _bounds(annotation: Any) -> tuple[Any, list[Any]]:
    """The plain type of a field and its Meta constraints."""
    metas: list[Any] = []
    while getattr(annotation, "__metadata__", None) is not None:
        metas += [m for m in annotation.__metadata__ if isinstance(m, Meta)]
        annotation = annotation.__origin__
    for arg in getattr(annotation, "__args__", ()):
        if getattr(arg, "__metadata__", None) is not None:
            inner, more = _bounds(arg)
            return inner, metas + more
    return annotation, metas


def fit_data(type: EventType, data: dict[str, Any]) -> dict[str, Any]:
    """`data` made to fit the protocol where it came from outside the agent (a printer's file
    name or error text, a plug's reading): text cut to its field's length, NUL and invalid
    Unicode replaced, numbers past their bounds clamped, non-finite ones left out. What the
    agent itself got wrong (a missing field, a wrong type) still raises ValidationError."""
    import typing

    fitted: dict[str, Any] = limits.fit_json(data)
    hints = typing.get_type_hints(DATA_STRUCTS[type], include_extras=True)
    for key, annotation in hints.items():
        if key not in fitted or fitted[key] is None:
            continue
        value = fitted[key]
        _, metas = _bounds(annotation)
        for meta in metas:
            if isinstance(value, str) and meta.max_length is not None:
                value = value[: meta.max_length]
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if meta.le is not None and value > meta.le:
                    value = meta.le
                if meta.ge is not None and value < meta.ge:
                    value = meta.ge
        fitted[key] = value
    check_data(type, fitted)
    return fitted


# -- statuses and telemetry ------------------------------------------------------------------
class StatusSession(msgspec.Struct, frozen=True, kw_only=True):
    """The session open on the machine, as its status reports it (the dashboard shows it)."""

    session_id: SessionId
    member: MemberRef
    badge: BadgeUid | None = None
    mode: Mode | None = None
    started_at: Timestamp | None = None


Count = Annotated[int, Meta(ge=0, le=limits.SEQ_MAX)]
Version = Annotated[int, Meta(ge=0, le=limits.VERSION_MAX)]


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """Retained on .../status. The agent's last will is the same with state "offline"."""

    v: Literal[1] = 1
    machine: Slug
    state: Literal["online", "offline"]
    ts: Timestamp | None = None
    version: Text | None = None
    uptime_s: Annotated[float, Meta(ge=0, le=limits.UPTIME_MAX_S)] | None = None
    relay: Literal["open", "closed"] | None = None
    session: StatusSession | None = None
    busy: bool | None = None
    locked: bool | None = None
    reader_ok: bool | None = None
    backlog: Count | None = None
    acl_version: Version | None = None
    acl_refused: Annotated[str, Meta(max_length=40)] | None = None
    acl_offered: Version | None = None
    last_seq: Count | None = None
    interlocks: dict[str, bool] | None = None
    accessories: dict[str, bool] | None = None


class Telemetry(msgspec.Struct, frozen=True, kw_only=True):
    """One sample set on .../telemetry (QoS 0): temperatures, progress, watts."""

    v: Literal[1] = 1
    machine: Slug
    ts: Timestamp
    values: dict[str, float | int | str | bool | None]


def _wire(value: Any) -> Any:
    """Timestamps as the wire writes them (UTC, Z), at any depth."""
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    return value


class Message:
    """A status or telemetry message checked against its shape; fields of a newer revision
    (the status's `journal`) travel as given, checked as JSON every database stores."""

    __slots__ = ("fields",)

    def __init__(self, shape: type[Status] | type[Telemetry], **fields: Any) -> None:
        wire = _wire({"v": PROTOCOL_VERSION, **{k: v for k, v in fields.items() if v is not None}})
        # Typed first, then every value checked as stored (the hub's order): a whole float
        # for a count is the count.
        typed = msgspec.to_builtins(msgspec.convert(_lax(shape, wire), shape, strict=False))
        known = {k: v for k, v in typed.items() if v is not None}
        if isinstance(known.get("session"), dict):  # unset fields left out, as they always were
            known["session"] = {k: v for k, v in known["session"].items() if v is not None}
        extras = {k: v for k, v in wire.items() if k not in shape.__struct_fields__}
        limits.check_json({**known, **extras})
        if "ts" in known:
            limits.check_timestamp(msgspec.convert(known["ts"], datetime))
        self.fields: dict[str, Any] = {**known, **extras}

    def encode(self) -> bytes:
        return msgspec.json.encode(self.fields)


def status(**fields: Any) -> Message:
    return Message(Status, **fields)


def telemetry(**fields: Any) -> Message:
    return Message(Telemetry, **fields)


# -- commands -------------------------------------------------------------------------------
class CommandName(StrEnum):
    LOCK = "lock"
    UNLOCK = "unlock"
    UNLOCK_FOR_MAINTENANCE = "unlock-for-maintenance"
    SYNC = "sync"
    END_SESSION = "end-session"
    ENROL = "enrol"


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """Hub -> agent on .../cmd, QoS 1."""

    v: Literal[1] = 1
    ts: Timestamp
    cmd: CommandName
    id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
    args: dict[str, Any] = msgspec.field(default_factory=dict)


MAX_AGE = timedelta(hours=24)


def _where(exc: msgspec.DecodeError) -> tuple[str, str]:
    text = str(exc)
    head, _, path = text.partition(" - at `$")
    where = path.rstrip("`").lstrip(".") if path else ""
    return where, head


def verify_command(
    payload: bytes | str,
    public_key: HubKey,
    *,
    machine: str,
    now: datetime,
    max_age: timedelta = MAX_AGE,
) -> Command:
    """The command, or ProtocolError with a reason: too_large, not_json, invalid_field,
    unsigned, bad_signature, wrong_machine, stale (as protocol.commands.verify_command)."""
    body = open_signed(
        payload, public_key, field="command", what="command", max_bytes=limits.MAX_PAYLOAD_BYTES
    )
    if body.get("machine") != machine:
        raise ProtocolError("wrong_machine", f"command is for {body.get('machine')!r}")
    try:
        limits.check_json(body)
        command = msgspec.json.decode(
            canonical_json({k: v for k, v in body.items() if k != "machine"}),
            type=Command,
            strict=True,
        )
        limits.check_timestamp(command.ts)
    except msgspec.DecodeError as exc:  # ValidationError included
        where, msg = _where(exc)
        raise ProtocolError("invalid_field", f"command field '{where}': {msg}") from None
    except ValueError as exc:
        raise ProtocolError("invalid_field", f"command: {exc}") from None
    except msgspec.ValidationError as exc:
        where, msg = _where(exc)
        raise ProtocolError("invalid_field", f"command field '{where}': {msg}") from None
    if command.ts < now - max_age:
        raise ProtocolError("stale", f"command of {utc_iso(command.ts)} is too old to apply")
    return command


# -- allow-lists ----------------------------------------------------------------------------
TrainingLevel = Literal["user", "trainer", "maintainer"]


class AllowEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One badge that may use the machine, with the holder's training level."""

    badge: Annotated[str, Meta(pattern=r"^[0-9A-F]{8,20}$")]
    member: str
    level: TrainingLevel = "user"
    supervised_only: bool = False
    training_expires_at: Timestamp | None = None
    block: DenyReason | None = None
    trainings: dict[str, Timestamp | None] = msgspec.field(default_factory=dict)


class BookedSlot(msgspec.Struct, frozen=True, kw_only=True):
    """A booking (member set) or a block staff put on the machine (member null): during it,
    only the booker, or a trainer or maintainer, may start the machine (docs/bookings.md)."""

    starts_at: Timestamp
    ends_at: Timestamp
    member: str | None = None


class AllowList(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    v: Literal[1] = 1
    site: Slug
    machine: Slug
    machine_type: str
    version: Annotated[int, Meta(ge=1, le=MAX_LIST_VERSION)]
    issued_at: Timestamp
    expires_at: Timestamp
    locked: bool = False
    lock_reason: str | None = None
    entries: list[AllowEntry] = msgspec.field(default_factory=list)
    # The tags of the lab's spools (issue 21): tapped after a badge they attach a spool to the
    # session; tapped alone they never open the machine, whatever else they might match.
    spools: list[str] = msgspec.field(default_factory=list)
    # The machine's bookings and blocks overlapping the list's validity (absent: none).
    bookings: Annotated[list[BookedSlot], Meta(max_length=MAX_BOOKINGS)] = msgspec.field(
        default_factory=list
    )

    def is_spool(self, uid: str) -> bool:
        spools: frozenset[str] | None = self.__dict__.get("_spools")
        if spools is None:
            spools = frozenset(self.spools)
            self.__dict__["_spools"] = spools
        return uid in spools

    def slots(self) -> tuple[BookedSlot, ...]:
        """The bookings by start time (the hub sends them so; a list is not trusted to be)."""
        slots: tuple[BookedSlot, ...] | None = self.__dict__.get("_slots")
        if slots is None:
            slots = tuple(sorted(self.bookings, key=lambda slot: slot.starts_at))
            self.__dict__["_slots"] = slots
        return slots

    def by_badge(self) -> dict[str, AllowEntry]:
        """Entries by badge uid, built once: a decision is a dictionary lookup."""
        index: dict[str, AllowEntry] | None = self.__dict__.get("_by_badge")
        if index is None:
            index = {e.badge: e for e in self.entries}
            self.__dict__["_by_badge"] = index
        return index


def parse_allowlist(body: dict[str, Any]) -> AllowList:
    """A list body (already opened) as the agent holds it, or ProtocolError invalid_field."""
    try:
        return msgspec.json.decode(canonical_json(body), type=AllowList, strict=True)
    except msgspec.DecodeError as exc:  # ValidationError included
        where, msg = _where(exc)
        raise ProtocolError("invalid_field", f"allow-list field '{where}': {msg}") from None


def verify_allowlist(
    payload: bytes | str,
    public_key: HubKey,
    *,
    now: datetime | None = None,
    current_version: int | None = None,
) -> AllowList:
    """Check signature, expiry and version, or raise ProtocolError saying which failed
    (as protocol.allowlist.verify_allowlist): not_json, unsigned, bad_signature,
    invalid_field; expired and stale are a ListRefused carrying the version offered."""
    body = open_signed(
        payload, public_key, field="list", what="allow-list", max_bytes=MAX_ALLOWLIST_BYTES
    )
    allowlist = parse_allowlist(body)
    moment = now or datetime.now(UTC)
    if allowlist.expires_at <= moment:
        raise ListRefused(
            "expired", f"allow-list expired at {utc_iso(allowlist.expires_at)}", allowlist.version
        )
    if current_version is not None and allowlist.version <= current_version:
        raise ListRefused(
            "stale",
            f"allow-list version {allowlist.version} is not newer than {current_version}",
            allowlist.version,
        )
    return allowlist
