"""Usage statistics read from the database in one streamed pass: the figures per machine,
machine type, public, period and hour of the week that the exports and the review publish.

The pure rules in hub/domain/statistics.py (`usage_by`, `hour_of_week`) define these figures;
this pass computes the same in one read of the sessions (a server-side cursor) for a lab-year's
500,000 of them, and tests/integration/test_statistics_sql.py proves the two agree on generated
sessions, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.domain.statistics import (
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
from hub.reports.inputs import (
    DAYS,
    OPENING_HOURS_DEFAULT,
    UNDER_USED_DEFAULT,
    check_window,
    parse_opening_hours,
)

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
# Rows fetched per round trip: big enough to amortise it, small enough to stay flat in memory.
BATCH = 5_000


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


def utc_day(day: date, tz: ZoneInfo) -> datetime:
    """The lab's midnight starting `day`, in UTC."""
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


def session_query(dialect: str, start: datetime, end: datetime, ordered: bool) -> Any:
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


def partitions(engine: Engine, query: Any) -> Iterator[Any]:
    # yield_per: a server-side cursor on PostgreSQL, batched fetches on SQLite.
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=BATCH).execute(query)
        yield from result.partitions()


@dataclass
class Lookups:
    category: dict[str, str]
    machine_type: dict[str, str]


def lookups(engine: Engine) -> Lookups:
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
    return Lookups(category, types)


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
    # Per period, per member category: what the statistics page draws month by month (not
    # in the JSON document, whose by_category and by_period are its two margins).
    by_period_category: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=dict, repr=False
    )

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
    t0, t1 = utc_day(start, tz), utc_day(end, tz)
    dialect = engine.dialect.name
    look = lookups(engine)
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
    for batch in partitions(engine, _tally_query(dialect, t0, t1)):
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
    period_category: dict[str, dict[str, list[float]]] = {}
    for (period_name, ref), (n, seconds, busy) in periods.items():
        _sum_into(by_period.setdefault(period_name, [0, 0.0, 0.0, 0]), [n, seconds, busy, 1])
        cats = period_category.setdefault(period_name, {})
        _sum_into(
            cats.setdefault(category_of.get(ref, UNKNOWN), [0, 0.0, 0.0, 0]),
            [n, seconds, busy, 1],
        )

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
    trained = trainings(engine, tz)
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
        by_period_category={
            k: {c: _figures(v) for c, v in sorted(cats.items())}
            for k, cats in sorted(period_category.items())
        },
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


def trainings(engine: Engine, tz: ZoneInfo) -> list[TrainingRow]:
    """Every training ever (a member is 'new' in the year of their first one)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Member.ref, MachineType.code, Training.granted_at)  # type: ignore[call-overload]
            .join(Member, Training.member_id == Member.id)
            .join(MachineType, Training.machine_type_id == MachineType.id)
        ).all()
    return [TrainingRow(ref, mtype, granted.astimezone(tz).date()) for ref, mtype, granted in rows]
