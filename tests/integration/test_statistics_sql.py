"""The streamed SQL pass (hub/reports/usage.py) computes what the pure rules of
hub/domain/statistics.py define, on generated sessions, on SQLite and PostgreSQL.

The pass stays in SQL for speed (bench/bench_reports.py); these properties are what keeps it
equal to `usage_by`, `hour_of_week` and `yearly_review`: sessions across the year's edges and
both daylight-saving changes, open ones, supervised ones, members and machines the hub no
longer knows, zero-length and month-long sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.core.db import make_engine, migrate
from hub.domain.statistics import (
    DowntimeRow,
    SessionRow,
    TrainingRow,
    Usage,
    hour_of_week,
    usage_by,
)
from hub.domain.statistics import yearly_review as pure_review
from hub.models import (
    Downtime,
    Machine,
    MachineSession,
    MachineType,
    Member,
    MemberCategory,
    Training,
    TrainingLevel,
)
from hub.reports.review import yearly_review
from hub.reports.usage import UNKNOWN, UsageReport, usage_report

PARIS = ZoneInfo("Europe/Paris")
YEAR = 2026
START, END = date(YEAR, 1, 1), date(YEAR + 1, 1, 1)
# machine -> type; "gone-1" has sessions but no Machine row (its type is unknown).
MACHINES = {"laser-1": "laser", "laser-2": "laser", "printer-1": "printer"}
# member ref -> category; "m-gone" has sessions but no Member row (erased, imported...).
MEMBERS = {
    "m-1": MemberCategory.INDIVIDUAL,
    "m-2": MemberCategory.STUDENT,
    "m-3": MemberCategory.STUDENT,
    "m-4": MemberCategory.PROFESSIONAL,
}
REFS = [*MEMBERS, "m-gone"]
CODES = [*MACHINES, "gone-1"]


@dataclass(frozen=True)
class Generated:
    machine: str
    member_ref: str
    started_at: datetime
    ended_at: datetime | None
    busy_s: int
    mode: str
    supervisor_ref: str | None


# Whole seconds (what agents report), from a week before the year to a week after it: the
# window's edges, the spring and autumn clock changes, open sessions, a month-long one.
moments = st.integers(
    min_value=int(datetime(YEAR - 1, 12, 24, tzinfo=UTC).timestamp()),
    max_value=int(datetime(YEAR + 1, 1, 8, tzinfo=UTC).timestamp()),
).map(lambda s: datetime.fromtimestamp(s, UTC))
edges = st.sampled_from(
    [
        datetime(YEAR, 1, 1, tzinfo=PARIS) - timedelta(seconds=1),
        datetime(YEAR, 1, 1, tzinfo=PARIS),
        datetime(YEAR, 3, 29, 1, 30, tzinfo=UTC),  # spring forward in Paris
        datetime(YEAR, 10, 25, 0, 59, 59, tzinfo=UTC),  # fall back
        datetime(YEAR + 1, 1, 1, tzinfo=PARIS) - timedelta(seconds=1),
        datetime(YEAR + 1, 1, 1, tzinfo=PARIS),
    ]
).map(lambda moment: moment.astimezone(UTC))
lengths = st.one_of(
    st.integers(min_value=0, max_value=6 * 3600),
    st.sampled_from([0, 1, 3599, 3600, 3601, 40 * 24 * 3600]),
)


@st.composite
def sessions(draw: st.DrawFn) -> Generated:
    start = draw(st.one_of(moments, edges))
    length = draw(lengths)
    mode = draw(st.sampled_from(["normal", "normal", "supervised", "maintenance"]))
    return Generated(
        machine=draw(st.sampled_from(CODES)),
        member_ref=draw(st.sampled_from(REFS)),
        started_at=start,
        ended_at=None if draw(st.integers(0, 9)) == 0 else start + timedelta(seconds=length),
        busy_s=draw(st.integers(min_value=0, max_value=length)),
        mode=mode,
        supervisor_ref=draw(st.sampled_from([None, None, "m-1"])),
    )


trainings = st.lists(
    st.tuples(
        st.sampled_from(sorted(MEMBERS)),
        st.sampled_from(["laser", "printer"]),
        st.one_of(moments, edges),
    ),
    max_size=8,
    unique_by=lambda t: (t[0], t[1]),
)


# A machine's downtime: from a moment, for a while or still open (None); many across New Year,
# where the review cuts them.
new_years = st.sampled_from([START, END]).flatmap(
    lambda day: st.integers(min_value=-10 * 86400, max_value=10 * 86400).map(
        lambda s: (
            datetime.combine(day, datetime.min.time(), PARIS).astimezone(UTC) + timedelta(seconds=s)
        )
    )
)
downtimes = st.lists(
    st.tuples(
        st.sampled_from(sorted(MACHINES)),
        st.one_of(new_years, moments, edges),
        st.one_of(st.none(), st.integers(min_value=0, max_value=20 * 86400), lengths),
    ),
    max_size=6,
)
NOW = datetime(YEAR + 1, 1, 10, tzinfo=UTC)


@dataclass
class Lab:
    engine: Engine
    member_ids: dict[str, int]
    type_ids: dict[str, int]
    machine_ids: dict[str, int]


@pytest.fixture
def lab(database_url: str) -> Iterator[Lab]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        types = {code: MachineType(code=code, name=code) for code in ("laser", "printer")}
        session.add_all(types.values())
        session.flush()
        machines = {
            code: Machine(
                code=code, name=code, site="lab", machine_type_id=int(types[kind].id or 0)
            )
            for code, kind in MACHINES.items()
        }
        session.add_all(machines.values())
        members = {
            ref: Member(ref=ref, name=ref, email=f"{ref}@example.org", category=category)
            for ref, category in MEMBERS.items()
        }
        session.add_all(members.values())
        session.commit()
        ids = {ref: int(m.id or 0) for ref, m in members.items()}
        type_ids = {code: int(t.id or 0) for code, t in types.items()}
        machine_ids = {code: int(m.id or 0) for code, m in machines.items()}
    try:
        yield Lab(engine, ids, type_ids, machine_ids)
    finally:
        engine.dispose()


def _store(
    lab: Lab,
    rows: list[Generated],
    granted: list[tuple[str, str, datetime]],
    down: list[tuple[str, datetime, int | None]],
) -> None:
    with Session(lab.engine) as session:
        session.execute(sa.delete(MachineSession))
        session.execute(sa.delete(Training))
        session.execute(sa.delete(Downtime))
        session.add_all(
            Downtime(
                machine_id=lab.machine_ids[code],
                started_at=began,
                ended_at=None if length is None else began + timedelta(seconds=length),
            )
            for code, began, length in down
        )
        session.add_all(
            MachineSession(
                id=f"s{i}",
                site="lab",
                machine=row.machine,
                member_ref=row.member_ref,
                mode=row.mode,
                supervisor_ref=row.supervisor_ref,
                started_at=row.started_at,
                ended_at=row.ended_at,
                duration_s=(row.ended_at - row.started_at).total_seconds()
                if row.ended_at
                else None,
                busy_s=float(row.busy_s),
            )
            for i, row in enumerate(rows)
        )
        session.add_all(
            Training(
                member_id=lab.member_ids[ref],
                machine_type_id=lab.type_ids[kind],
                level=TrainingLevel.USER,
                granted_at=when,
            )
            for ref, kind, when in granted
        )
        session.commit()


def _pure_rows(rows: list[Generated]) -> list[SessionRow]:
    """What the pure rules take: the closed sessions that started in the year, lab time."""
    return [
        SessionRow(
            machine=row.machine,
            machine_type=MACHINES.get(row.machine, UNKNOWN),
            category=MEMBERS[row.member_ref].value if row.member_ref in MEMBERS else UNKNOWN,
            member_ref=row.member_ref,
            started_at=row.started_at,
            ended_at=row.ended_at,
            busy_seconds=row.busy_s,
            supervised=row.mode == "supervised" or row.supervisor_ref is not None,
        )
        for row in rows
        if row.ended_at is not None and START <= row.started_at.astimezone(PARIS).date() < END
    ]


def _published(groups: dict[str, Usage]) -> dict[str, tuple[Any, ...]]:
    # Whole seconds over 3600 never fall on a 4-decimal tie: rounding both sides is exact.
    return {
        k: (u.sessions, round(u.session_hours, 4), round(u.busy_hours, 4), len(u.members))
        for k, u in groups.items()
    }


def _figures(groups: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        k: (v["sessions"], v["session_hours"], v["busy_hours"], v["members"])
        for k, v in groups.items()
        if v["sessions"]  # the report lists every machine, used or not
    }


SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(
    rows=st.lists(sessions(), max_size=30),
    period=st.sampled_from(["day", "week", "month"]),
)
def test_the_streamed_tallies_are_usage_by_and_hour_of_week(
    lab: Lab, rows: list[Generated], period: Literal["day", "week", "month"]
) -> None:
    _store(lab, rows, [], [])
    report: UsageReport = usage_report(lab.engine, start=START, end=END, tz=PARIS, period=period)
    pure = _pure_rows(rows)
    for key, ours in (
        ("machine", report.by_machine),
        ("machine_type", report.by_machine_type),
        ("category", report.by_category),
        ("period", report.by_period),
    ):
        expected = _published(usage_by(pure, key, tz=PARIS, period=period))  # type: ignore[arg-type]
        assert _figures(ours) == expected, key
    assert report.hour_of_week == [[round(v, 4) for v in r] for r in hour_of_week(pure, PARIS)]
    assert report.totals["sessions"] == len(pure)
    assert report.totals["unique_members"] == len({r.member_ref for r in pure})


@SETTINGS
@given(rows=st.lists(sessions(), max_size=30), granted=trainings, down=downtimes)
# Always tried: downtime across each New Year, one of them still open.
@example(
    rows=[],
    granted=[],
    down=[
        ("laser-1", datetime(YEAR - 1, 12, 25, tzinfo=UTC), 20 * 86400),
        ("printer-1", datetime(YEAR, 12, 30, tzinfo=UTC), None),
    ],
)
def test_the_review_is_the_pure_yearly_review(
    lab: Lab,
    rows: list[Generated],
    granted: list[tuple[str, str, datetime]],
    down: list[tuple[str, datetime, int | None]],
) -> None:
    _store(lab, rows, granted, down)
    ours = yearly_review(lab.engine, YEAR, tz=PARIS, now=NOW)
    pure = pure_review(
        YEAR,
        _pure_rows(rows),
        [TrainingRow(ref, kind, when.astimezone(PARIS).date()) for ref, kind, when in granted],
        maintenance_sign_offs=0,
        # One still open ends now, as the review on the database counts it.
        downtime=[
            DowntimeRow(
                code, began, NOW if length is None else began + timedelta(seconds=length), ""
            )
            for code, began, length in down
        ],
        salt=b"sixteen bytes at least",
        tz=PARIS,
    )
    usage = ours.usage

    # The pure review rounds to 2 decimals and the report to 4: equal within the coarser one.
    def close(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
        used = {k: v for k, v in a.items() if v["sessions"]}
        assert set(used) == set(b)
        for k, v in used.items():
            assert (v["sessions"], v["members"]) == (b[k]["sessions"], b[k]["members"]), k
            for hours in ("session_hours", "busy_hours"):
                assert abs(v[hours] - b[k][hours]) <= 0.0051, (k, hours)

    close(usage.by_machine, pure.activity_by_machine)
    close(usage.by_category, pure.activity_by_public)
    assert usage.totals["unique_members"] == len(pure.members)
    assert usage.totals["trainings_delivered"] == pure.trainings_delivered
    assert sum(ours.trainings_by_type.values()) == pure.trainings_delivered
    assert usage.totals["new_members_trained"] == pure.new_members_trained
    assert abs(usage.totals["supervised_hours"] - pure.supervised_hours) <= 0.0051
    assert ours.maintenance.available
    ours_down = {
        k: v["downtime_hours"]
        for k, v in ours.maintenance.by_machine.items()
        if v["downtime_hours"]
    }
    assert set(ours_down) == set(pure.downtime_hours_by_machine)
    for code, hours in ours_down.items():
        assert abs(hours - pure.downtime_hours_by_machine[code]) <= 0.0051, code
