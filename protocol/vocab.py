"""The protocol's words, free of any validation library: event types, refusal reasons, the
error a bad payload raises and the one timestamp form. The hub's pydantic models
(protocol/envelope.py) and the agent's msgspec ones (protocol/lite.py) both use them."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

PROTOCOL_VERSION = 1


class EventType(StrEnum):
    BADGE_GRANTED = "badge.granted"
    BADGE_DENIED = "badge.denied"
    BADGE_READ = "badge.read"  # a card read for enrolment, not a request for access
    SESSION_STARTED = "session.started"
    SESSION_ENDED = "session.ended"
    MACHINE_BUSY = "machine.busy"
    MACHINE_IDLE = "machine.idle"
    MACHINE_LOCKED = "machine.locked"
    MACHINE_UNLOCKED = "machine.unlocked"
    JOB_STARTED = "job.started"
    JOB_FINISHED = "job.finished"
    JOB_FAILED = "job.failed"
    INCIDENT_REPORTED = "incident.reported"
    AGENT_STARTED = "agent.started"
    INTERLOCK_FAULT = "interlock.fault"  # a safety input went wrong (extraction, chiller...)
    INTERLOCK_CLEARED = "interlock.cleared"
    ACCESSORY_REFUSED = "accessory.refused"  # its own training missing: left off
    SPOOL_ATTACHED = "spool.attached"  # a spool's tag tapped after the badge: its material
    SESSION_WARNED = "session.warned"  # a walk-in told a booking starts soon (docs/bookings.md)


class DenyReason(StrEnum):
    """Why a badge was refused; shown to the member and counted by the hub."""

    UNKNOWN_BADGE = "unknown_badge"
    NOT_TRAINED = "not_trained"
    TRAINING_EXPIRED = "training_expired"
    MEMBER_INACTIVE = "member_inactive"
    LOCKED_OUT = "locked_out"
    BALANCE = "balance"
    QUOTA = "quota"
    SUPERVISION_REQUIRED = "supervision_required"
    NO_ALLOW_LIST = "no_allow_list"
    ALLOW_LIST_EXPIRED = "allow_list_expired"
    MACHINE_ALREADY_RUNNING = "machine_already_running"
    IN_USE = "in_use"
    CARD_SECRET_MISMATCH = "card_secret_mismatch"
    # Secure mode (protocol/card_keys.py), each a different card on the reader:
    CARD_UID_CLONE = "card_uid_clone"  # the secret sector opens with no key we know
    CARD_FACTORY_KEY = "card_factory_key"  # still on the factory key, with data on it
    CARD_BLANK = "card_blank"  # a blank card: factory key, nothing written
    CARD_OTHER_SITE = "card_other_site"  # another site's tag
    INTERLOCK_OPEN = "interlock_open"  # extraction, chiller flow, lid or fire suppression not OK
    SPOOL_TAG = "spool_tag"  # a spool's tag tapped with no session open: never a badge
    BOOKED = "booked"  # someone else's booking holds the machine now (badge.denied: free_at)


class ProtocolError(ValueError):
    """A payload that is not a valid message. `reason` is a stable code, `detail` is for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def utc_iso(value: datetime) -> str:
    """UTC ISO-8601 with a Z, the only timestamp form on the wire."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
