"""A month's finished sessions as billing sees them (UsageRecord), read straight from the driver."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.core.errors import Conflict
from hub.domain.billing import (
    PRINTER_OFFLINE,
    CategoryChange,
    CategoryTimeline,
    DutyRole,
    UsageRecord,
)
from hub.models import (
    Machine,
    MachineType,
    Member,
    MemberCategoryChange,
    PrintJob,
)


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
        raise Conflict(
            "billing.sessions_open",
            field="month",
            params={"count": len(still_open), "sessions": shown},
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
    waived = _offline_waived(session, start, end, member_ref)
    for sid, machine, ref, duty, started_as_read, ended_as_read, busy_s, summed_s, until in rows:
        if ended_as_read is None or started_as_read is None:
            continue
        if busy_of is None:
            started_at, ended_at = _aware_utc(started_as_read), _aware_utc(ended_as_read)
            busy_until = _aware_utc(until) if until is not None else None
        else:  # SQLite: the text of UTC times, parsed here, not by a call per value
            summed_s, until = busy_of.get(sid, (None, None))
            busy_until = _sqlite_utc(until) if until is not None else None
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
            raise Conflict("billing.session_member_unknown", params={"session": sid, "member": ref})
        machine_type = machine_types.get(machine)
        if machine_type is None:
            raise Conflict(
                "billing.session_machine_unknown", params={"session": sid, "machine": machine}
            )
        busy = max(busy_s or 0.0, summed_s or 0.0)
        if waived and sid in waived:
            busy = max(0.0, busy - waived[sid])
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
                busy_until if busy_until is not None and busy_until > ended_at else None,
            )
        )
    return records, stored_starts if sqlite else None


def _month_rows(
    connection: sa.Connection, start: datetime, end: datetime, member_ref: str | None
) -> tuple[list[tuple[Any, ...]], dict[str, tuple[Any, Any]] | None]:
    """The sessions started in [start, end) as the driver's own tuples: (id, machine,
    member_ref, duty as an index of _DUTIES, started_at, ended_at, busy_s, the sum of its busy
    periods, the end of the last of them), and, on SQLite, those (sum, end) by session apart
    (the rows' own are NULL there; None on PostgreSQL).

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
    # seen from the machine, and cover a session whose end report lacked it, and the time a
    # period started in the session ran on after it ended (a print left running): billed to
    # that session, up to the end of its last period (issue 21).
    busy_sql = (
        "SELECT session_id, sum(busy_s) AS busy, max(ended_at) AS until FROM busy_period"
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
            summed="b.busy, b.until",
            joined=f" LEFT OUTER JOIN ({busy_sql}) AS b ON b.session_id = s.id",
        )
        with driver.cursor() as cursor:
            cursor.execute(joined, params)
            return cursor.fetchall(), None
    busy_of = {sid: (busy, until) for sid, busy, until in driver.execute(busy_sql, params)}
    sessions = sessions_sql.format(summed="NULL, NULL", joined="")
    return driver.execute(sessions, params).fetchall(), busy_of


def _offline_waived(
    session: Session, start: datetime, end: datetime, member_ref: str | None
) -> dict[str, float]:
    """By session, the busy seconds not billed of its jobs that ended because the printer went
    offline, as their machine type says (`offline_jobs`): all of the job ("free"), or what ran
    after it was last seen printing ("until-offline"); "whole" waives nothing. Such jobs are
    rare: one small query, whatever the month's size."""
    near = timedelta(days=2)
    query = (
        sa.select(
            col(PrintJob.session_id),
            col(PrintJob.duration_s),
            col(PrintJob.printing_seen_s),
            col(MachineType.offline_jobs),
        )
        .join(Machine, col(Machine.code) == col(PrintJob.machine))
        .join(MachineType, col(MachineType.id) == col(Machine.machine_type_id))
        .where(
            col(PrintJob.end_reason) == PRINTER_OFFLINE,
            col(MachineType.offline_jobs) != "whole",
            col(PrintJob.session_id).is_not(None),
            col(PrintJob.started_at) >= start - near,
            col(PrintJob.started_at) < end + near,
        )
    )
    if member_ref is not None:
        query = query.where(col(PrintJob.member_ref) == member_ref)
    waived: dict[str, float] = defaultdict(float)
    for sid, duration, seen, choice in session.execute(query):
        if duration is None:
            continue
        if choice == "free":
            waived[sid] += duration
        elif choice == "until-offline" and seen is not None:
            waived[sid] += max(0.0, duration - seen)
    return waived


def _sqlite_utc(text: str) -> datetime:
    if len(text) == 26:  # SQLAlchemy's form of a UTC time: the offset parsed in, no replace()
        return datetime.fromisoformat(text + "+00:00")
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _sqlite_time(value: datetime) -> str:
    # "%Y-%m-%d %H:%M:%S.%f" of the UTC time, by isoformat, five times faster than strftime.
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    return utc.isoformat(" ", "microseconds")[:26]
