"""Billing in the database: rates, prepaid balances, frozen monthly statements and credit notes."""

from __future__ import annotations

import csv
import gc
import logging
import re
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import bindparam, func, insert, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select

from hub.core.files import private_file
from hub.domain.billing import (
    CategoryChange,
    CategoryTimeline,
    DutyRole,
    NoRateError,
    Rate,
    UsageRecord,
    bill_month,
    credit_note,
)
from hub.domain.billing import Statement as DomainStatement
from hub.domain.billing import StatementLine as DomainLine
from hub.models import (
    Machine,
    MachineSession,
    MachineType,
    Member,
    MemberCategory,
    MemberCategoryChange,
    utcnow,
)

# The tables live in hub.models.billing; named here too for the callers that import them
# from this module.
from hub.models.billing import CREDIT_NOTE as CREDIT_NOTE
from hub.models.billing import STATEMENT as STATEMENT
from hub.models.billing import BalanceMovement as BalanceMovement
from hub.models.billing import BillingAccount as BillingAccount
from hub.models.billing import BillingMonth as BillingMonth
from hub.models.billing import BillingRate as BillingRate
from hub.models.billing import Statement as Statement
from hub.models.billing import StatementLine as StatementLine

MONTH_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

log = logging.getLogger(__name__)


class BillingError(ValueError):
    """Something a person asked for that billing cannot do; the message names the field."""


