"""Billing in the database: rates, prepaid balances, frozen monthly statements and credit notes."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Date, UniqueConstraint, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from hub.domain.billing import (
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
    BusyPeriod,
    Machine,
    MachineSession,
    MachineType,
    Member,
    MemberCategory,
    UTCDateTime,
    utcnow,
)

MONTH_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
STATEMENT = "statement"
CREDIT_NOTE = "credit_note"


class BillingError(ValueError):
    """Something a person asked for that billing cannot do; the message names the field."""


# --- tables -------------------------------------------------------------------------------
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
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # type: ignore[call-overload]

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
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # type: ignore[call-overload]
    kind: str = Field(max_length=20)  # topup, charge, credit
    cents: int
    statement_id: int | None = Field(default=None, foreign_key="statement.id")
    note: str = Field(default="", max_length=500)
    actor: str = Field(default="", max_length=100)


class BillingMonth(SQLModel, table=True):
    """A closed month: its statements are frozen and only credit notes may follow."""

    __tablename__ = "billing_month"
    month: str = Field(primary_key=True, max_length=7)
    closed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # type: ignore[call-overload]
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
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # type: ignore[call-overload]


class StatementLine(SQLModel, table=True):
    __tablename__ = "statement_line"
    id: int | None = Field(default=None, primary_key=True)
    statement_id: int = Field(foreign_key="statement.id", index=True)
    position: int
    session_id: str = Field(max_length=64)
    member_ref: str = Field(max_length=20)
    machine: str = Field(max_length=63)
    started_at: datetime = Field(sa_type=UTCDateTime)  # type: ignore[call-overload]
    billed_minutes: int
    cents: int
    explanation: str = Field(default="", max_length=2000)


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
@dataclass(frozen=True)
class Closing:
    month: str
    statements: list[Statement]
    already_closed: bool


def _usage(session: Session, first: date, nxt: date, tz: ZoneInfo) -> list[UsageRecord]:
    """The month's finished sessions (by local start day) as billing sees them."""
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(nxt, time(), tz).astimezone(UTC)
    rows = session.exec(
        select(MachineSession)
        .where(col(MachineSession.started_at) >= start, col(MachineSession.started_at) < end)
        .order_by(col(MachineSession.started_at), col(MachineSession.id))
    ).all()
    still_open = [row.id for row in rows if row.ended_at is None]
    if still_open:
        shown = ", ".join(still_open[:5]) + (" ..." if len(still_open) > 5 else "")
        raise BillingError(
            f"--month: {len(still_open)} session(s) of the month have not ended ({shown}); "
            "wait for the machines to report them (or end them) before closing"
        )
    # The agent reports busy time at the end of a session; busy periods are the same time
    # seen from the machine, and cover a session whose end report lacked it.
    busy_by_session: dict[str, float] = dict(
        session.exec(  # type: ignore[arg-type]
            select(BusyPeriod.session_id, func.sum(BusyPeriod.busy_s))
            .where(col(BusyPeriod.started_at) >= start - timedelta(days=2))
            .where(col(BusyPeriod.started_at) < end + timedelta(days=2))
            .where(col(BusyPeriod.session_id).is_not(None))
            .group_by(col(BusyPeriod.session_id))
        ).all()
    )
    machine_types = dict(
        session.exec(
            select(Machine.code, MachineType.code).join(
                MachineType, col(Machine.machine_type_id) == col(MachineType.id)
            )
        ).all()
    )
    members = {m.ref: m for m in session.exec(select(Member)).all()}
    refs_by_id = {m.id: m.ref for m in members.values()}
    records = []
    for row in rows:
        assert row.started_at is not None and row.ended_at is not None
        member = members.get(row.member_ref)
        if member is None:
            raise BillingError(f"session {row.id}: member {row.member_ref} is not known to the hub")
        machine_type = machine_types.get(row.machine)
        if machine_type is None:
            raise BillingError(f"session {row.id}: machine {row.machine} is not known to the hub")
        if row.mode == "maintenance":
            duty = DutyRole.MAINTAINER
        elif row.end_reason == "handover":
            # The trainer's own session, ended when the trainee took over under supervision.
            duty = DutyRole.TRAINER
        else:
            duty = DutyRole.NONE
        busy = max(row.busy_s or 0.0, busy_by_session.get(row.id) or 0.0)
        records.append(
            UsageRecord(
                session_id=row.id,
                member_ref=row.member_ref,
                machine=row.machine,
                machine_type=machine_type,
                category=member.category.value,
                started_at=row.started_at,
                ended_at=max(row.ended_at, row.started_at),
                busy_seconds=int(round(busy)),
                duty=duty,
                payer_ref=refs_by_id.get(member.payer_id) if member.payer_id else None,
            )
        )
    return records


def month_statements(session: Session, month: str, kind: str = STATEMENT) -> list[Statement]:
    return list(
        session.exec(
            select(Statement)
            .where(Statement.month == month, Statement.kind == kind)
            .order_by(col(Statement.number))
        ).all()
    )


def lines_of(session: Session, statement: Statement) -> list[StatementLine]:
    return list(
        session.exec(
            select(StatementLine)
            .where(StatementLine.statement_id == statement.id)
            .order_by(col(StatementLine.position))
        ).all()
    )


def close_month(
    session: Session, month: str, *, tz: ZoneInfo, now: datetime, actor: str
) -> Closing:
    """Freeze `month`: one statement per payer, drawn from prepaid balances. Closing a month
    that is already closed returns its statements unchanged. The caller commits."""
    first, nxt = parse_month(month)
    if is_closed(session, month):
        return Closing(month, month_statements(session, month), already_closed=True)
    if datetime.combine(nxt, time(), tz) > now:
        raise BillingError(f"--month {month} is not over yet; close it from {nxt} on")
    records = _usage(session, first, nxt, tz)
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
        return Closing(month, month_statements(session, month), already_closed=True)
    members = {m.ref: m for m in session.exec(select(Member)).all()}
    statements: list[Statement] = []
    for number, computed_statement in enumerate(computed, start=1):
        payer = members[computed_statement.payer_ref]
        total = computed_statement.total_cents
        statement = Statement(
            number=f"{month}-{number:03d}",
            month=month,
            payer_ref=payer.ref,
            payer_name=payer.name,
            total_cents=total,
        )
        session.add(statement)
        session.flush()
        assert statement.id is not None
        for position, line in enumerate(computed_statement.lines, start=1):
            session.add(_line_row(statement.id, position, line))
        account = _locked_account(session, payer.id)
        drawn = min(max(account.balance_cents, 0), total) if account is not None else 0
        if account is not None and drawn > 0:
            _move(
                session,
                account,
                "charge",
                -drawn,
                statement_id=statement.id,
                note=f"statement {statement.number}",
                actor=actor,
            )
        statement.prepaid_cents = drawn
        statement.due_cents = total - drawn
        session.add(statement)
        statements.append(statement)
    session.flush()
    return Closing(month, statements, already_closed=False)


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
    with path.open("w", newline="", encoding="utf-8") as out:
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
    pdf.output(str(path))
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
