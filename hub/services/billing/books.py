"""Months and euros as people type them, closed months and the lock on the lab's books."""

from __future__ import annotations

import re
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session, select

from hub.core.errors import InvalidValue
from hub.models import BillingMonth

MONTH_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


# --- money and months as people type them -------------------------------------------------
def parse_month(month: str, field: str = "month") -> tuple[date, date]:
    """The first day of the month and of the next one; InvalidValue names `field`."""
    # fullmatch: `$` alone would let "2026-10\n" through to fromisoformat.
    try:
        if not MONTH_PATTERN.fullmatch(month):
            raise ValueError(month)
        first = date.fromisoformat(month + "-01")
        # Year 0 and the month after 9999-12 are not dates either.
        return first, date(first.year + first.month // 12, first.month % 12 + 1, 1)
    except ValueError:
        raise InvalidValue("billing.month_format", field=field, params={"month": month}) from None


def parse_euros(text: str, field: str = "amount") -> int:
    """'20', '20.5', '20,50' or '20,50 €' as cents; InvalidValue names `field`."""
    cleaned = text.replace("€", "").replace("EUR", "").strip()
    match = re.fullmatch(r"(\d{1,7})(?:[.,](\d{1,2}))?", cleaned)
    if not match:
        raise InvalidValue("billing.amount_format", field=field, params={"amount": text})
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def euros(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100},{abs(cents) % 100:02d}"


def closed_months(session: Session) -> list[str]:
    return sorted(session.exec(select(BillingMonth.month)).all())


def is_closed(session: Session, month: str) -> bool:
    return session.get(BillingMonth, month) is not None


# Any number, the same in every process: PostgreSQL's advisory lock for the books.
_BOOKS_LOCK = 0x4174656C  # "Atel"


def lock_books(session: Session) -> None:
    """Hold the lab's books until the transaction ends: closing a month and changing what a
    closed month depends on (a member's category from a day) take turns, so a change cannot
    slip in between a close's reading its members and its committing the month. PostgreSQL:
    a transaction-level advisory lock. SQLite: a write that changes nothing, which takes the
    database's one write lock (readers are not held up). Whoever comes second waits, then
    sees what the first committed."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _BOOKS_LOCK})
    else:
        connection.execute(sa.text("UPDATE billing_month SET month = month WHERE 1 = 0"))
