"""Usage statistics and the yearly review read from the database in one streamed pass."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.domain.statistics import (
    OpeningInterval,
    Period,
    TrainingRow,
    busiest_hours,
    new_members_trained,
    opening_hours,
    period_key,
    under_used,
)
from hub.models import (
    BusyPeriod,
    Machine,
    MachineSession,
    MachineType,
    Member,
    PrintJob,
    Training,
)

log = logging.getLogger(__name__)

OPENING_HOURS_DEFAULT = "tue-sat 14:00-19:00"
UNDER_USED_DEFAULT = 0.05
FORMATS = ("csv", "xlsx", "json")
REVIEW_FORMATS = ("pdf", "xlsx")
PERIODS = ("day", "week", "month")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNKNOWN = "unknown"
# Rows fetched per round trip: big enough to amortise it, small enough to stay flat in memory.
BATCH = 5_000
DETAIL_HEADER = [
    "session",
    "machine",
    "machine_type",
    "member",
    "category",
    "started_at",
    "ended_at",
    "session_hours",
    "busy_hours",
    "mode",
    "supervisor",
]


class ExportInputError(ValueError):
    """A bad date, format or opening-hours text; the message names the option and the fix."""


# --- what a person types ------------------------------------------------------------------
def parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ExportInputError(
            f"{option}: {text!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-01-01"
        ) from None


def check_window(start: date, end: date) -> None:
    if start.year < 1970 or end > date(3000, 1, 1):
        raise ExportInputError("--from/--to: give days from 1970-01-01 to 3000-01-01")
    if end <= start:
        raise ExportInputError(
            f"--to ({end}) must be after --from ({start}); --to is the day after the last one"
        )
    if (end - start).days > 3660:
        raise ExportInputError("--from/--to: at most ten years at once; export in parts")


def check_choice(value: str, choices: Iterable[str], option: str) -> str:
    allowed = tuple(choices)
    if value not in allowed:
        raise ExportInputError(f"{option}: {value!r} is not one of {', '.join(allowed)}")
    return value


_SLOT = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day_index(name: str, spec: str) -> int:
    word = name.lower()
    if word in DAYS:
        return DAYS.index(word)
    if word in _FULL_DAYS:
        return _FULL_DAYS.index(word)
    raise ExportInputError(
        f"--opening-hours: {name!r} in {spec!r} is not a day; use mon, tue, wed, thu, fri, sat, sun"
    )


def parse_opening_hours(spec: str) -> list[OpeningInterval]:
    """'tue-fri 14:00-19:00; sat 10:00-12:00 13:00-18:00' into weekly slots (0 = Monday)."""
    example = "e.g. 'tue-fri 14:00-19:00; sat 10:00-18:00'"
    slots: list[OpeningInterval] = []
    for entry in (part.strip() for part in spec.split(";")):
        if not entry:
            continue
        days_text, *times = entry.split()
        if not times:
            raise ExportInputError(f"--opening-hours: {entry!r} has no times; {example}")
        days: list[int] = []
        for item in days_text.split(","):
            first, _, last = item.partition("-")
            a = _day_index(first, spec)
            b = _day_index(last, spec) if last else a
            days.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
        for text in times:
            match = _SLOT.match(text)
            if not match:
                raise ExportInputError(
                    f"--opening-hours: {text!r} is not a time range like 14:00-19:00; {example}"
                )
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h2, m2) <= (h1, m1):
                raise ExportInputError(
                    f"--opening-hours: {text!r}: the lab must close after it opens, the same "
                    f"day, between 00:00 and 23:59; {example}"
                )
            slots.extend(OpeningInterval(d, time(h1, m1), time(h2, m2)) for d in days)
    if not slots:
        raise ExportInputError(f"--opening-hours: no opening slot in {spec!r}; {example}")
    return slots


# --- the streamed pass --------------------------------------------------------------------
def _figures(acc: list[Any]) -> dict[str, Any]:
    """[sessions, seconds, busy seconds, members] as the published figures."""
    return {
        "sessions": int(acc[0]),
        "session_hours": _h(acc[1]),
        "busy_hours": _h(acc[2]),
        "members": int(acc[3]),
    }


def _sum_into(acc: list[Any], more: list[Any]) -> None:
    acc[0] += more[0]
    acc[1] += more[1]
    acc[2] += more[2]
    acc[3] += more[3]


def _h(seconds: float) -> float:
    return round(seconds / 3600, 4)


def _epoch(column: Any, dialect: str) -> Any:
    """Seconds since 1970 computed by the database: far cheaper than a datetime per value."""
    if dialect == "sqlite":
        return sa.func.round((sa.func.julianday(column) - 2440587.5) * 86400.0, 3)
    return sa.cast(sa.extract("epoch", column), sa.Float)


def _utc(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def _tally_query(dialect: str, start: datetime, end: datetime) -> Any:
    """What the figures need of each session, and nothing more."""
    s = MachineSession.__table__.c  # type: ignore[attr-defined]
    supervised = sa.case(
        (sa.or_(s.mode == "supervised", s.supervisor_ref.is_not(None)), 1), else_=0
    )
    return sa.select(
        s.machine,
        s.member_ref,
        supervised,
        _epoch(s.started_at, dialect),
        _epoch(s.ended_at, dialect),
        sa.func.coalesce(s.busy_s, 0.0),
    ).where(s.started_at >= start, s.started_at < end, s.ended_at.is_not(None))


def _session_query(dialect: str, start: datetime, end: datetime, ordered: bool) -> Any:
    s = MachineSession.__table__.c  # type: ignore[attr-defined]
    query = sa.select(
        s.id,
        s.machine,
        s.member_ref,
        s.mode,
        s.supervisor_ref,
        _epoch(s.started_at, dialect),
        _epoch(s.ended_at, dialect),
        s.busy_s,
    ).where(s.started_at >= start, s.started_at < end, s.ended_at.is_not(None))
    return query.order_by(s.started_at, s.id) if ordered else query


def _partitions(engine: Engine, query: Any) -> Iterator[Any]:
    # yield_per: a server-side cursor on PostgreSQL, batched fetches on SQLite.
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=BATCH).execute(query)
        yield from result.partitions()


@dataclass
class _Lookups:
    category: dict[str, str]
    machine_type: dict[str, str]


def _lookups(engine: Engine) -> _Lookups:
    with engine.connect() as conn:
        category = {
            ref: str(cat)
            for ref, cat in conn.execute(sa.select(Member.ref, Member.category))  # type: ignore[call-overload]
        }
        types: dict[str, str] = dict(
            conn.execute(
                sa.select(Machine.code, MachineType.code).join(  # type: ignore[call-overload]
                    MachineType,
                    Machine.machine_type_id == MachineType.id,
                )
            ).all()
        )
    return _Lookups(category, types)


class _LocalHours:
    """Local weekday, hour and period of each UTC hour, computed once per hour of the year."""

    def __init__(self, tz: ZoneInfo, period: Period) -> None:
        self.tz = tz
        self.period = period
        self.cache: dict[int, tuple[int, int, str]] = {}

    def __call__(self, hour: int) -> tuple[int, int, str]:
        found = self.cache.get(hour)
        if found is None:
            local = datetime.fromtimestamp(hour * 3600, self.tz)
            found = (local.weekday(), local.hour, period_key(local, self.period, self.tz))
            self.cache[hour] = found
        return found


@dataclass
class UsageReport:
    start: date
    end: date
    timezone: str
    period: str
    opening_spec: str
    opening_hours: float
    under_used_threshold: float
    totals: dict[str, Any]
    by_machine: dict[str, dict[str, Any]]
    by_machine_type: dict[str, dict[str, Any]]
    by_category: dict[str, dict[str, Any]]
    by_period: dict[str, dict[str, Any]]
    hour_of_week: list[list[float]]
    busiest_hours: list[dict[str, Any]]
    under_used: list[dict[str, Any]]
    by_member: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    supervised: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (members per group are counts; no per-member figures)."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "timezone": self.timezone,
            "period": self.period,
            "opening_hours": {"spec": self.opening_spec, "hours": self.opening_hours},
            "under_used_threshold": self.under_used_threshold,
            "totals": self.totals,
            "by_machine": self.by_machine,
            "by_machine_type": self.by_machine_type,
            "by_category": self.by_category,
            "by_period": self.by_period,
            "hour_of_week": {DAYS[d]: row for d, row in enumerate(self.hour_of_week)},
            "busiest_hours": self.busiest_hours,
            "under_used": self.under_used,
        }

    def tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        """The same figures as wide tables: one XLSX sheet each."""
        out: list[tuple[str, list[str], list[list[Any]]]] = [
            ("totals", ["measure", "value"], [[k, v] for k, v in self.totals.items()])
        ]
        for name, groups in (
            ("by_machine", self.by_machine),
            ("by_machine_type", self.by_machine_type),
            ("by_category", self.by_category),
            ("by_period", self.by_period),
        ):
            measures = list(next(iter(groups.values())).keys()) if groups else ["sessions"]
            out.append((name, ["key", *measures], [[k, *g.values()] for k, g in groups.items()]))
        out.append(
            (
                "hour_of_week",
                ["day", *(f"{h:02d}" for h in range(24))],
                [[DAYS[d], *row] for d, row in enumerate(self.hour_of_week)],
            )
        )
        out.append(
            (
                "busiest_hours",
                ["key", "rank", "session_hours"],
                [[b["key"], b["rank"], b["session_hours"]] for b in self.busiest_hours],
            )
        )
        out.append(
            (
                "under_used",
                ["key", "utilisation"],
                [[u["machine"], u["utilisation"]] for u in self.under_used],
            )
        )
        return out

    def long_rows(self) -> Iterator[tuple[str, str, str, Any]]:
        """(table, key, measure, value): the CSV form, one number per line."""
        for name, header, rows in self.tables():
            if name == "totals":
                for measure, value in rows:
                    yield ("totals", "all", measure, value)
            elif name == "hour_of_week":
                for row in rows:
                    for hour, value in zip(header[1:], row[1:], strict=True):
                        yield (name, f"{row[0]} {hour}:00", "session_hours", value)
            else:
                for row in rows:
                    for measure, value in zip(header[1:], row[1:], strict=True):
                        yield (name, str(row[0]), measure, value)


def usage_report(
    engine: Engine,
    *,
    start: date,
    end: date,
    tz: ZoneInfo,
    period: Period = "month",
    opening_spec: str = OPENING_HOURS_DEFAULT,
    under_used_threshold: float = UNDER_USED_DEFAULT,
) -> UsageReport:
    """Every figure over the sessions that started in [start, end) local days, in one pass.

    A session counts where it started (its machine, its month); the hour-of-week matrix cuts
    it at each hour. Busy hours per machine are the machine's busy periods (a print that runs
    on after the badge-out counts); per public or period they are the busy time inside the
    sessions. Sessions still open are left out.
    """
    check_window(start, end)
    slots = parse_opening_hours(opening_spec)
    t0, t1 = _utc(start, tz), _utc(end, tz)
    dialect = engine.dialect.name
    look = _lookups(engine)
    local = _LocalHours(tz, period)
    category_of, type_of = look.category, look.machine_type
    # Per UTC hour from the window's first: the seconds of sessions that start or end inside
    # it, and a difference array of the sessions covering it whole. Each session is then a
    # few list updates, whatever its length; the hours become local hours of the week after.
    base = int(t0.timestamp() // 3600)
    span = int((t1 - t0).total_seconds() // 3600) + 24 * 32
    part = [0.0] * span
    whole = [0] * (span + 1)
    period_of = [local(base + i)[2] for i in range(span)]
    pairs: dict[tuple[str, str], list[float]] = {}  # (machine, member)
    periods: dict[tuple[str, str], list[float]] = {}  # (period, member)
    for batch in _partitions(engine, _tally_query(dialect, t0, t1)):
        for machine, ref, watched, begun, ended, busy in batch:
            if ended < begun:
                ended = begun
            seconds = ended - begun
            h0 = int(begun // 3600) - base
            h1 = int(ended // 3600) - base
            if h1 >= span:  # longer than a month: rare, grow the lists
                grow = h1 - span + 1
                part.extend([0.0] * grow)
                whole.extend([0] * grow)
                span += grow
            if h0 == h1:
                part[h0] += seconds
            else:
                part[h0] += (h0 + base + 1) * 3600 - begun
                part[h1] += ended - (h1 + base) * 3600
                whole[h0 + 1] += 1
                whole[h1] -= 1
            tally = pairs.get((machine, ref))
            if tally is None:
                tally = pairs[(machine, ref)] = [0, 0.0, 0.0, 0, 0.0, 0.0]
            tally[0] += 1
            tally[1] += seconds
            tally[2] += busy
            if watched:
                tally[3] += 1
                tally[4] += seconds
                tally[5] += busy
            key = (period_of[h0], ref)
            tally = periods.get(key)
            if tally is None:
                tally = periods[key] = [0, 0.0, 0.0]
            tally[0] += 1
            tally[1] += seconds
            tally[2] += busy

    matrix = [[0.0] * 24 for _ in range(7)]
    covering = 0
    for i in range(span):
        covering += whole[i]
        seconds = part[i] + covering * 3600
        if seconds:
            # Cut on UTC hours: every zone a lab is in has whole-hour offsets from UTC.
            weekday, hour_of_day, _ = local(base + i)
            matrix[weekday][hour_of_day] += seconds

    # Each (machine, member) and (period, member) key is there once: a group's members are
    # its number of keys, no set needed (except for machine types, over several machines).
    by_machine = {m: [0, 0.0, 0.0, 0] for m in sorted(type_of)}
    by_member: dict[str, list[float]] = {}
    type_members: dict[str, set[str]] = {t: set() for t in type_of.values()}
    supervised = [0, 0.0, 0.0, 0]
    for (machine, ref), (n, seconds, busy, sup_n, sup_seconds, sup_busy) in pairs.items():
        acc = by_machine.get(machine)
        if acc is None:
            acc = by_machine[machine] = [0, 0.0, 0.0, 0]
        acc[0] += n
        acc[1] += seconds
        acc[2] += busy
        acc[3] += 1
        acc = by_member.get(ref)
        if acc is None:
            acc = by_member[ref] = [0, 0.0, 0.0, 1]
        acc[0] += n
        acc[1] += seconds
        acc[2] += busy
        type_members.setdefault(type_of.get(machine, UNKNOWN), set()).add(ref)
        if sup_n:
            supervised[0] += sup_n
            supervised[1] += sup_seconds
            supervised[2] += sup_busy
    supervised[3] = len({ref for (_, ref), t in pairs.items() if t[3]})
    by_type = {t: [0, 0.0, 0.0, len(refs)] for t, refs in type_members.items()}
    for machine, acc in by_machine.items():
        _sum_into(by_type[type_of.get(machine, UNKNOWN)], [*acc[:3], 0])
    by_category: dict[str, list[float]] = {}
    total = [0, 0.0, 0.0, 0]
    for ref, acc in by_member.items():
        _sum_into(by_category.setdefault(category_of.get(ref, UNKNOWN), [0, 0.0, 0.0, 0]), acc)
        _sum_into(total, acc)
    by_period: dict[str, list[float]] = {}
    for (period_name, _ref), (n, seconds, busy) in periods.items():
        _sum_into(by_period.setdefault(period_name, [0, 0.0, 0.0, 0]), [n, seconds, busy, 1])

    machine_busy, jobs = _machine_use(engine, t0, t1)
    opened = opening_hours(slots, start, end)
    utilisation: dict[str, float] = {}
    machine_rows: dict[str, dict[str, Any]] = {}
    for code in sorted(set(by_machine) | set(machine_busy) | set(jobs)):
        figures = _figures(by_machine.get(code, [0, 0.0, 0.0, 0]))
        busy_s = machine_busy.get(code, 0.0)
        count, failed, job_s = jobs.get(code, (0, 0, 0.0))
        utilisation[code] = busy_s / 3600 / opened if opened else 0.0
        machine_rows[code] = {
            "machine_type": type_of.get(code, UNKNOWN),
            **figures,
            "machine_busy_hours": _h(busy_s),
            "jobs": count,
            "jobs_failed": failed,
            "job_hours": _h(job_s),
            "utilisation": round(utilisation[code], 4),
        }
    hours_matrix = [[_h(v) for v in row] for row in matrix]
    trained = _trainings(engine, tz)
    busy_total = sum(machine_busy.values())
    totals = {
        **_figures(total),
        "unique_members": int(total[3]),
        "new_members_trained": new_members_trained(trained, start, end),
        "trainings_delivered": sum(1 for t in trained if start <= t.granted_on < end),
        "supervised_sessions": int(supervised[0]),
        "supervised_hours": _h(supervised[1]),
        "machine_busy_hours": _h(busy_total),
        "jobs": sum(j[0] for j in jobs.values()),
        "jobs_failed": sum(j[1] for j in jobs.values()),
        "machines": len(machine_rows),
        "opening_hours": round(opened, 4),
        "utilisation": (
            round(busy_total / 3600 / (opened * len(machine_rows)), 4)
            if opened and machine_rows
            else 0.0
        ),
    }
    del totals["members"]  # the same number as unique_members, under its plain name
    return UsageReport(
        start=start,
        end=end,
        timezone=tz.key,
        period=period,
        opening_spec=opening_spec,
        opening_hours=round(opened, 4),
        under_used_threshold=under_used_threshold,
        totals=totals,
        by_machine=machine_rows,
        by_machine_type={k: _figures(v) for k, v in sorted(by_type.items())},
        by_category={k: _figures(v) for k, v in sorted(by_category.items())},
        by_period={k: _figures(v) for k, v in sorted(by_period.items())},
        hour_of_week=hours_matrix,
        busiest_hours=[
            {
                "rank": rank,
                "key": f"{DAYS[d]} {h:02d}:00",
                "weekday": DAYS[d],
                "hour": h,
                "session_hours": v,
            }
            for rank, (d, h, v) in enumerate(busiest_hours(hours_matrix), start=1)
        ],
        under_used=[
            {"machine": m, "utilisation": round(utilisation.get(m, 0.0), 4)}
            for m in under_used(utilisation, machine_rows, under_used_threshold)
        ],
        by_member={
            k: {"category": category_of.get(k, UNKNOWN), **_figures(v)}
            for k, v in sorted(by_member.items())
        },
        supervised=_figures(supervised),
    )


def _machine_use(
    engine: Engine, t0: datetime, t1: datetime
) -> tuple[dict[str, float], dict[str, tuple[int, int, float]]]:
    """Busy seconds and (jobs, failed, job seconds) per machine, summed by the database."""
    b = BusyPeriod.__table__.c  # type: ignore[attr-defined]
    j = PrintJob.__table__.c  # type: ignore[attr-defined]
    # Grouped by an expression, not the bare column: SQLite would otherwise walk the machine
    # index and fetch each row by id, twice as slow as one scan of the table.
    busy_machine, job_machine = b.machine.concat(""), j.machine.concat("")
    with engine.connect() as conn:
        busy = {
            machine: float(seconds or 0)
            for machine, seconds in conn.execute(
                sa.select(busy_machine, sa.func.sum(b.busy_s))
                .where(b.started_at >= t0, b.started_at < t1, b.ended_at.is_not(None))
                .group_by(busy_machine)
            )
        }
        jobs = {
            machine: (int(count), int(failed or 0), float(seconds or 0))
            for machine, count, failed, seconds in conn.execute(
                sa.select(
                    job_machine,
                    sa.func.count(),
                    sa.func.sum(sa.case((j.state == "failed", 1), else_=0)),
                    sa.func.sum(j.duration_s),
                )
                .where(j.started_at >= t0, j.started_at < t1)
                .group_by(job_machine)
            )
        }
    return busy, jobs


def _trainings(engine: Engine, tz: ZoneInfo) -> list[TrainingRow]:
    """Every training ever (a member is 'new' in the year of their first one)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Member.ref, MachineType.code, Training.granted_at)  # type: ignore[call-overload]
            .join(Member, Training.member_id == Member.id)
            .join(MachineType, Training.machine_type_id == MachineType.id)
        ).all()
    return [TrainingRow(ref, mtype, granted.astimezone(tz).date()) for ref, mtype, granted in rows]


