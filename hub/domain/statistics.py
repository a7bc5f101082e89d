"""Pure usage statistics and the yearly review for funders, over plain rows."""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Period = Literal["day", "week", "month"]


@dataclass(frozen=True)
class SessionRow:
    machine: str
    machine_type: str
    category: str
    member_ref: str
    started_at: datetime
    ended_at: datetime
    busy_seconds: int = 0
    supervised: bool = False


@dataclass(frozen=True)
class TrainingRow:
    member_ref: str
    machine_type: str
    granted_on: date
    trainer_ref: str = ""


@dataclass(frozen=True)
class OpeningInterval:
    """One opening slot of the week: weekday 0 = Monday, local times."""

    weekday: int
    opens: time
    closes: time


@dataclass(frozen=True)
class Usage:
    sessions: int = 0
    session_hours: float = 0.0
    busy_hours: float = 0.0
    members: frozenset[str] = field(default_factory=frozenset)


def _hours(start: datetime, end: datetime) -> float:
    return (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 3600


def _add(u: Usage, row: SessionRow) -> Usage:
    return Usage(
        u.sessions + 1,
        u.session_hours + _hours(row.started_at, row.ended_at),
        u.busy_hours + row.busy_seconds / 3600,
        u.members | {row.member_ref},
    )


def period_key(moment: datetime, period: Period, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz).date()
    if period == "day":
        return local.isoformat()
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{local.year}-{local.month:02d}"


def usage_by(
    rows: Iterable[SessionRow],
    key: Literal["machine", "machine_type", "category", "period"],
    *,
    tz: ZoneInfo,
    period: Period = "month",
) -> dict[str, Usage]:
    """Sessions, hours and members grouped by one dimension (a session counts where it started)."""
    out: dict[str, Usage] = defaultdict(Usage)
    for row in rows:
        k = period_key(row.started_at, period, tz) if key == "period" else getattr(row, key)
        out[k] = _add(out[k], row)
    return dict(sorted(out.items()))


def hour_of_week(rows: Iterable[SessionRow], tz: ZoneInfo) -> list[list[float]]:
    """7 x 24 matrix (Monday first) of session hours, each session cut at hour boundaries."""
    matrix = [[0.0] * 24 for _ in range(7)]
    for row in rows:
        cursor = row.started_at.astimezone(UTC)
        end = row.ended_at.astimezone(UTC)
        while cursor < end:
            # Cut on UTC hours; Paris offsets are whole hours, so these are local hours too.
            nxt = min(end, cursor.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
            local = cursor.astimezone(tz)
            matrix[local.weekday()][local.hour] += (nxt - cursor).total_seconds() / 3600
            cursor = nxt
    return matrix


def busiest_hours(matrix: Sequence[Sequence[float]], top: int = 5) -> list[tuple[int, int, float]]:
    """(weekday, hour, hours) of the busiest cells, most used first, ties by time of week."""
    cells = [(d, h, v) for d, row in enumerate(matrix) for h, v in enumerate(row) if v > 0]
    return sorted(cells, key=lambda c: (-c[2], c[0], c[1]))[:top]


def opening_hours(intervals: Iterable[OpeningInterval], start: date, end: date) -> float:
    """Opening hours between two dates (end excluded) from the weekly timetable."""
    weekly: dict[int, float] = defaultdict(float)
    for slot in intervals:
        minutes = (slot.closes.hour * 60 + slot.closes.minute) - (
            slot.opens.hour * 60 + slot.opens.minute
        )
        if minutes <= 0:
            raise ValueError(f"opening slot on weekday {slot.weekday}: closes must be after opens")
        weekly[slot.weekday] += minutes / 60
    total = 0.0
    day = start
    while day < end:
        total += weekly.get(day.weekday(), 0.0)
        day += timedelta(days=1)
    return total


def utilisation(
    rows: Iterable[SessionRow], intervals: Sequence[OpeningInterval], start: date, end: date
) -> dict[str, float]:
    """Busy hours / opening hours per machine over [start, end)."""
    opened = opening_hours(intervals, start, end)
    busy: dict[str, float] = defaultdict(float)
    for row in rows:
        busy[row.machine] += row.busy_seconds / 3600
    return {m: (h / opened if opened else 0.0) for m, h in sorted(busy.items())}


def under_used(
    utilisation_by_machine: dict[str, float], machines: Iterable[str], threshold: float
) -> list[str]:
    """Machines under the threshold, including those never used at all."""
    return sorted(m for m in set(machines) if utilisation_by_machine.get(m, 0.0) < threshold)


def unique_members(rows: Iterable[SessionRow]) -> int:
    return len({r.member_ref for r in rows})


def new_members_trained(trainings: Iterable[TrainingRow], start: date, end: date) -> int:
    """Members whose first training ever falls in [start, end)."""
    first: dict[str, date] = {}
    for t in trainings:
        first[t.member_ref] = min(first.get(t.member_ref, t.granted_on), t.granted_on)
    return sum(1 for d in first.values() if start <= d < end)


def pseudonym(member_ref: str, salt: bytes) -> str:
    """A stable pseudonymous id for one review: HMAC-SHA256 with a secret salt, shortened."""
    if len(salt) < 16:
        raise ValueError("the pseudonym salt must be at least 16 random bytes")
    return "m-" + hmac.new(salt, member_ref.encode(), hashlib.sha256).hexdigest()[:12]


@dataclass(frozen=True)
class DowntimeRow:
    machine: str
    started_at: datetime
    ended_at: datetime
    reason: str


@dataclass(frozen=True)
class YearlyReview:
    year: int
    activity_by_machine: dict[str, dict[str, float]]
    activity_by_public: dict[str, dict[str, float]]
    members: list[str]
    trainings_delivered: int
    new_members_trained: int
    supervised_hours: float
    maintenance_done: int
    downtime_hours_by_machine: dict[str, float]


def yearly_review(
    year: int,
    sessions: Iterable[SessionRow],
    trainings: Iterable[TrainingRow],
    *,
    maintenance_sign_offs: int,
    downtime: Iterable[DowntimeRow],
    salt: bytes,
    tz: ZoneInfo,
) -> YearlyReview:
    """The figures funders ask for; members appear only as pseudonyms, never names or emails."""
    rows = [s for s in sessions if s.started_at.astimezone(tz).year == year]
    all_trainings = list(trainings)
    trained = [t for t in all_trainings if t.granted_on.year == year]

    def summary(groups: dict[str, Usage]) -> dict[str, dict[str, float]]:
        return {
            k: {
                "sessions": u.sessions,
                "session_hours": round(u.session_hours, 2),
                "busy_hours": round(u.busy_hours, 2),
                "members": len(u.members),
            }
            for k, u in groups.items()
        }

    # Downtime is cut to the year (one from December into January counts on each side); the
    # caller passes one still open as ending now.
    opens = datetime.combine(date(year, 1, 1), time(), tz)
    closes = datetime.combine(date(year + 1, 1, 1), time(), tz)
    down: dict[str, float] = defaultdict(float)
    for d in downtime:
        hours = _hours(max(d.started_at, opens), min(d.ended_at, closes))
        if hours > 0:
            down[d.machine] += hours
    return YearlyReview(
        year=year,
        activity_by_machine=summary(usage_by(rows, "machine", tz=tz)),
        activity_by_public=summary(usage_by(rows, "category", tz=tz)),
        members=sorted({pseudonym(r.member_ref, salt) for r in rows}),
        trainings_delivered=len(trained),
        new_members_trained=new_members_trained(
            all_trainings, date(year, 1, 1), date(year + 1, 1, 1)
        ),
        supervised_hours=round(
            sum(_hours(r.started_at, r.ended_at) for r in rows if r.supervised), 2
        ),
        maintenance_done=maintenance_sign_offs,
        downtime_hours_by_machine={m: round(h, 2) for m, h in sorted(down.items())},
    )
