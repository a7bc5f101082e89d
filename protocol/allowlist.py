"""The signed allow-list: who may use one machine, trusted offline by the agent.

On the wire (retained on .../acl): `{"v":1, "list": {...AllowList...}, "key_id": "...",
"sig": "<base64 Ed25519 signature of canonical_json(list)>"}`. The signature covers the
canonical JSON of the `list` object as received (sorted keys, no spaces), so it survives any
re-serialisation by the broker or a bridge.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
)

from protocol.envelope import PROTOCOL_VERSION, DenyReason, ProtocolError, utc_iso
from protocol.keys import HubKey

if TYPE_CHECKING:  # the agent verifies with PyNaCl only; the hub signs with cryptography
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
from protocol.signed import MAX_ALLOWLIST_BYTES as MAX_ALLOWLIST_BYTES
from protocol.signed import MAX_BOOKINGS as MAX_BOOKINGS
from protocol.signed import MAX_LIST_VERSION as MAX_LIST_VERSION
from protocol.signed import ListRefused as ListRefused
from protocol.signed import canonical_json as canonical_json
from protocol.signed import key_id as key_id
from protocol.signed import load_public_key as load_public_key
from protocol.signed import open_signed as open_signed
from protocol.topics import SLUG_PATTERN

TrainingLevel = Literal["user", "trainer", "maintainer"]


class AllowEntry(BaseModel):
    """One badge that may use the machine, with the holder's training level."""

    model_config = ConfigDict(extra="allow", frozen=True)

    badge: str = Field(pattern=r"^[0-9A-F]{8,20}$")  # card UID, uppercase hex, no BCC
    member: str  # the hub's member reference (pseudonymous id, never a name)
    level: TrainingLevel = "user"
    supervised_only: bool = False
    training_expires_at: AwareDatetime | None = None
    # A hub-side rule (empty prepaid balance, quota) that refuses this member for now.
    block: DenyReason | None = None
    # The member's trainings on other machine types (code: expiry or null), for accessories
    # that need their own (a laser's rotary axis): see edge/domain/interlocks.py.
    trainings: dict[str, AwareDatetime | None] = Field(default_factory=dict)

    @field_serializer("training_expires_at")
    def _exp(self, value: datetime | None) -> str | None:
        return utc_iso(value) if value else None

    @field_serializer("trainings")
    def _trainings(self, value: dict[str, datetime | None]) -> dict[str, str | None]:
        return {code: utc_iso(at) if at else None for code, at in value.items()}

    @model_serializer(mode="wrap")
    def _without_empty_trainings(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Most members hold no other training: leaving the key out keeps a 5,000-member
        # list as small (and as fast to sign) as before the field existed.
        data: dict[str, Any] = handler(self)
        if not data.get("trainings"):
            data.pop("trainings", None)
        return data


class BookedSlot(BaseModel):
    """A booking (member set) or a block staff put on the machine (member null): during it,
    only the booker, or a trainer or maintainer, may start the machine (docs/bookings.md)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    starts_at: AwareDatetime
    ends_at: AwareDatetime
    member: str | None = None

    @field_serializer("starts_at", "ends_at")
    def _ts(self, value: datetime) -> str:
        return utc_iso(value)


class AllowList(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    v: Literal[1] = 1
    site: str = Field(pattern=SLUG_PATTERN)
    machine: str = Field(pattern=SLUG_PATTERN)
    machine_type: str
    # Strictly increasing per machine, an agent refuses older ones; the hub never issues one
    # below the time of issue in ms since the epoch, so a restored database cannot go back.
    version: int = Field(ge=1, le=MAX_LIST_VERSION)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    locked: bool = False
    lock_reason: str | None = None
    entries: list[AllowEntry] = Field(default_factory=list)
    # The tags of the lab's spools (issue 21): tapped after a badge they attach a spool to the
    # session; tapped alone they never open the machine, whatever else they might match.
    spools: list[str] = Field(default_factory=list)
    # The machine's bookings and blocks overlapping the list's validity, by start; a list
    # without any leaves the key out (so lists without bookings stay as they were).
    bookings: list[BookedSlot] = Field(default_factory=list, max_length=MAX_BOOKINGS)

    @field_validator("v", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # JSON `true` and `1.0` equal 1 in Python; the agent (protocol/lite.py) refuses both.
        if isinstance(value, bool | float):
            raise ValueError("the protocol version is the whole number 1")
        return value

    _index: tuple[int, dict[str, AllowEntry]] | None = PrivateAttr(default=None)
    _spool_set: tuple[int, frozenset[str]] | None = PrivateAttr(default=None)
    _slots: tuple[BookedSlot, ...] | None = PrivateAttr(default=None)

    @field_serializer("issued_at", "expires_at")
    def _ts(self, value: datetime) -> str:
        return utc_iso(value)

    @model_serializer(mode="wrap")
    def _without_empty_extras(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A lab without spools or bookings signs the same bytes as before those fields existed.
        data: dict[str, Any] = handler(self)
        for key in ("spools", "bookings"):
            if not data.get(key):
                data.pop(key, None)
        return data

    def is_spool(self, uid: str) -> bool:
        if self._spool_set is None or self._spool_set[0] != id(self.spools):
            self._spool_set = (id(self.spools), frozenset(self.spools))
        return uid in self._spool_set[1]

    def slots(self) -> tuple[BookedSlot, ...]:
        """The bookings by start time (the hub sends them so; a list is not trusted to be)."""
        if self._slots is None:
            self._slots = tuple(sorted(self.bookings, key=lambda slot: slot.starts_at))
        return self._slots

    def by_badge(self) -> dict[str, AllowEntry]:
        """Entries by badge uid, built once: a decision is a dictionary lookup."""
        # Keyed on the entries list itself, so a model_copy with new entries rebuilds it.
        if self._index is None or self._index[0] != id(self.entries):
            self._index = (id(self.entries), {e.badge: e for e in self.entries})
        return self._index[1]


def public_key_bytes(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_key_bytes(public_key)).decode()


def sign_allowlist(allowlist: AllowList, private_key: Ed25519PrivateKey) -> bytes:
    """The wire payload: the list, the signer's key id and the signature."""
    return sign_body(allowlist.model_dump(mode="json"), private_key)


def sign_body(list_body: dict[str, Any], private_key: Ed25519PrivateKey) -> bytes:
    """Sign a list given as JSON-ready values (what `AllowList.model_dump(mode="json")` gives)."""
    body = canonical_json(list_body)
    signature = base64.b64encode(private_key.sign(body)).decode()
    # The signed bytes are themselves valid JSON: embed them rather than encode the list twice.
    head = json.dumps(
        {"v": PROTOCOL_VERSION, "key_id": key_id(private_key.public_key()), "sig": signature},
        separators=(",", ":"),
    ).encode()
    return head[:-1] + b',"list":' + body + b"}"


def verify_allowlist(
    payload: bytes | str,
    public_key: HubKey | Ed25519PublicKey,
    *,
    now: datetime | None = None,
    current_version: int | None = None,
) -> AllowList:
    """Check signature, expiry and version, or raise ProtocolError saying which failed.

    Reason codes: not_json, unsigned, bad_signature, invalid_field, expired, stale; the
    last two are a ListRefused, which carries the version the list offered.
    """
    body = open_signed(
        payload, public_key, field="list", what="allow-list", max_bytes=MAX_ALLOWLIST_BYTES
    )
    try:
        # Strictly, as the JSON it came as (a string is not a number, a number not a time):
        # the agent's msgspec side (protocol/lite.py) reads it the same way.
        allowlist = AllowList.model_validate_json(canonical_json(body), strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ProtocolError("invalid_field", f"allow-list field '{where}': {err['msg']}") from None
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
