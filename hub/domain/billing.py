"""Pure billing rules: rates per machine type and member category turned into charges."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from protocol.envelope import DenyReason

Basis = Literal["session", "busy"]


class DutyRole(StrEnum):
    """What the member was doing on the machine; trainers and maintainers on duty use it free."""

    NONE = "none"
    TRAINER = "trainer"
    MAINTAINER = "maintainer"


@dataclass(frozen=True)
class Rate:
    """A price for one machine type and member category, effective from a date (lab time).

    Prices are in cents per hour because that is how fablabs publish them ("8 EUR/h");
    a per-minute price in whole cents could not say 8 EUR/h (13.33 c/min) exactly.
    """

    machine_type: str
    category: str
    effective_from: date
    cents_per_hour: int
    basis: Basis = "session"
    start_fee_cents: int = 0
    minimum_cents: int = 0
    rounding_minutes: int = 1
    daily_cap_cents: int | None = None
    included_minutes_per_month: int = 0

    def __post_init__(self) -> None:
        if self.rounding_minutes < 1:
            raise ValueError("rounding_minutes must be at least 1 (bill per started minute)")
        if min(self.cents_per_hour, self.start_fee_cents, self.minimum_cents) < 0:
            raise ValueError("prices must not be negative")


@dataclass(frozen=True)
class UsageRecord:
    """One finished session as billing sees it."""

    session_id: str
    member_ref: str
    machine: str
    machine_type: str
    category: str
    started_at: datetime
    ended_at: datetime
    busy_seconds: int = 0
    duty: DutyRole = DutyRole.NONE
    payer_ref: str | None = None


@dataclass(frozen=True)
class ChargeLine:
    explanation: str
    cents: int


@dataclass(frozen=True)
class Charge:
    """What one session costs, line by line, and what it used of the member's allowances."""

    session_id: str
    lines: tuple[ChargeLine, ...]
    billed_minutes: int
    included_minutes_used: int
    cents_by_day: Mapping[date, int] = field(default_factory=dict)

    @property
    def cents(self) -> int:
        return sum(line.cents for line in self.lines)


class NoRateError(LookupError):
    """No rate covers a machine type and category on a day; the lab must add one."""


def _euros(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100},{abs(cents) % 100:02d} €"


def rate_on(rates: Iterable[Rate], machine_type: str, category: str, day: date) -> Rate:
    """The rate in force on `day`: the latest one whose effective_from is not after it."""
    candidates = [
        r
        for r in rates
        if r.machine_type == machine_type and r.category == category and r.effective_from <= day
    ]
    if not candidates:
        raise NoRateError(
            f"no rate for machine type {machine_type!r} and category {category!r} on {day}; "
            "add one with an earlier effective_from"
        )
    return max(candidates, key=lambda r: r.effective_from)


@dataclass(frozen=True)
class _Part:
    day: date
    rate: Rate
    seconds: float


