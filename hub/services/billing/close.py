"""Closing a month: one frozen statement per payer, drawn from prepaid balances, in bulk."""

from __future__ import annotations

import gc
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict
from hub.domain.billing import (
    NoRateError,
    apply_prepaid,
    bill_month,
)
from hub.models import (
    STATEMENT,
    BalanceMovement,
    BillingMonth,
    Statement,
    StatementLine,
    utcnow,
)
from hub.services.billing.books import lock_books, parse_month
from hub.services.billing.extras import add_material_and_energy
from hub.services.billing.fees import add_booking_fees, month_fees
from hub.services.billing.ledger import (
    _PROVISIONAL_NOTE,
    PROVISIONAL,
    _locked_balances,
    _movement,
    _write_movements,
)
from hub.services.billing.numbering import issue_year, reserve_numbers
from hub.services.billing.rates import all_rates
from hub.services.billing.usage import _people, _read_usage, _sqlite_time


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


def close_month(
    session: Session,
    month: str,
    *,
    tz: ZoneInfo,
    now: datetime,
    actor: str,
    energy_cents_per_kwh: float | None = None,
) -> Closing:
    """Freeze `month`: one statement per payer, drawn from prepaid balances. Closing a month
    that is already closed returns its statements unchanged. The caller commits.

    Set-based: the month is read in a few plain queries, priced and drawn by the pure rules
    (hub.domain.billing.bill_month, apply_prepaid), and written with bulk inserts (COPY,
    multi-row INSERTs); its cost against a bare SELECT is in docs/performance.md. A month
    newly closed is audited as `actor`.
    """
    with _cycle_collection_paused():
        closing = _close_month(
            session, month, tz=tz, now=now, actor=actor, energy_cents_per_kwh=energy_cents_per_kwh
        )
    if not closing.already_closed:
        record(
            session,
            actor=actor,
            action="billing.close",
            entity="billing_month",
            entity_id=month,
            statements=len(closing.statements),
        )
    return closing


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
    session: Session,
    month: str,
    *,
    tz: ZoneInfo,
    now: datetime,
    actor: str,
    energy_cents_per_kwh: float | None,
) -> Closing:
    first, nxt = parse_month(month)
    if datetime.combine(nxt, time(), tz) > now:
        raise Conflict(
            "billing.month_not_over",
            field="month",
            params={"month": month, "next": nxt.isoformat()},
        )
    lock_books(session)  # no category change between reading the members and committing
    if session.exec(select(BillingMonth.month).where(BillingMonth.month == month)).first():
        return Closing(month, _heads(session, month), already_closed=True)
    people = _people(session)
    records, stored_starts = _read_usage(session, first, nxt, tz, people)
    try:
        computed = bill_month(records, all_rates(session), month, tz)
    except NoRateError as exc:
        raise Conflict(
            "billing.no_rate",
            params={
                "machine_type": exc.machine_type,
                "category": exc.category,
                "day": exc.day.isoformat(),
            },
        ) from None
    computed = add_material_and_energy(
        session, computed, records, energy_cents_per_kwh=energy_cents_per_kwh
    )
    # No-show and late-cancellation fees of bookings starting in the month: one query.
    computed = add_booking_fees(
        computed, month_fees(session, first, nxt, tz), month, tz, stored_starts, _sqlite_time
    )
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
    # A statement is issued at `now`: its date and the year of its number agree.
    issued = now.astimezone(UTC)
    issued_as_stored: Any = issued if stored_starts is None else _sqlite_time(issued)
    # Numbered in this transaction: a close that fails gives its numbers back with it.
    numbers = reserve_numbers(session, issue_year(now, tz), len(computed))
    statement_rows: list[dict[str, Any]] = []
    for number, computed_statement in zip(numbers, computed, strict=True):
        payer = people[computed_statement.payer_ref]
        total = computed_statement.total_cents
        held = balance.get(payer.id)
        drawn = held - apply_prepaid(held, total)[0] if held is not None else 0
        if drawn > 0:
            balance[payer.id] -= drawn
        statement_rows.append(
            {
                "number": number,
                "month": month,
                "kind": STATEMENT,
                "payer_ref": computed_statement.payer_ref,
                "payer_name": payer.name,
                "credits_id": None,
                "reason": "",
                "total_cents": total,
                "prepaid_cents": drawn,
                "due_cents": total - drawn,
                "created_at": issued_as_stored,
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