# --- usage export: CSV, JSON, XLSX --------------------------------------------------------
class _LocalStamps:
    """ISO 8601 local times to the second, the hour's part built once per hour."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.cache: dict[int, tuple[str, str]] = {}

    def __call__(self, epoch: float) -> str:
        hour = int(epoch // 3600)
        found = self.cache.get(hour)
        if found is None:
            local = datetime.fromtimestamp(hour * 3600, self.tz)
            text = local.isoformat(timespec="minutes")
            found = self.cache[hour] = (text[:14], text[16:])  # "2026-10-06T14:", "+02:00"
            if local.minute:  # a zone half an hour off UTC: no shortcut
                found = self.cache[hour] = ("", "")
        if not found[0]:
            return datetime.fromtimestamp(epoch, self.tz).isoformat(timespec="seconds")
        second = int(epoch - hour * 3600)
        return f"{found[0]}{second // 60:02d}:{second % 60:02d}{found[1]}"


def _detail_rows(engine: Engine, start: date, end: date, tz: ZoneInfo) -> Iterator[list[Any]]:
    """One row per session, oldest first; members by their pseudonymous reference only."""
    look = _lookups(engine)
    category_of, type_of = look.category, look.machine_type
    stamp = _LocalStamps(tz)
    query = _session_query(engine.dialect.name, _utc(start, tz), _utc(end, tz), ordered=True)
    for batch in _partitions(engine, query):
        for sid, machine, ref, mode, supervisor, begun, ended, busy in batch:
            yield [
                sid,
                machine,
                type_of.get(machine, UNKNOWN),
                ref,
                category_of.get(ref, UNKNOWN),
                stamp(begun),
                stamp(ended),
                round(max(0.0, ended - begun) / 3600, 4),
                round((busy or 0.0) / 3600, 4),
                mode,
                supervisor or "",
            ]


def _csv_chunks(rows: Iterable[Iterable[Any]], header: list[str]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % 2_000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def usage_chunks(
    engine: Engine,
    fmt: Literal["csv", "json"],
    *,
    start: date,
    end: date,
    tz: ZoneInfo,
    detail: bool = False,
    **options: Any,
) -> Iterator[str]:
    """The export as text chunks, written or sent as they come: CSV (the figures one per
    line, or with `detail` one line per session) or JSON (the figures, plus `sessions`)."""
    if fmt == "csv" and detail:
        check_window(start, end)
        yield from _csv_chunks(_detail_rows(engine, start, end, tz), DETAIL_HEADER)
        return
    report = usage_report(engine, start=start, end=end, tz=tz, **options)
    if fmt == "csv":
        yield from _csv_chunks(report.long_rows(), ["table", "key", "measure", "value"])
        return
    document = json.dumps(report.as_dict(), indent=1)
    if not detail:
        yield document + "\n"
        return
    yield document[:-2] + ',\n "sessions": ['
    for count, row in enumerate(_detail_rows(engine, start, end, tz)):
        yield (
            ("," if count else "") + "\n  " + json.dumps(dict(zip(DETAIL_HEADER, row, strict=True)))
        )
    yield "\n ]\n}\n"


def write_usage_xlsx(
    engine: Engine,
    target: Path | IO[bytes],
    *,
    start: date,
    end: date,
    tz: ZoneInfo,
    detail: bool = False,
    **options: Any,
) -> UsageReport:
    """One sheet per table (and `sessions` with `detail`), written row by row."""
    from openpyxl import Workbook

    report = usage_report(engine, start=start, end=end, tz=tz, **options)
    book = Workbook(write_only=True)
    for name, header, rows in report.tables():
        sheet = book.create_sheet(name)
        sheet.append(header)
        for row in rows:
            sheet.append(row)
    if detail:
        sheet = book.create_sheet("sessions")
        sheet.append(DETAIL_HEADER)
        for row in _detail_rows(engine, start, end, tz):
            sheet.append(row)
    book.save(target)
    return report


# --- the yearly review --------------------------------------------------------------------
@dataclass
class MaintenanceSection:
    available: bool
    note: str
    by_machine: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Review:
    year: int
    site: str
    usage: UsageReport
    trainings_by_type: dict[str, int]
    maintenance: MaintenanceSection

    @property
    def members(self) -> dict[str, dict[str, Any]]:
        """Per member reference (pseudonymous), their public and use."""
        return self.usage.by_member


def yearly_review(
    engine: Engine,
    year: int,
    *,
    tz: ZoneInfo,
    site: str = "lab",
    opening_spec: str = OPENING_HOURS_DEFAULT,
    now: datetime | None = None,
) -> Review:
    """What funders ask for, over the local calendar year; members appear by reference only."""
    if not 2000 <= year <= 2999:
        raise ExportInputError(f"--year: {year} is not a year like 2026")
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    usage = usage_report(engine, start=start, end=end, tz=tz, opening_spec=opening_spec)
    by_type: dict[str, int] = {}
    for training in _trainings(engine, tz):
        if start <= training.granted_on < end:
            by_type[training.machine_type] = by_type.get(training.machine_type, 0) + 1
    return Review(
        year=year,
        site=site,
        usage=usage,
        trainings_by_type=dict(sorted(by_type.items())),
        maintenance=_maintenance(engine, _utc(start, tz), _utc(end, tz), now or datetime.now(UTC)),
    )


def _maintenance(engine: Engine, t0: datetime, t1: datetime, now: datetime) -> MaintenanceSection:
    """Sign-offs, incidents and downtime per machine, from the maintenance tables if present."""
    try:
        from hub.maintenance_store import Downtime, Incident, MaintenanceSignOff
    except ImportError:
        return MaintenanceSection(False, "maintenance records are not kept by this hub version")
    tables = [Downtime.__table__, Incident.__table__, MaintenanceSignOff.__table__]  # type: ignore[attr-defined]
    inspector = sa.inspect(engine)
    if not all(inspector.has_table(t.name) for t in tables):
        return MaintenanceSection(
            False, "the maintenance tables are missing: run atelier hub migrate"
        )
    down, incident, sign_off = tables
    d, i, s = down.c, incident.c, sign_off.c
    m = Machine.__table__.c  # type: ignore[attr-defined]
    out: dict[str, dict[str, Any]] = {}

    def row(code: str) -> dict[str, Any]:
        return out.setdefault(code, {"sign_offs": 0, "incidents": 0, "downtime_hours": 0.0})

    with engine.connect() as conn:
        for code, count in conn.execute(
            sa.select(m.code, sa.func.count())
            .join(sign_off, s.machine_id == m.id)
            .where(s.signed_at >= t0, s.signed_at < t1)
            .group_by(m.code)
        ):
            row(code)["sign_offs"] = int(count)
        for code, count in conn.execute(
            sa.select(m.code, sa.func.count())
            .join(incident, i.machine_id == m.id)
            .where(i.opened_at >= t0, i.opened_at < t1)
            .group_by(m.code)
        ):
            row(code)["incidents"] = int(count)
        # Downtime is cut to the year, and one still open counts up to now.
        for code, began, ended in conn.execute(
            sa.select(m.code, d.started_at, d.ended_at)
            .join(down, d.machine_id == m.id)
            .where(d.started_at < t1, sa.or_(d.ended_at.is_(None), d.ended_at > t0))
        ):
            stop = min(ended or now, t1)
            seconds = (stop - max(began, t0)).total_seconds()
            if seconds > 0:
                row(code)["downtime_hours"] += seconds / 3600
    for figures in out.values():
        figures["downtime_hours"] = round(figures["downtime_hours"], 4)
    return MaintenanceSection(True, "", dict(sorted(out.items())))


def review_tables(review: Review) -> list[tuple[str, list[str], list[list[Any]]]]:
    usage = review.usage
    summary: list[list[Any]] = [
        ["year", review.year],
        ["site", review.site],
        ["sessions", usage.totals["sessions"]],
        ["session hours", usage.totals["session_hours"]],
        ["machine busy hours", usage.totals["machine_busy_hours"]],
        ["members who used a machine", usage.totals["unique_members"]],
        ["trainings delivered", usage.totals["trainings_delivered"]],
        ["members trained for the first time", usage.totals["new_members_trained"]],
        ["supervised sessions", usage.totals["supervised_sessions"]],
        ["supervised hours", usage.totals["supervised_hours"]],
        ["print and cut jobs", usage.totals["jobs"]],
        ["opening hours", usage.totals["opening_hours"]],
        ["utilisation (busy / opening hours, all machines)", usage.totals["utilisation"]],
    ]
    machine_cols = [
        "machine_type",
        "sessions",
        "session_hours",
        "machine_busy_hours",
        "members",
        "jobs",
        "utilisation",
    ]
    public_cols = ["sessions", "session_hours", "busy_hours", "members"]
    maintenance_rows = (
        [
            [k, v["sign_offs"], v["incidents"], v["downtime_hours"]]
            for k, v in review.maintenance.by_machine.items()
        ]
        if review.maintenance.available
        else [[f"not available: {review.maintenance.note}", "", "", ""]]
    )
    return [
        ("summary", ["figure", "value"], summary),
        (
            "by machine",
            ["machine", *(_label(c) for c in machine_cols)],
            [[k, *(v[c] for c in machine_cols)] for k, v in usage.by_machine.items()],
        ),
        (
            "by public",
            ["member category", *(_label(c) for c in public_cols)],
            [[k, *(v[c] for c in public_cols)] for k, v in usage.by_category.items()],
        ),
        (
            "trainings",
            ["machine type", "trainings delivered"],
            [[k, v] for k, v in review.trainings_by_type.items()],
        ),
        (
            "supervised",
            ["figure", "value"],
            [[_label(k), v] for k, v in usage.supervised.items() if k != "members"],
        ),
        (
            "maintenance",
            ["machine", "tasks signed off", "incidents", "downtime hours"],
            maintenance_rows,
        ),
        (
            "members",
            ["member (pseudonymous reference)", "category", *(_label(c) for c in public_cols[:3])],
            [
                [ref, v["category"], *(v[c] for c in public_cols[:3])]
                for ref, v in review.members.items()
            ],
        ),
    ]


def _label(key: str) -> str:
    return {"machine_type": "type"}.get(key, key.replace("_", " "))


def write_review_xlsx(review: Review, target: Path | IO[bytes]) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for name, header, rows in review_tables(review):
        sheet = book.create_sheet(name)
        sheet.append(header)
        for row in rows:
            sheet.append(row)
    book.save(target)


def _pdf_text(text: Any) -> str:
    # The PDF's built-in fonts know Windows-1252 only; anything else becomes '?'.
    return str(text).encode("cp1252", "replace").decode("cp1252")


def write_review_pdf(review: Review, target: Path | IO[bytes]) -> None:
    """The review on a few A4 pages; the member list stays in the XLSX (it is long)."""
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_creator("Atelier")
    pdf.set_title(f"Yearly review {review.year}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _pdf_text(f"Yearly review {review.year}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    usage = review.usage
    pdf.multi_cell(
        0,
        5,
        _pdf_text(
            f"Site {review.site}. Sessions started from {usage.start} to {usage.end} "
            f"(excluded), {usage.timezone} time. Opening hours: {usage.opening_spec}. "
            "Members appear only as counts and pseudonymous references, never by name."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    titles = {
        "summary": "Summary",
        "by machine": "Activity per machine",
        "by public": "Activity per public (member category)",
        "trainings": "Trainings delivered per machine type",
        "supervised": "Supervised sessions",
        "maintenance": "Maintenance and downtime",
    }
    for name, header, rows in review_tables(review):
        if name not in titles:
            continue
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, _pdf_text(titles[name]), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)
        if not rows:
            pdf.cell(0, 6, "none", new_x="LMARGIN", new_y="NEXT")
            continue
        with pdf.table(text_align="LEFT", line_height=5) as table:
            table.row([_pdf_text(h) for h in header])
            for values in rows:
                table.row([_pdf_text(v) for v in values])
    pdf.ln(4)
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(
        0,
        5,
        _pdf_text(
            f"{usage.totals['unique_members']} members used a machine this year; the list, "
            "by pseudonymous reference, is in the XLSX version of this review."
        ),
    )
    data = pdf.output()
    if isinstance(target, Path):
        target.write_bytes(data)
    else:
        target.write(data)


def write_review(review: Review, fmt: str, target: Path | IO[bytes]) -> None:
    writer: Callable[[Review, Path | IO[bytes]], None] = (
        write_review_pdf if fmt == "pdf" else write_review_xlsx
    )
    writer(review, target)
