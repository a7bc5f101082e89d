"""Wall displays: the read-only tokens a kiosk screen opens the live board with."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from hub.models.base import UTCDateTime, utcnow

DISPLAY_NAME_MAX = 100


class DisplayToken(SQLModel, table=True):
    """A wall screen's key to the live board and nothing else: no user behind it, no expiry,
    revoked by an admin. Only its SHA-256 is stored; the secret is in the kiosk URL, shown
    once when it is made (as API tokens are)."""

    __tablename__ = "display_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=DISPLAY_NAME_MAX)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    prefix: str = Field(max_length=12)
    created_by: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
