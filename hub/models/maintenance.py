"""Maintenance tables: tasks, sign-offs, incidents and downtime, with the incident API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from hub.models.base import UTCDateTime, utcnow


class MaintenanceCounter(StrEnum):
    """Which metered hours a task counts: busy (beam on, printing, current drawn, the
    machine's wear), badge-session hours, or the duration of print/cut jobs."""

    BUSY = "busy"
    SESSION = "session"
    PRINT = "print"
    # Metered in material and energy (issue 21): a task's `every_hours` is then every so many
    # grams of filament used on the machine, or kWh its plug measured.
    GRAMS = "grams"
    KWH = "kwh"


class DowntimeCause(StrEnum):
    MAINTENANCE = "maintenance"  # a critical task overdue: opened and closed by the hub
    INCIDENT = "incident"
    MANUAL = "manual"


class MaintenanceTaskRow(SQLModel, table=True):
    """A recurring task on one machine or on every machine of a type (exactly one of both)."""

    __tablename__ = "maintenance_task"
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    machine_id: int | None = Field(default=None, foreign_key="machine.id", index=True)
    machine_type_id: int | None = Field(default=None, foreign_key="machine_type.id", index=True)
    counter: MaintenanceCounter = MaintenanceCounter.BUSY
    every_hours: float | None = None
    every_days: int | None = None
    critical: bool = False
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MaintenanceSignOff(SQLModel, table=True):
    """Work done: resets the task's counter on that machine; the rows are its history."""

    __tablename__ = "maintenance_sign_off"
    __table_args__ = (Index("ix_sign_off_task_machine", "task_id", "machine_id", "signed_at"),)
    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="maintenance_task.id")
    machine_id: int = Field(foreign_key="machine.id")
    member_id: int = Field(foreign_key="member.id")
    signed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    counter_hours: float  # the task's counter on the machine when the work was signed off
    note: str = Field(default="", max_length=2000)


class Incident(SQLModel, table=True):
    """A problem reported at the machine (its button, OctoPrint) or on the web: a ticket."""

    __tablename__ = "incident"
    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", index=True)
    source: str = Field(max_length=20)  # button, octoprint, web, cli
    kind: str = Field(default="", max_length=40)
    reported_by_ref: str | None = Field(default=None, max_length=20)  # a member's pseudonym
    reported_by: str = Field(default="", max_length=100)  # who typed it, when not a member
    text: str = Field(default="", max_length=2000)
    event_id: uuid.UUID | None = Field(default=None, unique=True)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: str | None = Field(default=None, max_length=100)
    resolution: str = Field(default="", max_length=2000)


class Downtime(SQLModel, table=True):
    """A period a machine could not be used; open while `ended_at` is empty."""

    __tablename__ = "downtime"
    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", index=True)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cause: DowntimeCause = DowntimeCause.MANUAL
    reason: str = Field(default="", max_length=500)
    incident_id: int | None = Field(default=None, foreign_key="incident.id")


class IncidentCreate(SQLModel):
    machine: str = Field(max_length=63)
    text: str = Field(min_length=1, max_length=2000)
    reported_by: str = Field(default="", max_length=100)


class IncidentClose(SQLModel):
    note: str = Field(max_length=2000, description="what was found and done: the resolution")


class IncidentPublic(SQLModel):
    id: int
    machine: str
    source: str
    kind: str
    reported_by_ref: str | None
    reported_by: str
    text: str
    opened_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    resolution: str


class SignOffCreate(SQLModel):
    note: str = Field(max_length=2000, description="what was done: parts, findings")
    machine: str | None = Field(
        default=None,
        max_length=63,
        description="the machine the work was done on; needed only when the task is for a "
        "machine type with several machines",
    )


class SignOffPublic(SQLModel):
    id: int
    task_id: int
    machine: str
    maintainer: str  # the signing member's pseudonym
    signed_at: datetime
    counter: str
    counter_hours: float  # the task's counter on the machine at the sign-off: it counts again
    note: str
    unlocked: bool  # the machine's maintenance lockout was released by this sign-off
    still_overdue: list[str]  # critical tasks still overdue on the machine (it stays locked)
