"""Machines, their types, and what the hub tracks of each machine's agent."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.models.base import Int64, UTCDateTime
from protocol import limits


class MachineKind(StrEnum):
    LASER = "laser"
    PRINTER = "printer"
    CNC = "cnc"
    OTHER = "other"


class MachineType(SQLModel, table=True):
    __tablename__ = "machine_type"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, max_length=limits.SLUG_MAX_CHARS)
    name: str = Field(max_length=200)
    kind: MachineKind = MachineKind.OTHER
    # How a job that ended because the printer went offline is billed on a busy-time rate:
    # "whole" (as reported, until the agent saw the job gone), "until-offline" (up to the
    # last time it was seen printing) or "free" (none of it). See docs/billing.md.
    offline_jobs: str = Field(default="whole", max_length=20)


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


PLUG_TOPIC_HELP = (
    "The one topic a smart plug the agent reads publishes its power on, on this broker "
    "(`tele/<topic>/SENSOR` for Tasmota, `<topic>/status/switch:<channel>` for Shelly Gen2, "
    "`shellies/<topic>/relay/<channel>/power` for Gen1): `atelier hub mqtt-credentials` lets "
    "the machine's account read it and gives the plug an account, plug-<code>, that may "
    "publish it and nothing else."
)


class MachineCreate(SQLModel):
    code: str
    name: str
    site: str
    location: str = ""
    kind: MachineKind | None = Field(
        default=None, description="Left out: the kind of its machine type (printer, laser, ...)"
    )
    machine_type: str
    agent_id: str | None = None
    plug_topic: str | None = Field(default=None, description=PLUG_TOPIC_HELP)


class MachineUpdate(SQLModel):
    name: str | None = None
    location: str | None = None
    kind: MachineKind | None = None
    machine_type: str | None = None
    agent_id: str | None = None
    plug_topic: str | None = Field(default=None, description=PLUG_TOPIC_HELP + " Null: none.")


class MachineTypeCreate(SQLModel):
    code: str
    name: str
    kind: MachineKind = MachineKind.OTHER


class MachineTypePublic(SQLModel):
    id: int
    code: str
    name: str
    kind: MachineKind
