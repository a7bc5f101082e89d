"""The notification outbox: what the hub has to tell someone, written with its cause."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from hub.models.base import UTCDateTime, utcnow


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"  # the channel acknowledged it: never sent again
    FAILED = "failed"  # gave up after the last attempt (kept for the delivery log)


def new_notification_id() -> str:
    return uuid.uuid4().hex


class Notification(SQLModel, table=True):
    """One message to one recipient on one channel. A worker claims it with a lease, sends it
    and marks it sent; a worker killed mid-send leaves a lease that runs out, and the message
    goes again (with the same id: the receiver's key for deduplication)."""

    __tablename__ = "notification_outbox"
    __table_args__ = (Index("ix_notification_outbox_due", "status", "next_attempt_at"),)
    id: str = Field(default_factory=new_notification_id, primary_key=True, max_length=32)
    # The cause and the recipient: an event replayed or a watch run twice enqueues nothing new.
    dedup_key: str = Field(unique=True, max_length=200)
    channel: str = Field(max_length=20)
    recipient: str = Field(max_length=320)
    kind: str = Field(max_length=40)
    language: str = Field(default="en", max_length=5)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=OutboxStatus.PENDING.value, max_length=10)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)


class NotificationPublic(SQLModel):
    """The delivery log as admins see it: no message body, only what happened to it."""

    id: str
    channel: str
    recipient: str
    kind: str
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


def new_webhook_secret() -> str:
    # Standard Webhooks' form: "whsec_" and the base64 of the HMAC key (docs/notifications.md).
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Webhook(SQLModel, table=True):
    """A receiver of signed JSON posts. Its secret is shown once, when it is made; it stays in
    the database because every post is signed with it (HMAC), and no API or page returns it."""

    __tablename__ = "notification_webhook"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=80)
    url: str = Field(max_length=2000)
    secret: str = Field(default_factory=new_webhook_secret, max_length=100)
    # The notification kinds it receives ("print.failed"...); empty: every kind.
    kinds: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Off unless an admin allows it: member references, file names and emails stay out.
    personal_data: bool = False
    enabled: bool = True
    consecutive_failures: int = 0
    # The first failure since the last success: turned off when failing for too long.
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    disabled_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookPublic(SQLModel):
    id: int
    name: str
    url: str
    kinds: list[str]
    personal_data: bool
    enabled: bool
    consecutive_failures: int
    failing_since: datetime | None
    disabled_reason: str | None
    created_at: datetime


class WebhookCreated(WebhookPublic):
    """The answer to its creation: the only time the secret is shown."""

    secret: str


class NotificationDefault(SQLModel, table=True):
    """The lab's choice for everyone who has not chosen (set by managers and admins)."""

    __tablename__ = "notification_default"
    kind: str = Field(primary_key=True, max_length=40)
    channel: str = Field(primary_key=True, max_length=20)
    enabled: bool = True


class NotificationPreference(SQLModel, table=True):
    """A person's own choice for one kind on one channel; it wins over the lab's default."""

    __tablename__ = "notification_preference"
    user_id: int = Field(foreign_key="user.id", primary_key=True)
    kind: str = Field(primary_key=True, max_length=40)
    channel: str = Field(primary_key=True, max_length=20)
    enabled: bool = True


class PreferencePublic(SQLModel):
    kind: str
    channel: str
    enabled: bool
    # Where the value comes from: "own" (the person's choice), "lab" or "built-in".
    source: str


class WebhookCreate(SQLModel):
    name: str = Field(max_length=80)
    url: str = Field(max_length=2000)
    kinds: list[str] = Field(default_factory=list, max_length=50)
    personal_data: bool = False
