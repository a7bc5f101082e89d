"""Maintenance tables: tasks, sign-offs, incidents and downtime, and the incident hook of ingest."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index
from sqlmodel import Field, Session, SQLModel, col, select

from hub.models import Machine, Member, UTCDateTime, utcnow
from protocol.envelope import Envelope

log = logging.getLogger(__name__)


class MaintenanceCounter(StrEnum):
    """Which metered hours a task counts: busy (beam on, printing, current drawn, the
    machine's wear), badge-session hours, or the duration of print/cut jobs."""

    BUSY = "busy"
    SESSION = "session"
    PRINT = "print"


class DowntimeCause(StrEnum):
    MAINTENANCE = "maintenance"  # a critical task overdue: opened and closed by the hub
    INCIDENT = "incident"
    MANUAL = "manual"


# --- tasks and sign-offs ------------------------------------------------------------------
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


# --- incidents and downtime ---------------------------------------------------------------
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


# --- API shapes ---------------------------------------------------------------------------
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


def incident_public(incident: Incident, machine_code: str) -> IncidentPublic:
    return IncidentPublic(
        id=incident.id or 0,
        machine=machine_code,
        source=incident.source,
        kind=incident.kind,
        reported_by_ref=incident.reported_by_ref,
        reported_by=incident.reported_by,
        text=incident.text,
        opened_at=incident.opened_at,
        closed_at=incident.closed_at,
        closed_by=incident.closed_by,
        resolution=incident.resolution,
    )


# --- data functions -----------------------------------------------------------------------
def open_downtime(session: Session, *, machine_id: int, cause: DowntimeCause) -> Downtime | None:
    return session.exec(
        select(Downtime).where(
            Downtime.machine_id == machine_id,
            Downtime.cause == cause,
            col(Downtime.ended_at).is_(None),
        )
    ).first()


def open_incident(
    session: Session,
    *,
    machine: Machine,
    source: str,
    text: str,
    kind: str = "",
    reported_by_ref: str | None = None,
    reported_by: str = "",
    opened_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> Incident:
    assert machine.id is not None
    incident = Incident(
        machine_id=machine.id,
        source=source[:20],
        kind=kind[:40],
        reported_by_ref=reported_by_ref,
        reported_by=reported_by[:100],
        text=text[:2000],
        event_id=event_id,
        opened_at=opened_at or utcnow(),
    )
    session.add(incident)
    session.flush()
    return incident


def close_incident(
    session: Session, incident: Incident, *, by: str, resolution: str, at: datetime | None = None
) -> None:
    incident.closed_at = at or utcnow()
    incident.closed_by = by[:100]
    incident.resolution = resolution[:2000]
    session.add(incident)


def incident_from_event(session: Session, site: str, env: Envelope) -> Incident | None:
    """Ingest hook for `incident.reported`: open a ticket, once per event.

    OctoPrint reports "printer-online" when the printer answers again; that closes its open
    "printer-offline" ticket instead of opening a new one.
    """
    machine = session.exec(select(Machine).where(Machine.code == env.machine)).first()
    if machine is None or machine.id is None:
        log.warning("incident from unknown machine %s/%s not ticketed", site, env.machine)
        return None
    data = env.data
    kind = str(data.get("kind") or "")
    source = str(data.get("source") or "machine")
    note = str(data.get("note") or "")
    if kind == "printer-online":
        for ticket in session.exec(
            select(Incident).where(
                Incident.machine_id == machine.id,
                Incident.kind == "printer-offline",
                col(Incident.closed_at).is_(None),
            )
        ):
            close_incident(session, ticket, by=f"agent:{env.machine}", resolution=note, at=env.ts)
        return None
    member = data.get("member")
    return open_incident(
        session,
        machine=machine,
        source=source,
        kind=kind,
        text=note or ("reported with the machine's incident button" if source == "button" else ""),
        reported_by_ref=str(member)[:20] if member else None,
        opened_at=env.ts,
        event_id=env.id,
    )


def member_by_email(session: Session, email: str) -> Member | None:
    return session.exec(select(Member).where(Member.email == email.strip().lower())).first()
