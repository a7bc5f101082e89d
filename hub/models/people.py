"""People: members and their category history, badges, trainings, logins and API tokens."""

from __future__ import annotations

import secrets
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import field_validator
from sqlalchemy import Column, Date, String
from sqlmodel import Field, SQLModel

from hub.models.base import Id, UTCDateTime, utcnow
from protocol import limits
from protocol.badges import normalise_uid
from protocol.limits import INT32_MAX


def new_member_ref() -> str:
    # What machines, events and reports see instead of a name.
    return "m-" + secrets.token_hex(4)


class MemberCategory(StrEnum):
    INDIVIDUAL = "individual"
    STUDENT = "student"
    PROFESSIONAL = "professional"
    COMPANY = "company"
    STAFF = "staff"


class MemberStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    LEFT = "left"


class TrainingLevel(StrEnum):
    USER = "user"
    TRAINER = "trainer"
    MAINTAINER = "maintainer"


class Role(StrEnum):
    """What a person may do through the API and the web pages."""

    MEMBER = "member"  # their own data only
    TRAINER = "trainer"
    MAINTAINER = "maintainer"
    MANAGER = "manager"
    ADMIN = "admin"


class Language(StrEnum):
    """What a member reads their statements in; None follows the lab's locale."""

    EN = "en"
    FR = "fr"


class MemberBase(SQLModel):
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    category: MemberCategory = MemberCategory.INDIVIDUAL
    status: MemberStatus = MemberStatus.ACTIVE
    payer_id: int | None = Field(default=None, foreign_key="member.id")
    # Kept as text ("en", "fr"): a language added later needs no change of column type.
    language: Language | None = Field(default=None, sa_type=String(length=5))


class Member(MemberBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(
        default_factory=new_member_ref,
        unique=True,
        index=True,
        max_length=limits.MEMBER_REF_MAX_CHARS,
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MemberCategoryChange(SQLModel, table=True):
    """A member's category changing from a lab-local day on; billing prices each session with
    the category in force on its start day (hub/category_history.py). No row for a member:
    the current category applies to every open month."""

    __tablename__ = "member_category_change"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    category: str = Field(max_length=20)
    previous_category: str = Field(max_length=20)
    effective_from: date = Field(sa_column=Column(Date, nullable=False))
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(default="", max_length=100)


class MemberPublic(MemberBase):
    id: int
    ref: str
    created_at: datetime


class Badge(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(index=True, max_length=limits.BADGE_MAX_CHARS)
    member_id: int = Field(foreign_key="member.id", index=True)
    enrolled_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Training(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    machine_type_id: int = Field(foreign_key="machine_type.id", index=True)
    level: TrainingLevel = TrainingLevel.USER
    granted_by_id: int | None = Field(default=None, foreign_key="member.id")
    granted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    supervised_only: bool = False


class User(SQLModel, table=True):
    """A login. Linked to a member when the person is one (trainers grant trainings as that
    member, members see their own data through it)."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=80)
    password_hash: str = Field(max_length=200)
    role: Role = Role.MEMBER
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    active: bool = True
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserPublic(SQLModel):
    id: int
    username: str
    role: Role
    member_id: int | None
    active: bool
    created_at: datetime


class ApiToken(SQLModel, table=True):
    """A bearer token: only its SHA-256 is stored; the secret is shown once, at creation.
    Web logins are tokens too (kind `web`), so logging out or revoking works the same way."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=100)
    kind: str = Field(default="api", max_length=10)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    prefix: str = Field(max_length=12)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TokenPublic(SQLModel):
    id: int
    user_id: int
    name: str
    kind: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


# --- the API's schemas of these tables: what a request sends, what an answer shows -------
def _clean_email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
        raise ValueError("not an email address, e.g. camille@example.org")
    return value


class MemberCreate(MemberBase):
    payer_id: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _clean_email(value)


class MemberUpdate(SQLModel):
    name: str | None = None
    email: str | None = None
    category: MemberCategory | None = None
    # The lab-local day a new category takes effect (billing prices each session with the
    # category of its start day); today when not given. Not inside a closed billing month.
    category_from: date | None = None
    status: MemberStatus | None = None
    payer_id: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None
    language: Language | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _clean_email(value)


class CategoryChangePublic(SQLModel):
    category: MemberCategory
    previous_category: MemberCategory
    effective_from: date
    recorded_at: datetime
    actor: str


class UserCreate(SQLModel):
    username: str
    password: str
    role: Role = Role.MEMBER
    member_id: Id | None = None


class UserUpdate(SQLModel):
    role: Role | None = None
    active: bool | None = None
    password: str | None = None
    member_id: Id | None = None


class TokenCreate(SQLModel):
    name: str
    expires_in_days: int | None = None


class TrainingCreate(SQLModel):
    member_id: Id
    machine_type: str
    level: TrainingLevel = TrainingLevel.USER
    expires_at: datetime | None = None
    supervised_only: bool = False


class TrainingUpdate(SQLModel):
    level: TrainingLevel | None = None
    expires_at: datetime | None = None
    supervised_only: bool | None = None


class TrainingPublic(SQLModel):
    id: int
    member_id: int
    machine_type: str
    level: TrainingLevel
    granted_by_id: int | None
    granted_at: datetime
    expires_at: datetime | None
    supervised_only: bool


class BadgeCreate(SQLModel):
    uid: str
    member_id: Id

    @field_validator("uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return normalise_uid(value)


class BadgePublic(SQLModel):
    id: int
    uid: str
    member_id: int
    enrolled_at: datetime
    revoked_at: datetime | None
