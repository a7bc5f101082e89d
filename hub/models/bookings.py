"""Bookings: the rules per machine type (or one machine's override) and the slots booked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from hub.models.base import Id, UTCDateTime, utcnow

# The longest note a booking or block carries (what the calendar shows: "Laser training").
NOTE_MAX_CHARS = 200


class BookingRuleRow(SQLModel, table=True):
    """The booking rules of a machine type (machine_id null) or of one machine, which replace
    its type's whole (hub/domain/bookings.py BookingRules says what each means)."""

    __tablename__ = "booking_rule"
    id: int | None = Field(default=None, primary_key=True)
    machine_type_id: int | None = Field(
        default=None, foreign_key="machine_type.id", unique=True, index=True
    )
    machine_id: int | None = Field(default=None, foreign_key="machine.id", unique=True, index=True)
    bookable: bool = False
    slot_minutes: int = 30
    min_minutes: int = 30
    max_minutes: int = 240
    ahead_days: dict[str, int] = Field(
        default_factory=lambda: {"*": 14}, sa_column=Column(JSON, nullable=False)
    )
    week_hours: dict[str, float] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    # [[weekday, "09:00", "21:00"], ...] in the lab's time zone; empty: any hour.
    opening: list[list[Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    trained_only: bool = True
    grace_minutes: int = 15
    no_show_fee: bool = False
    late_cancel_hours: int = 0


class Booking(SQLModel, table=True):
    """A member's booking of a machine, or a block staff put on it (member_id null)."""

    __tablename__ = "booking"
    __table_args__ = (
        Index("ix_booking_machine_time", "machine_id", "starts_at"),
        Index("ix_booking_status_start", "status", "starts_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id")
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    kind: str = Field(default="booking", max_length=10)  # BookingKind
    status: str = Field(default="booked", max_length=10)  # BookingStatus
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    note: str = Field(default="", max_length=NOTE_MAX_CHARS)
    created_by: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_reason: str | None = Field(default=None, max_length=NOTE_MAX_CHARS)
    # The session that honoured it, and whether a session outlived the slot (an overrun).
    session_id: str | None = Field(default=None, max_length=64)
    overrun: bool = False
    # A no-show or late cancellation charged (the rules' fee), priced by billing as a
    # session of the booked slot; null: not charged.
    fee_cents: int | None = None
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class BookingCreate(SQLModel):
    machine: str
    starts_at: datetime
    ends_at: datetime
    member_id: Id | None = Field(
        default=None, description="Staff only: whom it is for (left out: yourself)"
    )
    block: bool = Field(default=False, description="Staff only: hold the machine (training, event)")
    note: str = Field(default="", max_length=NOTE_MAX_CHARS)


class BookingUpdate(SQLModel):
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    note: str | None = Field(default=None, max_length=NOTE_MAX_CHARS)


class BookingPublic(SQLModel):
    id: int
    machine: str
    member_id: int | None
    member_ref: str | None
    kind: str
    status: str
    starts_at: datetime
    ends_at: datetime
    note: str
    created_by: str
    cancelled_at: datetime | None
    cancel_reason: str | None
    overrun: bool
    fee_cents: int | None