# --- money and months as people type them -------------------------------------------------
def parse_month(month: str, field: str = "--month") -> tuple[date, date]:
    """The first day of the month and of the next one."""
    if not MONTH_PATTERN.match(month):
        raise BillingError(f"{field} {month!r} must be a month like 2026-10")
    first = date.fromisoformat(month + "-01")
    return first, date(first.year + first.month // 12, first.month % 12 + 1, 1)


def parse_euros(text: str, field: str = "AMOUNT") -> int:
    """'20', '20.5', '20,50' or '20,50 €' as cents."""
    cleaned = text.replace("€", "").replace("EUR", "").strip()
    match = re.fullmatch(r"(\d{1,7})(?:[.,](\d{1,2}))?", cleaned)
    if not match:
        raise BillingError(f"{field} {text!r} must be an amount in euros such as 20 or 12,50")
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def euros(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100},{abs(cents) % 100:02d}"


def _closed_months(session: Session) -> list[str]:
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


# --- rates --------------------------------------------------------------------------------
RATE_FIELDS = [
    "machine_type",
    "category",
    "effective_from",
    "cents_per_hour",
    "basis",
    "start_fee_cents",
    "minimum_cents",
    "rounding_minutes",
    "daily_cap_cents",
    "included_minutes_per_month",
]
_REQUIRED_RATE_FIELDS = RATE_FIELDS[:4]


def check_rate(session: Session, values: dict[str, str]) -> BillingRate:
    """A rate from text values (a CSV row or command options); BillingError names the field."""
    missing = [f for f in _REQUIRED_RATE_FIELDS if not (values.get(f) or "").strip()]
    if missing:
        raise BillingError(f"{', '.join(missing)} must be given")
    machine_type = values["machine_type"].strip()
    known_types = set(session.exec(select(MachineType.code)).all())
    if machine_type not in known_types:
        raise BillingError(
            f"machine_type {machine_type!r} is not a machine type of this lab "
            f"(known: {', '.join(sorted(known_types)) or 'none yet'})"
        )
    category = values["category"].strip().lower()
    categories = [c.value for c in MemberCategory]
    if category not in categories:
        raise BillingError(f"category {category!r} must be one of {', '.join(categories)}")
    try:
        effective = date.fromisoformat(values["effective_from"].strip())
    except ValueError:
        raise BillingError(
            f"effective_from {values['effective_from']!r} must be a day like 2026-10-01"
        ) from None
    for month in _closed_months(session):
        if effective < parse_month(month)[1]:
            raise BillingError(
                f"effective_from {effective} is not after {month}, which is closed: a closed "
                "month cannot change; give a day after it"
            )
    basis = (values.get("basis") or "session").strip() or "session"
    if basis not in ("session", "busy"):
        raise BillingError(f"basis {basis!r} must be session or busy")

    def number(name: str, default: int | None, least: int) -> int | None:
        raw = (values.get(name) or "").strip()
        if not raw:
            return default
        if not re.fullmatch(r"\d+", raw) or int(raw) < least:
            raise BillingError(f"{name} {raw!r} must be a whole number, at least {least}")
        return int(raw)

    rate = BillingRate(
        machine_type=machine_type,
        category=category,
        effective_from=effective,
        cents_per_hour=number("cents_per_hour", 0, 0) or 0,
        basis=basis,
        start_fee_cents=number("start_fee_cents", 0, 0) or 0,
        minimum_cents=number("minimum_cents", 0, 0) or 0,
        rounding_minutes=number("rounding_minutes", 1, 1) or 1,
        daily_cap_cents=number("daily_cap_cents", None, 0),
        included_minutes_per_month=number("included_minutes_per_month", 0, 0) or 0,
    )
    rate.as_rate()  # the domain's own checks
    return rate


def set_rate(session: Session, rate: BillingRate) -> bool:
    """Add the rate, or replace the one with the same type, category and day. True if new."""
    existing = session.exec(
        select(BillingRate).where(
            BillingRate.machine_type == rate.machine_type,
            BillingRate.category == rate.category,
            BillingRate.effective_from == rate.effective_from,
        )
    ).first()
    if existing is None:
        session.add(rate)
        return True
    for name in RATE_FIELDS[3:]:
        setattr(existing, name, getattr(rate, name))
    session.add(existing)
    return False


def import_rates(session: Session, text: str) -> tuple[int, int]:
    """Rates from CSV text with a header of RATE_FIELDS; all rows or none (added, replaced)."""
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [f for f in _REQUIRED_RATE_FIELDS if f not in header]
    if missing:
        raise BillingError(
            f"the header lacks {', '.join(missing)}; expected columns: {','.join(RATE_FIELDS)}"
        )
    unknown = [h for h in header if h not in RATE_FIELDS]
    if unknown:
        raise BillingError(f"unknown column(s) {', '.join(unknown)}; expected {RATE_FIELDS}")
    rates: list[BillingRate] = []
    seen: set[tuple[str, str, date]] = set()
    for line_no, row in enumerate(reader, start=2):
        values = {(k or "").strip(): v or "" for k, v in row.items()}
        try:
            rate = check_rate(session, values)
        except (BillingError, ValueError) as exc:
            raise BillingError(f"line {line_no}: {exc}") from None
        key = (rate.machine_type, rate.category, rate.effective_from)
        if key in seen:
            raise BillingError(f"line {line_no}: the same rate is given twice {key}")
        seen.add(key)
        rates.append(rate)
    if not rates:
        raise BillingError("the file has a header but no rate")
    added = sum(set_rate(session, rate) for rate in rates)
    return added, len(rates) - added


def all_rates(session: Session) -> list[Rate]:
    rows = session.exec(
        select(BillingRate).order_by(
            col(BillingRate.machine_type),
            col(BillingRate.category),
            col(BillingRate.effective_from),
        )
    ).all()
    return [row.as_rate() for row in rows]


# --- prepaid balances ---------------------------------------------------------------------
def member_by_email(session: Session, email: str) -> Member:
    member = session.exec(select(Member).where(Member.email == email.strip().lower())).first()
    if member is None:
        raise BillingError(f"MEMBER_EMAIL: no member with email {email}")
    return member


def account_of(session: Session, member: Member) -> BillingAccount:
    assert member.id is not None
    account = session.get(BillingAccount, member.id)
    if account is None:
        account = BillingAccount(member_id=member.id)
        session.add(account)
    return account


def _move(
    session: Session,
    account: BillingAccount,
    kind: str,
    cents: int,
    *,
    statement_id: int | None = None,
    note: str = "",
    actor: str = "",
) -> None:
    # One UPDATE, so a top-up and a close running at the same time both count.
    session.add(account)
    session.flush()
    session.execute(
        update(BillingAccount)
        .where(col(BillingAccount.member_id) == account.member_id)
        .values(balance_cents=col(BillingAccount.balance_cents) + cents)
    )
    session.refresh(account)
    session.add(
        BalanceMovement(
            member_id=account.member_id,
            kind=kind,
            cents=cents,
            statement_id=statement_id,
            note=note[:500],
            actor=actor[:100],
        )
    )


def _locked_account(session: Session, member_id: int | None) -> BillingAccount | None:
    """The account, its row held until commit (PostgreSQL) so its balance is drawn once."""
    return session.exec(
        select(BillingAccount)
        .where(BillingAccount.member_id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def top_up(
    session: Session, member: Member, cents: int, *, actor: str, note: str = ""
) -> BillingAccount:
    if cents <= 0:
        raise BillingError("AMOUNT must be more than zero")
    account = account_of(session, member)
    _move(session, account, "topup", cents, note=note, actor=actor)
    return account


def set_plan(session: Session, member: Member, *, prepaid_only: bool) -> BillingAccount:
    account = account_of(session, member)
    account.prepaid_only = prepaid_only
    session.add(account)
    return account


def movements(session: Session, member: Member) -> Sequence[BalanceMovement]:
    return session.exec(
        select(BalanceMovement)
        .where(BalanceMovement.member_id == member.id)
        .order_by(col(BalanceMovement.at), col(BalanceMovement.id))
    ).all()


# --- closing a month ----------------------------------------------------------------------
PROVISIONAL = "provisional"
# A provisional movement names its session in its note, so the close finds what to replace.
_PROVISIONAL_NOTE = "session "


@dataclass(frozen=True, slots=True)
class StatementTotals:
    """A statement's head as `billing close` reports it: a plain value, not an ORM object
    (building two thousand of those cost a quarter of the close)."""

    id: int
    number: str
    payer_ref: str
    payer_name: str
    total_cents: int
    prepaid_cents: int
    due_cents: int


def _heads(session: Session, month: str) -> list[StatementTotals]:
    return [
        StatementTotals(*row)
        for row in session.execute(
            sa.select(
                col(Statement.id),
                col(Statement.number),
                col(Statement.payer_ref),
                col(Statement.payer_name),
                col(Statement.total_cents),
                col(Statement.prepaid_cents),
                col(Statement.due_cents),
            )
            .where(col(Statement.month) == month, col(Statement.kind) == STATEMENT)
            .order_by(col(Statement.number))
        )
    ]


@dataclass(frozen=True)
class Closing:
    month: str
    statements: list[StatementTotals]
    already_closed: bool
    balances_changed: bool = False


@dataclass(frozen=True)
class _Person:
    id: int
    category: str
    payer_id: int | None
    name: str


def _people(session: Session, refs: Collection[str] | None = None) -> dict[str, _Person]:
    query = sa.select(
        col(Member.id),
        col(Member.ref),
        col(Member.category),
        col(Member.payer_id),
        col(Member.name),
    )
    if refs is not None:
        query = query.where(col(Member.ref).in_(refs))
    return {
        ref: _Person(member_id, category.value, payer_id, name)
        for member_id, ref, category, payer_id, name in session.execute(query)
    }


def _category_timelines(
    session: Session, first: date, people: dict[str, _Person], member_ref: str | None
) -> dict[str, CategoryTimeline]:
    """By member ref, the timelines of members with a category change effective after
    `first`: the only ones whose category from `first` on is not the current one. One query
    for the month's members (they have few changes); every other member is billed in their
    current category without a lookup."""
    query = (
        sa.select(
            col(MemberCategoryChange.member_id),
            col(MemberCategoryChange.effective_from),
            col(MemberCategoryChange.previous_category),
            col(MemberCategoryChange.category),
        )
        .where(col(MemberCategoryChange.effective_from) > first)
        .order_by(
            col(MemberCategoryChange.member_id),
            col(MemberCategoryChange.effective_from),
            col(MemberCategoryChange.id),
        )
    )
    if member_ref is not None:
        query = query.where(col(MemberCategoryChange.member_id) == people[member_ref].id)
    changes: dict[int, list[CategoryChange]] = defaultdict(list)
    for member_id, day, previous, category in session.execute(query):
        changes[member_id].append(CategoryChange(day, previous, category))
    if not changes:
        return {}
    return {
        ref: CategoryTimeline(person.category, changes[person.id])
        for ref, person in people.items()
        if person.id in changes
    }


def _utc_bounds(first: date, nxt: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return (
        datetime.combine(first, time(), tz).astimezone(UTC),
        datetime.combine(nxt, time(), tz).astimezone(UTC),
    )


# The trainer's own session ended by a hand-over to a trainee under supervision, and
# maintenance, are duty: told by the query as a small number rather than read as two strings
# per session (a tenth of the session query on SQLite).
_DUTIES = (DutyRole.NONE, DutyRole.TRAINER, DutyRole.MAINTAINER)
_DUTY_SQL = (
    "CASE WHEN s.mode = 'maintenance' THEN 2 WHEN s.end_reason = 'handover' THEN 1 ELSE 0 END"
)


def _usage(
    session: Session,
    first: date,
    nxt: date,
    tz: ZoneInfo,
    people: dict[str, _Person],
    *,
    member_ref: str | None = None,
) -> list[UsageRecord]:
    """The month's finished sessions (by local start day) as billing sees them, read as plain
    driver rows: a month is tens of thousands of sessions, and an ORM object per row cost ten
    times the reading itself. With `member_ref`, only that member's sessions, and sessions
    still open are left out rather than refused."""
    return _read_usage(session, first, nxt, tz, people, member_ref=member_ref)[0]


def _read_usage(
    session: Session,
    first: date,
    nxt: date,
    tz: ZoneInfo,
    people: dict[str, _Person],
    *,
    member_ref: str | None = None,
) -> tuple[list[UsageRecord], dict[str, str] | None]:
    """`_usage`, and on SQLite each session's start as stored (the text of its UTC time), which
    its statement line stores again: taken as read, not made again from the datetime (None on
    PostgreSQL, whose COPY takes the datetimes)."""
    start, end = _utc_bounds(first, nxt, tz)
    rows, busy_of = _month_rows(session.connection(), start, end, member_ref)
    sqlite = busy_of is not None
    as_utc = _sqlite_utc if sqlite else _aware_utc
    if member_ref is None and any(row[5] is None for row in rows):
        still_open = sorted((as_utc(row[4]), row[0]) for row in rows if row[5] is None)
        shown = ", ".join(sid for _, sid in still_open[:5]) + (
            " ..." if len(still_open) > 5 else ""
        )
        raise BillingError(
            f"--month: {len(still_open)} session(s) of the month have not ended ({shown}); "
            "wait for the machines to report them (or end them) before closing"
        )
    machine_types = dict(
        session.execute(
            select(Machine.code, MachineType.code).join(
                MachineType, col(Machine.machine_type_id) == col(MachineType.id)
            )
        )
        .tuples()
        .all()
    )
    refs_by_id = {person.id: ref for ref, person in people.items()}
    # A member whose category changed after the month's first day has a timeline: the
    # category of each session is the one in force on its local start day.
    timeline_of = _category_timelines(
        session, first, people, member_ref if member_ref in people else None
    )
    billed_as = {
        ref: (
            person.category,
            refs_by_id.get(person.payer_id) if person.payer_id else None,
            timeline_of.get(ref),
        )
        for ref, person in people.items()
    }
    stored_starts: dict[str, str] = {}
    fromisoformat = datetime.fromisoformat
    records = []
    # One pass from the driver's rows to the records: the times made UTC datetimes here, the
    # busy sums taken from the row (joined in) or from the dict (read apart).
    for sid, machine, ref, duty, started_as_read, ended_as_read, busy_s, summed_s in rows:
        if ended_as_read is None or started_as_read is None:
            continue
        if busy_of is None:
            started_at, ended_at = _aware_utc(started_as_read), _aware_utc(ended_as_read)
        else:  # SQLite: the text of UTC times, parsed here, not by a call per value
            summed_s = busy_of.get(sid)
            # SQLAlchemy's own form, "YYYY-MM-DD HH:MM:SS.ffffff", is stored again as read:
            # the same text _sqlite_time would make of it (checked where the other ISO 8601
            # forms of that length differ). Any other form goes by _sqlite_utc.
            if (
                len(started_as_read) == 26
                and started_as_read[10] == " "
                and started_as_read[7] == "-"
                and started_as_read[19] == "."
            ):
                started_at = fromisoformat(started_as_read + "+00:00")
                stored_starts[sid] = started_as_read
            else:
                started_at = _sqlite_utc(started_as_read)
                stored_starts[sid] = _sqlite_time(started_at)
            ended_at = (
                fromisoformat(ended_as_read + "+00:00")
                if len(ended_as_read) == 26
                else _sqlite_utc(ended_as_read)
            )
        who = billed_as.get(ref)
        if who is None:
            raise BillingError(f"session {sid}: member {ref} is not known to the hub")
        machine_type = machine_types.get(machine)
        if machine_type is None:
            raise BillingError(f"session {sid}: machine {machine} is not known to the hub")
        busy = max(busy_s or 0.0, summed_s or 0.0)
        records.append(
            UsageRecord(
                sid,
                ref,
                machine,
                machine_type,
                who[0] if who[2] is None else who[2].on(started_at.astimezone(tz).date()),
                started_at,
                ended_at if ended_at >= started_at else started_at,
                int(round(busy)),
                _DUTIES[duty],
                who[1],
            )
        )
    return records, stored_starts if sqlite else None


def _month_rows(
    connection: sa.Connection, start: datetime, end: datetime, member_ref: str | None
) -> tuple[list[tuple[Any, ...]], dict[str, float] | None]:
    """The sessions started in [start, end) as the driver's own tuples: (id, machine,
    member_ref, duty as an index of _DUTIES, started_at, ended_at, busy_s, the sum of its busy
    periods), and, on SQLite, those sums by session apart (the rows' own are NULL there; None
    on PostgreSQL).

    The driver's cursor, not SQLAlchemy's result: its rows, and UTCDateTime's conversion of
    each value, cost about as much as the query. Times come as the driver gives them: SQLite's
    text of the UTC time, PostgreSQL's aware datetimes (see `_sqlite_utc`, `_aware_utc`).
    """
    postgres = connection.dialect.name == "postgresql"
    near = timedelta(days=2)
    times = {"start": start, "end": end, "near_start": start - near, "near_end": end + near}
    params: dict[str, Any] = {
        # SQLite compares the stored text: the bounds in the same form.
        **(times if postgres else {name: _sqlite_time(value) for name, value in times.items()}),
        "member_ref": member_ref,
    }

    def mark(name: str) -> str:
        return f"%({name})s" if postgres else f":{name}"

    def of_member(column: str) -> str:
        return f" AND {column} = {mark('member_ref')}" if member_ref is not None else ""

    # The agent reports busy time at the end of a session; busy periods are the same time
    # seen from the machine, and cover a session whose end report lacked it.
    busy_sql = (
        "SELECT session_id, sum(busy_s) AS busy FROM busy_period"
        f" WHERE started_at >= {mark('near_start')} AND started_at < {mark('near_end')}"
        f" AND session_id IS NOT NULL{of_member('member_ref')} GROUP BY session_id"
    )
    sessions_sql = (
        f"SELECT s.id, s.machine, s.member_ref, {_DUTY_SQL}, s.started_at, s.ended_at, s.busy_s,"
        " {summed} FROM session AS s{joined}"
        f" WHERE s.started_at >= {mark('start')} AND s.started_at < {mark('end')}"
        f"{of_member('s.member_ref')}"
    )
    driver: Any = connection.connection.driver_connection
    if postgres:
        # PostgreSQL joins the sums in faster than it sends them as rows of their own
        # (October: 0.17 s against 0.24 s); SQLite the other way round (0.28 against 0.24).
        joined = sessions_sql.format(
            summed="b.busy",
            joined=f" LEFT OUTER JOIN ({busy_sql}) AS b ON b.session_id = s.id",
        )
        with driver.cursor() as cursor:
            cursor.execute(joined, params)
            return cursor.fetchall(), None
    busy_of = dict(driver.execute(busy_sql, params).fetchall())
    sessions = sessions_sql.format(summed="NULL", joined="")
    return driver.execute(sessions, params).fetchall(), busy_of


def _sqlite_utc(text: str) -> datetime:
    if len(text) == 26:  # SQLAlchemy's form of a UTC time: the offset parsed in, no replace()
        return datetime.fromisoformat(text + "+00:00")
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def month_statements(session: Session, month: str, kind: str = STATEMENT) -> list[Statement]:
    return list(
        session.exec(
            select(Statement)
            .where(Statement.month == month, Statement.kind == kind)
            .order_by(col(Statement.number))
        ).all()
    )


def lines_of(session: Session, statement: Statement | StatementTotals) -> list[StatementLine]:
    return list(
        session.exec(
            select(StatementLine)
            .where(StatementLine.statement_id == statement.id)
            .order_by(col(StatementLine.position))
        ).all()
    )


def _locked_balances(session: Session, member_ids: Collection[int]) -> dict[int, int]:
    """Balances of these accounts, their rows held until commit (PostgreSQL), always locked
    in the same order so a close and the ingest drawing at once cannot deadlock."""
    if not member_ids:
        return {}
    return dict(
        session.execute(
            select(BillingAccount.member_id, BillingAccount.balance_cents)
            .where(col(BillingAccount.member_id).in_(sorted(member_ids)))
            .order_by(col(BillingAccount.member_id))
            .with_for_update()
        )
        .tuples()
        .all()
    )


def _write_movements(session: Session, deltas: dict[int, int], rows: list[dict[str, Any]]) -> None:
    # Increments, not new values, so a top-up committed meanwhile still counts.
    changes = [{"account": k, "delta": v} for k, v in sorted(deltas.items()) if v]
    if changes:
        table = BillingAccount.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table)
            .where(table.c.member_id == bindparam("account"))
            .values(balance_cents=table.c.balance_cents + bindparam("delta")),
            changes,
        )
    if rows:
        session.execute(insert(BalanceMovement.__table__), rows)  # type: ignore[attr-defined]


def close_month(
    session: Session, month: str, *, tz: ZoneInfo, now: datetime, actor: str
) -> Closing:
    """Freeze `month`: one statement per payer, drawn from prepaid balances. Closing a month
    that is already closed returns its statements unchanged. The caller commits.

    Set-based: the month is read in a few plain queries, priced by the pure rules, and
    written with bulk inserts (COPY, multi-row INSERTs); a lab-year's October (2,000
    statements, 42,646 lines) takes 2.2-2.8 times the bare SELECT of its rows
    (docs/performance.md).
    """
    with _cycle_collection_paused():
        return _close_month(session, month, tz=tz, now=now, actor=actor)


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while a month is closed: its few hundred thousand new
    objects (records, charges, lines, rows; none in a cycle) set off full collections that
    walked every live object again, a fifth of the close. Reference counting still frees
    what is dropped."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _close_month(
    session: Session, month: str, *, tz: ZoneInfo, now: datetime, actor: str
) -> Closing:
    first, nxt = parse_month(month)
    if datetime.combine(nxt, time(), tz) > now:
        raise BillingError(f"--month {month} is not over yet; close it from {nxt} on")
    lock_books(session)  # no category change between reading the members and committing
    if session.exec(select(BillingMonth.month).where(BillingMonth.month == month)).first():
        return Closing(month, _heads(session, month), already_closed=True)
    people = _people(session)
    records, stored_starts = _read_usage(session, first, nxt, tz, people)
    try:
        computed = bill_month(records, all_rates(session), month, tz)
    except NoRateError as exc:
        raise BillingError(f"{exc} (atelier hub billing rates set / import)") from None
    # The month's row first: a second close running at the same time waits on it, then fails
    # here, before writing anything of its own.
    session.add(BillingMonth(month=month, closed_by=actor[:100], timezone=str(tz.key)))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return Closing(month, _heads(session, month), already_closed=True)

    # What the ingest drew provisionally at each session's end goes back first; each
    # statement then draws what it can, so the statements are the same with or without it.
    pending = session.execute(
        select(
            BalanceMovement.id,
            BalanceMovement.member_id,
            BalanceMovement.cents,
            BalanceMovement.note,
        ).where(
            BalanceMovement.kind == PROVISIONAL,
            col(BalanceMovement.statement_id).is_(None),
        )
    ).all()
    month_sessions = {record.session_id for record in records} if pending else set()
    provisional = [
        (movement_id, account_id, cents, note[len(_PROVISIONAL_NOTE) :])
        for movement_id, account_id, cents, note in pending
        if note[len(_PROVISIONAL_NOTE) :] in month_sessions
    ]
    given_back: dict[int, int] = defaultdict(int)
    for _, account_id, cents, _ in provisional:
        given_back[account_id] -= cents
    payer_ids = {people[c.payer_ref].id for c in computed}
    balance = _locked_balances(session, payer_ids | set(given_back))
    for account_id, cents in given_back.items():
        balance[account_id] += cents

    created = utcnow()
    # What the drivers take: SQLite's text for a time (SQLAlchemy's form), PostgreSQL's COPY
    # the datetime itself.
    created_as_stored: Any = created if stored_starts is None else _sqlite_time(created)
    statement_rows: list[dict[str, Any]] = []
    for number, computed_statement in enumerate(computed, start=1):
        payer = people[computed_statement.payer_ref]
        total = computed_statement.total_cents
        held = balance.get(payer.id)
        drawn = min(max(held, 0), total) if held is not None else 0
        if drawn > 0:
            balance[payer.id] -= drawn
        statement_rows.append(
            {
                "number": f"{month}-{number:03d}",
                "month": month,
                "kind": STATEMENT,
                "payer_ref": computed_statement.payer_ref,
                "payer_name": payer.name,
                "credits_id": None,
                "reason": "",
                "total_cents": total,
                "prepaid_cents": drawn,
                "due_cents": total - drawn,
                "created_at": created_as_stored,
            }
        )
    _bulk_insert(
        session,
        "statement",
        _STATEMENT_COLUMNS,
        [tuple(row[name] for name in _STATEMENT_COLUMNS) for row in statement_rows],
    )
    id_of_number = dict(
        session.execute(
            sa.select(col(Statement.number), col(Statement.id)).where(
                col(Statement.month) == month, col(Statement.kind) == STATEMENT
            )
        )
        .tuples()
        .all()
    )
    ids = [id_of_number[row["number"]] for row in statement_rows]
    # Tuples in _LINE_COLUMNS order: a dict per line cost more than the insert's own work.
    # On SQLite a line's start is its session's as read, the same text _sqlite_time makes.
    line_rows = [
        (
            statement_id,
            position,
            sid,
            member_ref,
            machine,
            started_at if stored_starts is None else stored_starts[sid],
            billed_minutes,
            cents,
            explanation[:2000],
        )
        for statement_id, computed_statement in zip(ids, computed, strict=True)
        for position, (
            sid,
            member_ref,
            machine,
            started_at,
            billed_minutes,
            cents,
            explanation,
        ) in enumerate(computed_statement.lines, start=1)
    ]
    _bulk_insert(session, "statement_line", _LINE_COLUMNS, line_rows)

    statement_of_payer = {row["payer_ref"]: i for row, i in zip(statement_rows, ids, strict=True)}
    statement_of_session = {line[2]: line[0] for line in line_rows} if provisional else {}
    refs_by_id = {person.id: ref for ref, person in people.items()}
    movement_rows: list[dict[str, Any]] = []
    deltas: dict[int, int] = defaultdict(int)
    for account_id, cents in sorted(given_back.items()):
        deltas[account_id] += cents
        movement_rows.append(
            _movement(
                account_id,
                "reversal",
                cents,
                statement_of_payer.get(refs_by_id.get(account_id, "")),
                f"provisional charges of {month} replaced by the statement",
                actor,
                created,
            )
        )
    for row, statement_id in zip(statement_rows, ids, strict=True):
        if row["prepaid_cents"] > 0:
            account_id = people[row["payer_ref"]].id
            deltas[account_id] -= row["prepaid_cents"]
            movement_rows.append(
                _movement(
                    account_id,
                    "charge",
                    -row["prepaid_cents"],
                    statement_id,
                    f"statement {row['number']}",
                    actor,
                    created,
                )
            )
    _write_movements(session, deltas, movement_rows)
    if provisional:
        # Each provisional movement now points at the statement that carries its session:
        # replaced once, never again.
        movement_table = BalanceMovement.__table__  # type: ignore[attr-defined]
        session.execute(
            update(movement_table)
            .where(movement_table.c.id == bindparam("movement"))
            .values(statement_id=bindparam("statement")),
            [
                {"movement": movement_id, "statement": statement_of_session[sid]}
                for movement_id, _, _, sid in provisional
            ],
        )
    statements = [
        StatementTotals(
            i,
            row["number"],
            row["payer_ref"],
            row["payer_name"],
            row["total_cents"],
            row["prepaid_cents"],
            row["due_cents"],
        )
        for row, i in zip(statement_rows, ids, strict=True)
    ]
    return Closing(month, statements, already_closed=False, balances_changed=any(deltas.values()))


_STATEMENT_COLUMNS = (
    "number",
    "month",
    "kind",
    "payer_ref",
    "payer_name",
    "credits_id",
    "reason",
    "total_cents",
    "prepaid_cents",
    "due_cents",
    "created_at",
)
_LINE_COLUMNS = (
    "statement_id",
    "position",
    "session_id",
    "member_ref",
    "machine",
    "started_at",
    "billed_minutes",
    "cents",
    "explanation",
)


def _bulk_insert(
    session: Session, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Rows (tuples in `columns` order, values as the driver takes them: on SQLite a time as
    the text `_sqlite_time` makes) straight to the driver: a binary COPY on PostgreSQL,
    multi-row INSERTs on SQLite.

    SQLAlchemy's per-row parameter handling cost more than the database's own insert of a
    month's tens of thousands of lines.
    """
    if not rows:
        return
    session.flush()  # anything pending goes first, in the same transaction
    connection = session.connection()
    driver: Any = connection.connection.driver_connection
    names = ", ".join(columns)
    if connection.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            # The binary format, typed as the table's columns are (read from the catalog),
            # spares psycopg and the server the text of every value: 10-15 % of the insert.
            cursor.execute(
                "SELECT attname, atttypid FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
            type_of = dict(cursor.fetchall())
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([type_of[name] for name in columns])
                for row in rows:
                    copy.write_row(row)
        return
    # A few hundred rows per INSERT: a third faster than one executemany of single rows.
    per_insert = max(
        1, min(500, driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(columns))
    )
    values = "(" + ", ".join("?" for _ in columns) + ")"
    head = f"INSERT INTO {table} ({names}) VALUES "
    full = head + ", ".join([values] * per_insert)
    for at in range(0, len(rows), per_insert):
        part = rows[at : at + per_insert]
        sql = full if len(part) == per_insert else head + ", ".join([values] * len(part))
        driver.execute(sql, list(chain.from_iterable(part)))


def _sqlite_time(value: datetime) -> str:
    # "%Y-%m-%d %H:%M:%S.%f" of the UTC time, by isoformat, five times faster than strftime.
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    return utc.isoformat(" ", "microseconds")[:26]


def _movement(
    account_id: int,
    kind: str,
    cents: int,
    statement_id: int | None,
    note: str,
    actor: str,
    at: datetime,
) -> dict[str, Any]:
    return {
        "member_id": account_id,
        "at": at,
        "kind": kind,
        "cents": cents,
        "statement_id": statement_id,
        "note": note[:500],
        "actor": actor[:100],
    }


# --- prepaid balances drawn at each session's end -------------------------------------------
def draw_ended_sessions(session: Session, ended: Sequence[str], *, tz: ZoneInfo) -> set[int]:
    """Draw these just-ended sessions from their payers' prepaid balances, provisionally.

    Runs inside the ingest's transaction storing the ends. Only sessions whose payer holds
    money are priced (one indexed query finds them; for everyone else that is all it costs).
    A session is priced as the close would price it, with the member's earlier sessions of
    the month (included minutes, daily caps); the close replaces these movements by the
    final charge. Returns the prepaid-only accounts whose balance this emptied.
    """
    candidates = session.execute(
        select(
            MachineSession.id,
            MachineSession.member_ref,
            MachineSession.started_at,
            BillingAccount.member_id,
        )
        .join(Member, col(Member.ref) == col(MachineSession.member_ref))
        .join(
            BillingAccount,
            col(BillingAccount.member_id) == func.coalesce(Member.payer_id, Member.id),
        )
        .where(col(MachineSession.id).in_(ended), col(BillingAccount.balance_cents) > 0)
        .where(col(MachineSession.started_at).is_not(None))
    ).all()
    if not candidates:
        return set()
    already = set(
        session.execute(
            select(BalanceMovement.note).where(
                BalanceMovement.kind == PROVISIONAL,
                col(BalanceMovement.note).in_([_PROVISIONAL_NOTE + c[0] for c in candidates]),
            )
        ).scalars()
    )
    by_month: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for sid, ref, started_at, account_id in candidates:
        if _PROVISIONAL_NOTE + sid not in already:
            by_month[ref, started_at.astimezone(tz).strftime("%Y-%m")].append((sid, account_id))
    closed = set(_closed_months(session))
    rates: list[Rate] | None = None
    charges: list[tuple[str, int, int]] = []  # session, account, cents
    for (ref, month), wanted in sorted(by_month.items()):
        if month in closed:
            continue  # a late session of a closed month stays off it, and off the balance
        rates = rates if rates is not None else all_rates(session)
        first, nxt = parse_month(month)
        try:
            records = _usage(session, first, nxt, tz, _people(session, [ref]), member_ref=ref)
            priced = {
                line.session_id: line.cents
                for statement in bill_month(records, rates, month, tz)
                for line in statement.lines
            }
        except (BillingError, NoRateError, ValueError) as exc:
            # The close will say the same to a person; the ingest must go on.
            log.warning("session(s) of %s not drawn from the prepaid balance: %s", ref, exc)
            continue
        charges += [(sid, account_id, priced.get(sid, 0)) for sid, account_id in wanted]
    if not charges:
        return set()
    accounts = sorted({account_id for _, account_id, _ in charges})
    balance = _locked_balances(session, accounts)
    before = dict(balance)
    now = utcnow()
    deltas: dict[int, int] = defaultdict(int)
    rows: list[dict[str, Any]] = []
    for sid, account_id, cents in charges:
        drawn = min(max(balance[account_id], 0), cents)
        if drawn <= 0:
            continue
        balance[account_id] -= drawn
        deltas[account_id] -= drawn
        rows.append(
            _movement(account_id, PROVISIONAL, -drawn, None, _PROVISIONAL_NOTE + sid, "ingest", now)
        )
    _write_movements(session, deltas, rows)
    prepaid_only = set(
        session.execute(
            select(BillingAccount.member_id).where(
                col(BillingAccount.member_id).in_(accounts), col(BillingAccount.prepaid_only)
            )
        ).scalars()
    )
    return {a for a in prepaid_only if before[a] > 0 >= balance[a]}


class PrepaidDrawdown:
    """The ingest's hook for ended sessions (hub/ingest/writer.py): draws them from prepaid
    balances in the ingest's own transaction, and once it is committed asks for the
    allow-lists to be published again when a prepaid-only balance ran out, so the machines
    refuse the member with the reason `balance`.

    `republish` (the hub's AllowListPublisher.publish) runs on a thread of its own: signing
    every machine's list takes longer than a batch of events and must not hold the ingest.
    """

    def __init__(self, tz: ZoneInfo, republish: Callable[[], object] | None = None) -> None:
        self.tz = tz
        self.republish = republish
        self.emptied = 0  # accounts emptied since start, for tests and metrics
        self._lock = threading.Lock()
        self._pending = False

    def __call__(self, session: Session, ended: Sequence[str]) -> Callable[[], None] | None:
        try:
            emptied = draw_ended_sessions(session, ended, tz=self.tz)
        except SQLAlchemyError:
            raise  # the batch is retried whole, balances with it
        except Exception:
            # A fault in billing must not stop the ingest; the close still charges in full.
            log.exception("sessions %s not drawn from prepaid balances", list(ended)[:5])
            return None
        if not emptied:
            return None
        self.emptied += len(emptied)
        return self._republish_soon if self.republish is not None else None

    def _republish_soon(self) -> None:
        with self._lock:
            if self._pending:
                return  # the publication about to run reads the balances after this commit
            self._pending = True
        threading.Thread(target=self._run, name="prepaid-republish", daemon=True).start()

    def _run(self) -> None:
        with self._lock:
            self._pending = False
        try:
            assert self.republish is not None
            self.republish()
        except Exception:
            log.exception("allow-lists not republished after a prepaid balance ran out")


def _line_row(statement_id: int, position: int, line: DomainLine) -> StatementLine:
    return StatementLine(
        statement_id=statement_id,
        position=position,
        session_id=line.session_id,
        member_ref=line.member_ref,
        machine=line.machine,
        started_at=line.started_at,
        billed_minutes=line.billed_minutes,
        cents=line.cents,
        explanation=line.explanation[:2000],
    )


def _as_domain(statement: Statement, lines: Iterable[StatementLine]) -> DomainStatement:
    return DomainStatement(
        statement.payer_ref,
        statement.month,
        tuple(
            DomainLine(
                line.session_id,
                line.member_ref,
                line.machine,
                line.started_at,
                line.billed_minutes,
                line.cents,
                line.explanation,
            )
            for line in lines
        ),
    )


def credit(
    session: Session, number: str, session_ids: Sequence[str], reason: str, *, actor: str
) -> Statement:
    """A credit note giving back these sessions of a closed statement; what was drawn from a
    prepaid balance goes back to it. The statement itself never changes."""
    statement = session.exec(select(Statement).where(Statement.number == number)).first()
    if statement is None or statement.kind != STATEMENT:
        raise BillingError(f"STATEMENT: no statement numbered {number!r}")
    if not session_ids:
        raise BillingError("--session: name at least one session of the statement to credit")
    earlier = list(
        session.exec(
            select(Statement)
            .where(Statement.credits_id == statement.id)
            .order_by(col(Statement.id))
        ).all()
    )
    credited = {
        line.session_id for note in earlier for line in lines_of(session, note) if line.cents
    }
    twice = sorted(set(session_ids) & credited)
    if twice:
        raise BillingError(f"--session {', '.join(twice)} already credited on {number}")
    try:
        note = credit_note(_as_domain(statement, lines_of(session, statement)), session_ids, reason)
    except ValueError as exc:
        field = "--reason" if "reason" in str(exc) else "--session"
        raise BillingError(f"{field}: {exc}") from None
    row = Statement(
        number=f"{number}-C{len(earlier) + 1}",
        month=statement.month,
        kind=CREDIT_NOTE,
        payer_ref=statement.payer_ref,
        payer_name=statement.payer_name,
        credits_id=statement.id,
        reason=reason.strip()[:500],
        total_cents=note.total_cents,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    for position, line in enumerate(note.lines, start=1):
        session.add(_line_row(row.id, position, line))
    returnable = statement.prepaid_cents + sum(e.prepaid_cents for e in earlier)
    back = min(returnable, -note.total_cents)
    payer = session.exec(select(Member).where(Member.ref == statement.payer_ref)).one()
    account = _locked_account(session, payer.id)
    if account is not None and back > 0:
        _move(
            session,
            account,
            "credit",
            back,
            statement_id=row.id,
            note=f"credit note {row.number}",
            actor=actor,
        )
    else:
        back = 0
    row.prepaid_cents = -back
    row.due_cents = note.total_cents + back
    session.add(row)
    return row


# --- exports ------------------------------------------------------------------------------
CSV_HEADER = [
    "number",
    "kind",
    "month",
    "payer_ref",
    "payer_name",
    "position",
    "session_id",
    "member_ref",
    "machine",
    "started_at",
    "billed_minutes",
    "amount_cents",
    "amount_eur",
    "explanation",
]


def write_csv(session: Session, statements: Sequence[Statement], path: Path, tz: ZoneInfo) -> Path:
    """One row per line, written as read (a month of many sessions stays small in memory)."""
    with private_file(path).open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_HEADER)
        for statement in statements:
            for line in lines_of(session, statement):
                writer.writerow(
                    [
                        statement.number,
                        statement.kind,
                        statement.month,
                        statement.payer_ref,
                        statement.payer_name,
                        line.position,
                        line.session_id,
                        line.member_ref,
                        line.machine,
                        line.started_at.astimezone(tz).isoformat(timespec="minutes"),
                        line.billed_minutes,
                        line.cents,
                        euros(line.cents),
                        line.explanation,
                    ]
                )
    return path


def _pdf_text(text: str) -> str:
    # The PDF's built-in fonts know Windows-1252 only (which has the euro sign); other
    # characters of a name become '?' rather than failing the whole month.
    return text.encode("cp1252", "replace").decode("cp1252")


def write_pdf(
    session: Session, statements: Sequence[Statement], path: Path, tz: ZoneInfo, lab: str
) -> Path:
    """Every statement (or credit note) on pages of its own, in one file."""
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_creator("Atelier")
    widths = (22, 24, 22, 14, 22, 86)
    for statement in statements:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 14)
        title = "Credit note" if statement.kind == CREDIT_NOTE else "Statement"
        pdf.cell(0, 8, _pdf_text(f"{title} {statement.number}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)
        for text in (
            f"{lab}, month {statement.month}",
            f"Payer: {statement.payer_name} ({statement.payer_ref})",
            *([f"Reason: {statement.reason}"] if statement.reason else []),
        ):
            pdf.cell(0, 6, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 9)
        for width, head in zip(
            widths, ("Session", "Started", "Member", "Min", "Amount (€)", "Details"), strict=True
        ):
            pdf.cell(width, 6, _pdf_text(head), border="B")
        pdf.ln()
        pdf.set_font("Helvetica", "", 8)
        for line in lines_of(session, statement):
            cells = (
                line.session_id[-10:],
                line.started_at.astimezone(tz).strftime("%d/%m %H:%M"),
                line.member_ref,
                str(line.billed_minutes),
                euros(line.cents),
            )
            top = pdf.get_y()
            for width, text in zip(widths[:-1], cells, strict=True):
                pdf.cell(width, 5, _pdf_text(text))
            pdf.multi_cell(widths[-1], 5, _pdf_text(line.explanation), new_x="LMARGIN")
            pdf.set_y(max(pdf.get_y(), top + 5))
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 10)
        for label, cents in (
            ("Total", statement.total_cents),
            ("From prepaid balance", statement.prepaid_cents),
            ("To pay", statement.due_cents),
        ):
            pdf.cell(60, 6, _pdf_text(label))
            pdf.cell(
                30, 6, _pdf_text(f"{euros(cents)} €"), align="R", new_x="LMARGIN", new_y="NEXT"
            )
    if not statements:
        pdf.add_page()
        pdf.set_font("Helvetica", "", 11)
        pdf.cell(0, 8, "Nothing to bill this month.")
    pdf.output(str(private_file(path)))
    return path


def export_month(
    session: Session, month: str, out: Path, tz: ZoneInfo, lab: str
) -> dict[str, Path]:
    """The month's statements, and its credit notes if any, as CSV and PDF files in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    statements = month_statements(session, month)
    files["csv"] = write_csv(session, statements, out / f"statements-{month}.csv", tz)
    files["pdf"] = write_pdf(session, statements, out / f"statements-{month}.pdf", tz, lab)
    notes = month_statements(session, month, CREDIT_NOTE)
    if notes:
        files["credit_csv"] = write_csv(session, notes, out / f"credit-notes-{month}.csv", tz)
        files["credit_pdf"] = write_pdf(session, notes, out / f"credit-notes-{month}.pdf", tz, lab)
    return files


def balances(session: Session) -> dict[int, int]:
    """Every account's balance as the sum of its movements (checks the kept balance)."""
    totals: dict[int, int] = defaultdict(int)
    for member_id, cents in session.exec(
        select(BalanceMovement.member_id, BalanceMovement.cents)
    ).all():
        totals[member_id] += cents
    return dict(totals)