def _parts(record: UsageRecord, rates: Sequence[Rate], tz: ZoneInfo) -> list[_Part]:
    """Cut the session at every local midnight; each piece takes the rate of its own day.

    Rates change at local midnight of effective_from, so cutting at midnights also cuts at
    every rate change.
    """
    start = record.started_at.astimezone(tz)
    end = record.ended_at.astimezone(tz)
    parts: list[_Part] = []
    cursor = start
    while True:
        next_midnight = datetime.combine(cursor.date() + timedelta(days=1), time(), tz)
        piece_end = min(end, next_midnight)
        # Same-zone aware datetimes subtract by wall clock; UTC keeps DST days right.
        seconds = piece_end.astimezone(UTC) - cursor.astimezone(UTC)
        day = cursor.date()
        parts.append(
            _Part(
                day,
                rate_on(rates, record.machine_type, record.category, day),
                seconds.total_seconds(),
            )
        )
        if piece_end >= end:
            return parts
        cursor = piece_end


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def price_session(
    record: UsageRecord,
    rates: Sequence[Rate],
    *,
    tz: ZoneInfo,
    already_used_included_minutes: int,
    charged_today_cents: Mapping[date, int],
) -> Charge:
    """Price one session.

    Order of the rules: billed minutes (per started unit of rounding_minutes, over the whole
    session), minutes still included in the month's subscription come off first, each piece
    priced at its own day's rate, the start fee, the minimum, then the daily cap per local day
    (`charged_today_cents` says what the member was already charged on each day).
    """
    if record.ended_at < record.started_at:
        raise ValueError(f"session {record.session_id}: ended_at is before started_at")
    parts = _parts(record, rates, tz)
    first = parts[0].rate
    if record.duty is not DutyRole.NONE:
        line = ChargeLine(f"Free: {record.duty.value} on duty", 0)
        return Charge(record.session_id, (line,), 0, 0, {})

    session_seconds = sum(p.seconds for p in parts)
    if first.basis == "busy":
        measured = min(float(record.busy_seconds), session_seconds)
        what = "busy time"
    else:
        measured = session_seconds
        what = "session time"
    started_minutes = _ceil_div(int(round(measured)), 60)
    billed = _ceil_div(started_minutes, first.rounding_minutes) * first.rounding_minutes
    if started_minutes == 0:
        return Charge(record.session_id, (ChargeLine("Nothing to bill: no " + what, 0),), 0, 0, {})

    # Share the billed minutes among the pieces in proportion to their time, exactly.
    minutes_per_part: list[int] = []
    cumulative = 0.0
    given = 0
    for i, part in enumerate(parts):
        cumulative += part.seconds
        upto = billed if i == len(parts) - 1 else int(billed * cumulative // session_seconds)
        minutes_per_part.append(upto - given)
        given = upto

    lines: list[ChargeLine] = []
    cents_by_day: dict[date, int] = defaultdict(int)
    included_left = max(0, first.included_minutes_per_month - already_used_included_minutes)
    included_used = 0
    for part, minutes in zip(parts, minutes_per_part, strict=True):
        if minutes == 0:
            continue
        free = min(included_left, minutes)
        if free:
            included_left -= free
            included_used += free
            lines.append(ChargeLine(f"{free} min of {what} included in your subscription", 0))
        paid = minutes - free
        if paid:
            # Round half up to the cent, per piece.
            cents = (paid * part.rate.cents_per_hour + 30) // 60
            lines.append(
                ChargeLine(
                    f"{paid} min of {what} on {part.day.isoformat()} at "
                    f"{_euros(part.rate.cents_per_hour)}/h",
                    cents,
                )
            )
            cents_by_day[part.day] += cents
    first_day = parts[0].day
    if first.start_fee_cents:
        lines.append(ChargeLine("Start fee", first.start_fee_cents))
        cents_by_day[first_day] += first.start_fee_cents
    subtotal = sum(line.cents for line in lines)
    if subtotal < first.minimum_cents and included_used == 0:
        top_up = first.minimum_cents - subtotal
        lines.append(
            ChargeLine(f"Minimum charge per session is {_euros(first.minimum_cents)}", top_up)
        )
        cents_by_day[first_day] += top_up
    for part in parts:
        cap = part.rate.daily_cap_cents
        if cap is None or part.day not in cents_by_day:
            continue
        room = max(0, cap - charged_today_cents.get(part.day, 0))
        over = cents_by_day[part.day] - room
        if over > 0:
            lines.append(
                ChargeLine(f"Daily cap of {_euros(cap)} reached on {part.day.isoformat()}", -over)
            )
            cents_by_day[part.day] -= over
    return Charge(record.session_id, tuple(lines), billed, included_used, dict(cents_by_day))


@dataclass(frozen=True)
class StatementLine:
    session_id: str
    member_ref: str
    machine: str
    started_at: datetime
    billed_minutes: int
    cents: int
    explanation: str


@dataclass(frozen=True)
class Statement:
    """A frozen month for one payer: the member, or the company or school paying for its people."""

    payer_ref: str
    month: str
    lines: tuple[StatementLine, ...]

    @property
    def total_cents(self) -> int:
        return sum(line.cents for line in self.lines)


def _month_bounds(month: str) -> tuple[date, date]:
    try:
        first = date.fromisoformat(month + "-01")
    except ValueError as exc:
        raise ValueError(f"month {month!r} must look like 2026-10") from exc
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, nxt


def bill_month(
    records: Iterable[UsageRecord], rates: Sequence[Rate], month: str, tz: ZoneInfo
) -> list[Statement]:
    """One statement per payer for sessions that started in `month` (lab time).

    Sessions are priced in start order, so included minutes and daily caps are used up by the
    earliest sessions; the output is sorted so the same input always gives the same statements.
    """
    first, nxt = _month_bounds(month)
    chosen = sorted(
        (r for r in records if first <= r.started_at.astimezone(tz).date() < nxt),
        key=lambda r: (r.started_at, r.session_id),
    )
    included: dict[tuple[str, str, str], int] = defaultdict(int)
    # A daily cap is a rate's, so it counts what the member paid that day on that machine type.
    per_day: dict[tuple[str, str], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    by_payer: dict[str, list[StatementLine]] = defaultdict(list)
    for record in chosen:
        key = (record.member_ref, record.machine_type, record.category)
        charge = price_session(
            record,
            rates,
            tz=tz,
            already_used_included_minutes=included[key],
            charged_today_cents=per_day[record.member_ref, record.machine_type],
        )
        included[key] += charge.included_minutes_used
        for day, cents in charge.cents_by_day.items():
            per_day[record.member_ref, record.machine_type][day] += cents
        by_payer[record.payer_ref or record.member_ref].append(
            StatementLine(
                session_id=record.session_id,
                member_ref=record.member_ref,
                machine=record.machine,
                started_at=record.started_at,
                billed_minutes=charge.billed_minutes,
                cents=charge.cents,
                explanation="; ".join(line.explanation for line in charge.lines),
            )
        )
    return [Statement(payer, month, tuple(by_payer[payer])) for payer in sorted(by_payer)]


@dataclass(frozen=True)
class CreditNote:
    """Money given back on a closed statement, which itself never changes."""

    payer_ref: str
    month: str
    reason: str
    lines: tuple[StatementLine, ...]

    @property
    def total_cents(self) -> int:
        return sum(line.cents for line in self.lines)


def credit_note(statement: Statement, session_ids: Iterable[str], reason: str) -> CreditNote:
    """Credit the given sessions of a closed statement in full, as negative lines."""
    if not reason.strip():
        raise ValueError("a credit note needs a reason the member can read")
    wanted = set(session_ids)
    known = {line.session_id for line in statement.lines}
    missing = sorted(wanted - known)
    if missing:
        raise ValueError(f"sessions {missing} are not on the statement of {statement.payer_ref}")
    lines = tuple(
        StatementLine(
            line.session_id,
            line.member_ref,
            line.machine,
            line.started_at,
            -line.billed_minutes,
            -line.cents,
            f"Credit: {reason}",
        )
        for line in statement.lines
        if line.session_id in wanted
    )
    return CreditNote(statement.payer_ref, statement.month, reason, lines)


@dataclass(frozen=True)
class PrepaidPlan:
    """Whether a member must have money on account to start a machine."""

    prepaid_only: bool = False


def apply_prepaid(balance_cents: int, charges: Iterable[Charge]) -> tuple[int, int]:
    """Draw charges from a prepaid balance: (new balance, cents the balance did not cover)."""
    due = sum(c.cents for c in charges)
    drawn = min(max(balance_cents, 0), due)
    return balance_cents - drawn, due - drawn


def may_start(balance_cents: int, plan: PrepaidPlan) -> DenyReason | None:
    """A prepaid-only plan refuses a start once the balance is empty."""
    if plan.prepaid_only and balance_cents <= 0:
        return DenyReason.BALANCE
    return None
