"""The lab itself: its legal identity and choices kept as settings, and the yearly counter
that numbers its statements and credit notes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.models.base import UTCDateTime, utcnow

# Lengths the web, the API and the PDF share.
LAB_NAME_MAX = 200
LAB_ADDRESS_MAX = 500
LAB_VAT_MENTION_MAX = 200


class LabSetting(SQLModel, table=True):
    """One of the lab's settings by key (hub/services/lab.py names the keys and checks each
    value); a key absent takes its default there."""

    __tablename__ = "lab_setting"
    key: str = Field(primary_key=True, max_length=40)
    value: str = Field(default="", max_length=2000)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    changed_by: str = Field(default="", max_length=100)


class DocumentCounter(SQLModel, table=True):
    """The last number given to a statement or credit note in a year: both draw from it in the
    transaction that writes them, so a number exists only if its document does."""

    __tablename__ = "document_counter"
    year: int = Field(primary_key=True)
    last_number: int = 0


class ImportRecord(SQLModel, table=True):
    """A line of an outside export already applied (a HelloAsso membership or top-up), by its
    key: importing the same file again changes nothing."""

    __tablename__ = "import_record"
    __table_args__ = (UniqueConstraint("source", "kind", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=20)
    kind: str = Field(max_length=20)
    key: str = Field(max_length=400)
    member_id: int | None = Field(default=None, foreign_key="member.id")
    cents: int = 0
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(default="", max_length=100)


class LabIdentityPublic(SQLModel):
    """What every statement prints about the lab, and the language it speaks by default."""

    name: str
    address: str
    siret: str
    rna: str
    vat_mention: str
    locale: str
    privacy_contact: str


class LabIdentityUpdate(SQLModel):
    name: str | None = Field(default=None, max_length=LAB_NAME_MAX)
    address: str | None = Field(default=None, max_length=LAB_ADDRESS_MAX)
    siret: str | None = Field(default=None, max_length=40)
    rna: str | None = Field(default=None, max_length=40)
    vat_mention: str | None = Field(default=None, max_length=LAB_VAT_MENTION_MAX)
    locale: str | None = Field(default=None, max_length=5)
    privacy_contact: str | None = Field(default=None, max_length=320)
