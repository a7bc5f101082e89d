"""Usage statistics and the yearly review, recomputed by hand on small data."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from hub.domain.statistics import (
    DowntimeRow,
    OpeningInterval,
    SessionRow,
    TrainingRow,
    busiest_hours,
    hour_of_week,
    new_members_trained,
    opening_hours,
    pseudonym,
    under_used,
    unique_members,
    usage_by,
    utilisation,
    yearly_review,
)

PARIS = ZoneInfo("Europe/Paris")
SALT = b"0123456789abcdef-review-2026"


def at(m: int, d: int, h: int, mi: int = 0, y: int = 2026) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=PARIS)


ROWS = [
    SessionRow("laser-1", "laser", "individual", "alice", at(10, 5, 14, 30), at(10, 5, 16), 3600),
    SessionRow("laser-1", "laser", "student", "bruno", at(10, 6, 14), at(10, 6, 15), 1800, True),
    SessionRow(
        "printer-1", "printer", "individual", "alice", at(10, 12, 23, 30), at(10, 13, 0, 30), 3600
    ),
    SessionRow("printer-1", "printer", "professional", "chloe", at(11, 2, 9), at(11, 2, 11), 7200),
]


def test_usage_by_each_dimension() -> None:
    by_machine = usage_by(ROWS, "machine", tz=PARIS)
    assert by_machine["laser-1"].sessions == 2
    assert by_machine["laser-1"].session_hours == 2.5 and by_machine["laser-1"].busy_hours == 1.5
    assert usage_by(ROWS, "category", tz=PARIS)["individual"].members == frozenset({"alice"})
    assert list(usage_by(ROWS, "machine_type", tz=PARIS)) == ["laser", "printer"]
    months = usage_by(ROWS, "period", tz=PARIS, period="month")
    assert {k: v.sessions for k, v in months.items()} == {"2026-10": 3, "2026-11": 1}
    weeks = usage_by(ROWS, "period", tz=PARIS, period="week")
    assert list(weeks) == ["2026-W41", "2026-W42", "2026-W45"]
    assert list(usage_by(ROWS, "period", tz=PARIS, period="day"))[0] == "2026-10-05"


def test_hour_of_week_splits_sessions_across_hours_and_midnight() -> None:
    m = hour_of_week(ROWS, PARIS)
    assert m[0][14] == 0.5 and m[0][15] == 1.0  # Monday 14:30-16:00
    assert m[0][23] == 0.5 and m[1][0] == 0.5  # Monday 23:30 -> Tuesday 00:30
    assert m[1][14] == 1.0
    assert sum(map(sum, m)) == pytest.approx(1.5 + 1 + 1 + 2)
    assert busiest_hours(m, top=3) == [(0, 9, 1.0), (0, 10, 1.0), (0, 15, 1.0)]


def test_hour_of_week_on_the_dst_night() -> None:
    # 2026-10-25: 02:00-03:00 happens twice in Paris; two real hours land on the same cell.
    utc = ZoneInfo("UTC")
    row = SessionRow(
        "l",
        "laser",
        "individual",
        "a",
        datetime(2026, 10, 25, 0, tzinfo=utc),
        datetime(2026, 10, 25, 2, tzinfo=utc),
    )
    m = hour_of_week([row], PARIS)
    assert m[6][2] == 2.0


def test_utilisation_and_under_used_machines() -> None:
    week = [OpeningInterval(d, time(14), time(20)) for d in range(5)]  # 30 h a week
    assert opening_hours(week, date(2026, 10, 5), date(2026, 10, 12)) == 30
    util = utilisation(ROWS[:3], week, date(2026, 10, 5), date(2026, 10, 19))
    assert util == {"laser-1": 1.5 / 60, "printer-1": 1 / 60}
    assert under_used(util, ["laser-1", "printer-1", "cnc-1"], threshold=0.02) == [
        "cnc-1",
        "printer-1",
    ]
    with pytest.raises(ValueError, match="closes"):
        opening_hours([OpeningInterval(0, time(20), time(14))], date(2026, 1, 1), date(2026, 1, 2))


def test_members_and_trainings() -> None:
    assert unique_members(ROWS) == 3
    trainings = [
        TrainingRow("alice", "laser", date(2025, 3, 1)),
        TrainingRow("alice", "printer", date(2026, 2, 1)),
        TrainingRow("bruno", "laser", date(2026, 9, 1)),
    ]
    assert new_members_trained(trainings, date(2026, 1, 1), date(2027, 1, 1)) == 1


def test_pseudonym_is_stable_keyed_and_refuses_weak_salt() -> None:
    assert pseudonym("alice", SALT) == pseudonym("alice", SALT)
    assert pseudonym("alice", SALT) != pseudonym("bruno", SALT)
    assert pseudonym("alice", SALT) != pseudonym("alice", SALT + b"x")
    with pytest.raises(ValueError, match="16"):
        pseudonym("alice", b"short")


def test_yearly_review_has_no_names() -> None:
    trainings = (
        t
        for t in [
            TrainingRow("bruno", "laser", date(2026, 9, 1)),
            TrainingRow("x", "cnc", date(2025, 1, 1)),
        ]
    )
    review = yearly_review(
        2026, ROWS, trainings, maintenance_sign_offs=4,
        downtime=[DowntimeRow("laser-1", at(3, 1, 10), at(3, 1, 16), "tube")], salt=SALT, tz=PARIS,
    )  # fmt: skip
    assert review.activity_by_machine["printer-1"] == {
        "sessions": 2, "session_hours": 3.0, "busy_hours": 3.0, "members": 2,
    }  # fmt: skip
    assert review.activity_by_public["student"]["sessions"] == 1
    assert review.trainings_delivered == 1 and review.new_members_trained == 1
    assert review.supervised_hours == 1.0
    assert review.downtime_hours_by_machine == {"laser-1": 6.0}
    assert review.maintenance_done == 4
    text = json.dumps(asdict(review))
    for name in ("alice", "bruno", "chloe"):
        assert name not in text
    assert len(review.members) == 3


def test_downtime_is_cut_to_the_year() -> None:
    """As the review on the database does (docs/statistics.md): each side of New Year counts
    its own hours, and downtime wholly outside the year none."""
    over_new_year = DowntimeRow(
        "laser-1", datetime(2025, 12, 31, 22, tzinfo=PARIS), at(1, 1, 4), "tube"
    )
    into_2027 = DowntimeRow(
        "printer-1", at(12, 31, 23), datetime(2027, 1, 1, 1, tzinfo=PARIS), "nozzle"
    )
    before = DowntimeRow("cnc-1", datetime(2025, 6, 1, tzinfo=PARIS), at(1, 1, 0), "spindle")
    review = yearly_review(
        2026, [], [], maintenance_sign_offs=0, downtime=[over_new_year, into_2027, before],
        salt=SALT, tz=PARIS,
    )  # fmt: skip
    assert review.downtime_hours_by_machine == {"laser-1": 4.0, "printer-1": 1.0}
