"""The billing tables, unchanged from hub/billing_store.py (hub/models takes them over)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Date, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.domain.billing import Rate
from hub.models import (
    UTCDateTime,
    utcnow,
)

STATEMENT = "statement"
CREDIT_NOTE = "credit_note"


class BillingRate(SQLModel, table=True):
    """A price per machine type and member category from a day on (hub.domain.billing.Rate)."""

    __tablename__ = "billing_rate"
    __table_args__ = (UniqueConstraint("machine_type", "category", "effective_from"),)
    id: int | None = Field(default=None, primary_key=True)
    machine_type: str = Field(max_length=63)
    category: str = Field(max_length=20)
    effective_from: date = Field(sa_column=Column(Date, nullable=False))
    cents_per_hour: int
    basis: str = Field(default="session", max_length=10)
    start_fee_cents: int = 0
    minimum_cents: int = 0
    rounding_minutes: int = 1
    daily_cap_cents: int | None = None
    included_minutes_per_month: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    def as_rate(self) -> Rate:
        return Rate(
            machine_type=self.machine_type,
            category=self.category,
            effective_from=self.effective_from,
            cents_per_hour=self.cents_per_hour,
            basis="busy" if self.basis == "busy" else "session",
            start_fee_cents=self.start_fee_cents,
            minimum_cents=self.minimum_cents,
            rounding_minutes=self.rounding_minutes,
            daily_cap_cents=self.daily_cap_cents,
            included_minutes_per_month=self.included_minutes_per_month,
        )


class BillingAccount(SQLModel, table=True):
    """A member's (or payer's) prepaid balance and whether an empty one refuses the machines.

    The balance is kept here as well as summed from the movements so the allow-list, rebuilt
    for thousands of members, reads it with one join.
    """

    __tablename__ = "billing_account"
    member_id: int = Field(primary_key=True, foreign_key="member.id")
    prepaid_only: bool = False
    balance_cents: int = 0


class BalanceMovement(SQLModel, table=True):
    """Money in (top-up, credit) or out (a closed month drawn from the balance)."""

    __tablename__ = "balance_movement"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    kind: str = Field(max_length=20)  # topup, charge, credit
    cents: int
    statement_id: int | None = Field(default=None, foreign_key="statement.id")
    note: str = Field(default="", max_length=500)
    actor: str = Field(default="", max_length=100)


class BillingMonth(SQLModel, table=True):
    """A closed month: its statements are frozen and only credit notes may follow."""

    __tablename__ = "billing_month"
    month: str = Field(primary_key=True, max_length=7)
    closed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_by: str = Field(default="", max_length=100)
    timezone: str = Field(max_length=64)


class Statement(SQLModel, table=True):
    """A statement (one per payer and month) or a credit note against one."""

    __tablename__ = "statement"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=40)
    month: str = Field(max_length=7, index=True)
    kind: str = Field(default=STATEMENT, max_length=20)
    payer_ref: str = Field(max_length=20)
    payer_name: str = Field(default="", max_length=200)
    credits_id: int | None = Field(default=None, foreign_key="statement.id")
    reason: str = Field(default="", max_length=500)
    total_cents: int = 0
    prepaid_cents: int = 0  # drawn from the prepaid balance (negative: given back)
    due_cents: int = 0  # what is left to pay
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class StatementLine(SQLModel, table=True):
    __tablename__ = "statement_line"
    id: int | None = Field(default=None, primary_key=True)
    statement_id: int = Field(foreign_key="statement.id", index=True)
    position: int
    session_id: str = Field(max_length=64)
    member_ref: str = Field(max_length=20)
    machine: str = Field(max_length=63)
    started_at: datetime = Field(sa_type=UTCDateTime)
    billed_minutes: int
    cents: int
    explanation: str = Field(default="", max_length=2000)
