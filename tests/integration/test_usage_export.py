"""Usage statistics and the yearly review from a small lab whose figures are worked by hand."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.domain.statistics import SessionRow, hour_of_week, usage_by
from hub.models import (
    BusyPeriod,
    Machine,
    MachineSession,
    MachineType,
    Member,
    MemberCategory,
    PrintJob,
    Training,
    TrainingLevel,
)
from hub.reports.review import yearly_review
from hub.reports.usage import usage_report

PARIS = ZoneInfo("Europe/Paris")
runner = CliRunner()

# Who they are must never reach the review: every one of these strings is searched for.
PEOPLE = {
    "m-a11ce001": ("Alice Martinez", "alice.martinez@example.org", MemberCategory.INDIVIDUAL),
    "m-b2un0002": ("Bruno Lefebvre", "bruno.lefebvre@example.org", MemberCategory.STUDENT),
    "m-c3l0e003": ("Chloe Dubreuil", "chloe.dubreuil@example.org", MemberCategory.PROFESSIONAL),
    "m-d4en1004": ("Denis Vautrin", "denis.vautrin@example.org", MemberCategory.STAFF),
}
SECRETS = [s for name, email, _ in PEOPLE.values() for s in (name, email, name.split()[1])]
ALICE, BRUNO, CHLOE, DENIS = PEOPLE


def paris(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=PARIS)


@dataclass
class Lab:
    url: str
    engine: Engine


def _fill(session: Session) -> None:
    laser = MachineType(code="laser", name="Laser cutters")
    printer = MachineType(code="printer", name="3D printers")
    session.add_all([laser, printer])
    session.flush()
    machines = {
        "laser-1": Machine(code="laser-1", name="Trotec", site="lab", machine_type_id=laser.id),
        "printer-1": Machine(
            code="printer-1", name="Prusa", site="lab", machine_type_id=printer.id
        ),
        "printer-2": Machine(
            code="printer-2", name="Prusa", site="lab", machine_type_id=printer.id
        ),
    }
    session.add_all(machines.values())
    members = {
        ref: Member(ref=ref, name=name, email=email, category=cat)
        for ref, (name, email, cat) in PEOPLE.items()
    }
    session.add_all(members.values())
    session.flush()

    def trained(ref: str, kind: MachineType, when: datetime, level: TrainingLevel) -> Training:
        return Training(
            member_id=members[ref].id,
            machine_type_id=kind.id,
            level=level,
            granted_by_id=members[DENIS].id,
            granted_at=when,
        )

    session.add_all(
        [
            trained(DENIS, laser, paris(2024, 1, 10, 10), TrainingLevel.TRAINER),
            trained(ALICE, laser, paris(2025, 11, 10, 18), TrainingLevel.USER),
            trained(ALICE, printer, paris(2026, 3, 1, 15), TrainingLevel.USER),  # not new
            trained(BRUNO, laser, paris(2026, 2, 1, 15), TrainingLevel.USER),  # new in 2026
            trained(CHLOE, printer, paris(2026, 10, 1, 15), TrainingLevel.USER),  # new in 2026
        ]
    )

    def sess(
        sid: str, machine: str, ref: str, start: datetime, end: datetime | None, busy: float
    ) -> MachineSession:
        return MachineSession(
            id=sid,
            site="lab",
            machine=machine,
            member_ref=ref,
            started_at=start,
            ended_at=end,
            duration_s=(end - start).total_seconds() if end else None,
            busy_s=busy,
        )

    supervised = sess("s2", "laser-1", BRUNO, paris(2026, 10, 7, 14), paris(2026, 10, 7, 15), 1800)
    supervised.mode, supervised.supervisor_ref = "supervised", DENIS
    session.add_all(
        [
            # Tuesday 14:30-16:00
            sess("s1", "laser-1", ALICE, paris(2026, 10, 6, 14, 30), paris(2026, 10, 6, 16), 3600),
            supervised,  # Wednesday 14:00-15:00
            # Tuesday 23:30 to Wednesday 00:30: two hours of the week, one month
            sess(
                "s3",
                "printer-1",
                ALICE,
                paris(2026, 10, 13, 23, 30),
                paris(2026, 10, 14, 0, 30),
                3600,
            ),
            # Tuesday 09:00-11:00, winter time
            sess("s4", "printer-1", CHLOE, paris(2026, 11, 3, 9), paris(2026, 11, 3, 11), 7200),
            # Thursday 31 December 23:30 (22:30 UTC) into the next year: a 2026 session
            sess("s7", "laser-1", BRUNO, paris(2026, 12, 31, 23, 30), paris(2027, 1, 1, 0, 15), 0),
            # Left out: started in 2025 (local), started in 2027, still open
            sess("s5", "laser-1", ALICE, paris(2025, 12, 31, 23), paris(2026, 1, 1, 0, 30), 600),
            sess("s6", "printer-1", CHLOE, paris(2027, 1, 1, 0, 10), paris(2027, 1, 1, 1), 600),
            sess("s8", "printer-1", CHLOE, paris(2026, 12, 1, 10), None, 0),
        ]
    )

    def busy(machine: str, start: datetime, seconds: float | None, sid: str) -> BusyPeriod:
        end = None if seconds is None else datetime.fromtimestamp(start.timestamp() + seconds, UTC)
        return BusyPeriod(
            site="lab",
            machine=machine,
            source="input",
            session_id=sid,
            started_at=start,
            ended_at=end,
            busy_s=seconds,
        )

    session.add_all(
        [
            busy("laser-1", paris(2026, 10, 6, 14, 40), 3600, "s1"),
            busy("laser-1", paris(2026, 10, 7, 14, 10), 1800, "s2"),
            busy("printer-1", paris(2026, 10, 13, 23, 30), 3600, "s3"),
            busy("printer-1", paris(2026, 11, 3, 9), 7200, "s4"),
            # The print runs on two hours after the badge-out: the machine's busy time.
            busy("printer-1", paris(2026, 11, 3, 11), 7200, "s4"),
            busy("laser-1", paris(2025, 12, 31, 23, 10), 600, "s5"),  # 2025
            busy("printer-1", paris(2026, 12, 1, 10, 5), None, "s8"),  # still busy
        ]
    )

    def job(jid: str, start: datetime, seconds: float, state: str) -> PrintJob:
        return PrintJob(
            id=f"printer-1:{jid}",
            site="lab",
            machine="printer-1",
            job_id=jid,
            file=f"{PEOPLE[ALICE][0]} bracket.gcode",
            member_ref=ALICE,
            started_at=start,
            ended_at=datetime.fromtimestamp(start.timestamp() + seconds, UTC),
            duration_s=seconds,
            state=state,
        )

    session.add_all(
        [
            job("1", paris(2026, 10, 13, 23, 35), 3000, "finished"),
            job("2", paris(2026, 11, 3, 9, 10), 600, "failed"),
            job("0", paris(2025, 6, 1, 10), 600, "finished"),
        ]
    )
    session.flush()
    _fill_maintenance(session, machines["laser-1"], members[DENIS])
    session.commit()


def _fill_maintenance(session: Session, laser: Machine, denis: Member) -> None:
    from hub.models import Downtime, Incident, MaintenanceSignOff, MaintenanceTaskRow

    task = MaintenanceTaskRow(title="clean the lens", machine_id=laser.id, every_hours=20)
    session.add(task)
    session.flush()
    note = f"done with {PEOPLE[ALICE][0]} watching"
    session.add_all(
        [
            MaintenanceSignOff(
                task_id=task.id,
                machine_id=laser.id,
                member_id=denis.id,
                signed_at=paris(2026, 10, 20, 10),
                counter_hours=21.0,
                note=note,
            ),
            MaintenanceSignOff(
                task_id=task.id,
                machine_id=laser.id,
                member_id=denis.id,
                signed_at=paris(2025, 10, 20, 10),
                counter_hours=20.5,
            ),
            Incident(
                machine_id=laser.id,
                source="web",
                reported_by=PEOPLE[ALICE][1],
                text=note,
                opened_at=paris(2026, 10, 19, 18),
            ),
            # 31 December 20:00 to 2 January: four hours fall in 2026
            Downtime(
                machine_id=laser.id,
                started_at=paris(2026, 12, 31, 20),
                ended_at=paris(2027, 1, 2, 12),
                reason=note,
            ),
            Downtime(
                machine_id=laser.id,
                started_at=paris(2026, 10, 19, 18),
                ended_at=paris(2026, 10, 20, 10, 30),
                reason="lens",
            ),
        ]
    )


@pytest.fixture
def lab(database_url: str) -> Iterator[Lab]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        _fill(session)
    try:
        yield Lab(database_url, engine)
    finally:
        engine.dispose()


@pytest.fixture
def cli_env(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.setenv("ATELIER_DATABASE_URL", lab.url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ATELIER_TIMEZONE", "Europe/Paris")
    monkeypatch.delenv("ATELIER_CONFIG", raising=False)
    return lab


def report_2026(lab: Lab, **options: Any) -> Any:
    return usage_report(
        lab.engine, start=date(2026, 1, 1), end=date(2027, 1, 1), tz=PARIS, **options
    )


# --- the figures --------------------------------------------------------------------------
def test_the_year_s_figures_are_worked_by_hand(lab: Lab) -> None:
    report = report_2026(lab)
    # 2026 starts on a Thursday: 52 of each weekday and 53 Thursdays; Tue-Sat 5 h a day.
    assert report.opening_hours == 261 * 5
    assert report.totals == {
        "sessions": 5,
        "session_hours": 6.25,  # 1.5 + 1 + 1 + 2 + 0.75
        "busy_hours": 4.5,
        "unique_members": 3,
        "new_members_trained": 2,  # Bruno and Chloe; Alice was first trained in 2025
        "trainings_delivered": 3,
        "supervised_sessions": 1,
        "supervised_hours": 1.0,
        "machine_busy_hours": 6.5,  # laser 1.5, printer 3 in sessions + 2 after a badge-out
        "jobs": 2,
        "jobs_failed": 1,
        "machines": 3,
        "opening_hours": 1305.0,
        "utilisation": round(6.5 / (1305 * 3), 4),
    }
    assert report.by_machine["laser-1"] == {
        "machine_type": "laser",
        "sessions": 3,
        "session_hours": 3.25,
        "busy_hours": 1.5,
        "members": 2,
        "machine_busy_hours": 1.5,
        "jobs": 0,
        "jobs_failed": 0,
        "job_hours": 0.0,
        "utilisation": round(1.5 / 1305, 4),
    }
    assert report.by_machine["printer-1"]["machine_busy_hours"] == 5.0
    assert report.by_machine["printer-1"]["job_hours"] == 1.0
    assert report.by_machine["printer-2"]["sessions"] == 0  # known, never used
    assert report.by_machine_type == {
        "laser": {"sessions": 3, "session_hours": 3.25, "busy_hours": 1.5, "members": 2},
        "printer": {"sessions": 2, "session_hours": 3.0, "busy_hours": 3.0, "members": 2},
    }
    assert report.by_category == {
        "individual": {"sessions": 2, "session_hours": 2.5, "busy_hours": 2.0, "members": 1},
        "professional": {"sessions": 1, "session_hours": 2.0, "busy_hours": 2.0, "members": 1},
        "student": {"sessions": 2, "session_hours": 1.75, "busy_hours": 0.5, "members": 1},
    }
    assert {k: v["sessions"] for k, v in report.by_period.items()} == {
        "2026-10": 3,
        "2026-11": 1,
        "2026-12": 1,
    }
    tue, wed, thu, fri = 1, 2, 3, 4
    cells = {(d, h): v for d, row in enumerate(report.hour_of_week) for h, v in enumerate(row) if v}
    assert cells == {
        (tue, 14): 0.5,
        (tue, 15): 1.0,
        (wed, 14): 1.0,
        (tue, 23): 0.5,
        (wed, 0): 0.5,
        (tue, 9): 1.0,
        (tue, 10): 1.0,
        (thu, 23): 0.5,
        (fri, 0): 0.25,
    }
    assert [b["key"] for b in report.busiest_hours] == [
        "tue 09:00",
        "tue 10:00",
        "tue 15:00",
        "wed 14:00",
        "tue 14:00",
    ]


def test_under_used_machines_against_the_opening_hours_given(lab: Lab) -> None:
    report = report_2026(lab, opening_spec="tue 14:00-15:00", under_used_threshold=0.05)
    assert report.opening_hours == 52  # one hour on each Tuesday
    assert report.by_machine["laser-1"]["utilisation"] == round(1.5 / 52, 4)
    assert report.by_machine["printer-1"]["utilisation"] == round(5 / 52, 4)
    assert report.under_used == [
        {"machine": "laser-1", "utilisation": round(1.5 / 52, 4)},
        {"machine": "printer-2", "utilisation": 0.0},
    ]
    by_week = report_2026(lab, period="week").by_period
    assert list(by_week) == ["2026-W41", "2026-W42", "2026-W45", "2026-W53"]


def test_the_streamed_figures_are_those_of_the_pure_rules(lab: Lab) -> None:
    """The one-pass tally and the reference functions of hub/domain agree on the same rows."""
    with Session(lab.engine) as session:
        types = {
            m.code: t.code
            for m, t in session.exec(
                select(Machine, MachineType).where(Machine.machine_type_id == MachineType.id)
            )
        }
        cats = {m.ref: m.category.value for m in session.exec(select(Member))}
        rows = [
            SessionRow(
                s.machine,
                types[s.machine],
                cats[s.member_ref],
                s.member_ref,
                s.started_at,
                s.ended_at,
                int(s.busy_s),
                s.mode == "supervised",
            )
            for s in session.exec(select(MachineSession))
            if s.ended_at
            and s.started_at
            and date(2026, 1, 1) <= s.started_at.astimezone(PARIS).date() < date(2027, 1, 1)
        ]
    report = report_2026(lab)
    for key, ours in (
        ("machine_type", report.by_machine_type),
        ("category", report.by_category),
        ("period", report.by_period),
    ):
        pure = usage_by(rows, key, tz=PARIS)  # type: ignore[arg-type]
        assert {
            k: (u.sessions, round(u.session_hours, 4), round(u.busy_hours, 4), len(u.members))
            for k, u in pure.items()
        } == {
            k: (v["sessions"], v["session_hours"], v["busy_hours"], v["members"])
            for k, v in ours.items()
            if v["sessions"]
        }
    assert [[round(v, 4) for v in r] for r in hour_of_week(rows, PARIS)] == report.hour_of_week


# --- the three formats --------------------------------------------------------------------
def _n(value: Any) -> str:
    """A number as the same text whatever the format kept (XLSX gives 1.0 back as 1)."""
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def _triples_from_json(doc: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    out = {("totals", "all", k, _n(v)) for k, v in doc["totals"].items()}
    for table in ("by_machine", "by_machine_type", "by_category", "by_period"):
        for key, figures in doc[table].items():
            out |= {(table, key, m, _n(v)) for m, v in figures.items()}
    for day, row in doc["hour_of_week"].items():
        out |= {
            ("hour_of_week", f"{day} {h:02d}:00", "session_hours", _n(v)) for h, v in enumerate(row)
        }
    for b in doc["busiest_hours"]:
        out |= {
            ("busiest_hours", b["key"], "rank", _n(b["rank"])),
            ("busiest_hours", b["key"], "session_hours", _n(b["session_hours"])),
        }
    out |= {
        ("under_used", u["machine"], "utilisation", _n(u["utilisation"])) for u in doc["under_used"]
    }
    return out


def _triples_from_xlsx(path: Path) -> set[tuple[str, str, str, str]]:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True)
    out: set[tuple[str, str, str, str]] = set()
    for sheet in book.worksheets:
        rows = list(sheet.iter_rows(values_only=True))
        header, body = rows[0], rows[1:]
        for row in body:
            if sheet.title == "totals":
                out.add(("totals", "all", str(row[0]), _n(row[1])))
            elif sheet.title == "hour_of_week":
                out |= {
                    ("hour_of_week", f"{row[0]} {h}:00", "session_hours", _n(v))
                    for h, v in zip(header[1:], row[1:], strict=True)
                }
            else:
                out |= {
                    (sheet.title, str(row[0]), str(m), _n(v))
                    for m, v in zip(header[1:], row[1:], strict=True)
                }
    return out


def test_csv_xlsx_and_json_carry_the_same_figures(cli_env: Lab, tmp_path: Path) -> None:
    window = ["hub", "export", "usage", "--from", "2026-01-01", "--to", "2027-01-01"]
    as_json = runner.invoke(app, [*window, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert doc["totals"]["sessions"] == 5 and doc["by_machine"]["printer-1"]["jobs"] == 2

    as_csv = runner.invoke(app, [*window, "--format", "csv", "--out", str(tmp_path / "u.csv")])
    assert as_csv.exit_code == 0, as_csv.output
    with (tmp_path / "u.csv").open(newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["table", "key", "measure", "value"]
        from_csv = {(t, k, m, _n(v)) for t, k, m, v in reader}

    xlsx = tmp_path / "u.xlsx"
    as_xlsx = runner.invoke(app, [*window, "--format", "xlsx", "--out", str(xlsx)])
    assert as_xlsx.exit_code == 0, as_xlsx.output

    from_json = _triples_from_json(doc)
    assert ("by_category", "student", "session_hours", "1.75") in from_json
    assert len(from_json) > 150
    assert from_csv == from_json
    assert _triples_from_xlsx(xlsx) == from_json


def test_the_detail_csv_has_one_row_per_session_and_no_names(cli_env: Lab, tmp_path: Path) -> None:
    out = tmp_path / "sessions.csv"
    result = runner.invoke(
        app,
        [
            "hub",
            "export",
            "usage",
            "--from",
            "2026-01-01",
            "--to",
            "2027-01-01",
            "--format",
            "csv",
            "--detail",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(newline="")))
    assert [r["session"] for r in rows] == ["s1", "s2", "s3", "s4", "s7"]
    assert rows[0]["started_at"] == "2026-10-06T14:30:00+02:00"
    assert rows[3]["started_at"] == "2026-11-03T09:00:00+01:00"
    assert rows[1]["category"] == "student" and rows[1]["supervisor"] == DENIS
    assert sum(float(r["session_hours"]) for r in rows) == 6.25
    text = out.read_text()
    assert not [s for s in SECRETS if s in text]

    detail_json = runner.invoke(
        app,
        [
            "hub",
            "export",
            "usage",
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-01",
            "--format",
            "json",
            "--detail",
        ],
    )
    doc = json.loads(detail_json.stdout)
    assert [s["session"] for s in doc["sessions"]] == ["s1", "s2", "s3"]
    assert doc["totals"]["sessions"] == 3


# --- the yearly review --------------------------------------------------------------------
def test_the_review_s_figures(lab: Lab) -> None:
    review = yearly_review(lab.engine, 2026, tz=PARIS, now=datetime(2027, 2, 1, tzinfo=UTC))
    assert review.trainings_by_type == {"laser": 1, "printer": 2}
    assert review.usage.totals["supervised_hours"] == 1.0
    assert review.maintenance.available
    assert review.maintenance.by_machine == {
        # 19 Oct 18:00 to 20 Oct 10:30 (16.5 h) and 31 Dec 20:00 to midnight (4 h)
        "laser-1": {"sign_offs": 1, "incidents": 1, "downtime_hours": 20.5}
    }
    assert set(review.members) == {ALICE, BRUNO, CHLOE}
    assert review.members[ALICE] == {
        "category": "individual",
        "sessions": 2,
        "session_hours": 2.5,
        "busy_hours": 2.0,
        "members": 1,
    }


def test_the_review_names_nobody(cli_env: Lab, tmp_path: Path) -> None:
    from openpyxl import load_workbook
    from pypdf import PdfReader

    pdf, xlsx = tmp_path / "review.pdf", tmp_path / "review.xlsx"
    for fmt, out in (("pdf", pdf), ("xlsx", xlsx)):
        result = runner.invoke(
            app, ["hub", "export", "review", "--year", "2026", "--format", fmt, "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    # The extraction works: the figures are there...
    for expected in ("Yearly review 2026", "laser-1", "printer-2", "professional", "20.5"):
        assert expected in text, expected
    # ...and nobody's name or email is.
    assert not [s for s in SECRETS if s.lower() in text.lower()]
    cells = [
        str(value)
        for sheet in load_workbook(xlsx, read_only=True).worksheets
        for row in sheet.iter_rows(values_only=True)
        for value in row
        if value is not None
    ]
    assert {ALICE, BRUNO, CHLOE} <= set(cells)  # members by reference
    assert not [s for s in SECRETS for c in cells if s.lower() in c.lower()]


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["usage", "--from", "2026-13-01", "--to", "2027-01-01"], "--from: '2026-13-01'"),
        (["usage", "--from", "2026-01-01", "--to", "1/1/2027"], "--to: '1/1/2027'"),
        (
            ["usage", "--from", "2026-06-01", "--to", "2026-01-01"],
            "--to: 2026-01-01 is not after the first day, 2026-06-01",
        ),
        (
            ["usage", "--from", "2026-01-01", "--to", "2027-01-01", "--format", "pdf"],
            "--format: 'pdf' is not one of csv, xlsx, json",
        ),
        (
            ["usage", "--from", "2026-01-01", "--to", "2027-01-01", "--format", "xlsx"],
            "--out: an XLSX file needs a name",
        ),
        (
            ["usage", "--from", "2026-01-01", "--to", "2027-01-01", "--opening-hours", "tue 2-5"],
            "--opening-hours: '2-5'",
        ),
        (
            [
                "usage",
                "--from",
                "2026-01-01",
                "--to",
                "2027-01-01",
                "--opening-hours",
                "tues 14:00-19:00",
            ],
            "--opening-hours: 'tues'",
        ),
        (
            ["usage", "--from", "2026-01-01", "--to", "2027-01-01", "--period", "year"],
            "--period: 'year'",
        ),
        (
            ["review", "--year", "2026", "--format", "docx", "--out", "r.docx"],
            "--format: 'docx' is not one of pdf, xlsx",
        ),
        (["review", "--year", "26", "--out", "r.pdf"], "--year: 26"),
    ],
)
def test_bad_input_is_named_and_exits_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(app, ["hub", "export", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("r.*"))


# --- the API ------------------------------------------------------------------------------
def test_the_api_serves_the_same_figures(lab: Lab, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from openpyxl import load_workbook

    from hub.app import create_app
    from hub.auth import create_user, issue_token
    from hub.core.settings import get_settings
    from hub.models import Role
    from tests.support.api import PASSWORD, bearer

    settings = get_settings(None, database_url=lab.url, data_dir=tmp_path, timezone="Europe/Paris")
    with Session(lab.engine) as session:
        manager = create_user(session, username="manager", password=PASSWORD, role=Role.MANAGER)
        token, _ = issue_token(session, manager, name="tests")
        session.commit()
    with TestClient(create_app(settings, start_ingest=False), headers=bearer(token)) as client:
        window = {"from": "2026-01-01", "to": "2027-01-01"}
        doc = client.get("/api/v1/stats/usage", params=window).json()
        assert doc == json.loads(json.dumps(report_2026(lab).as_dict()))

        streamed = client.get("/api/v1/stats/usage", params={**window, "format": "csv"})
        assert streamed.headers["content-type"].startswith("text/csv")
        rows = {(t, k, m, _n(v)) for t, k, m, v in csv.reader(io.StringIO(streamed.text))}
        assert rows - {("table", "key", "measure", "value")} == _triples_from_json(doc)

        detail = client.get(
            "/api/v1/stats/usage", params={**window, "format": "csv", "detail": "true"}
        )
        assert len(detail.text.strip().splitlines()) == 1 + 5

        xlsx = client.get("/api/v1/stats/usage", params={**window, "format": "xlsx"})
        (tmp_path / "api.xlsx").write_bytes(xlsx.content)
        assert _triples_from_xlsx(tmp_path / "api.xlsx") == _triples_from_json(doc)

        review = client.get("/api/v1/stats/review", params={"year": 2026, "format": "xlsx"})
        assert review.status_code == 200
        (tmp_path / "review.xlsx").write_bytes(review.content)
        assert "members" in load_workbook(tmp_path / "review.xlsx").sheetnames
        pdf = client.get("/api/v1/stats/review", params={"year": 2026})
        assert pdf.content.startswith(b"%PDF")

        backwards = client.get(
            "/api/v1/stats/usage", params={"from": "2027-01-01", "to": "2026-01-01"}
        )
        assert backwards.status_code == 422
        assert (backwards.json()["code"], backwards.json()["field"]) == (
            "stats.window_backwards",
            "to",
        )
        assert (
            client.get("/api/v1/stats/usage", params={**window, "format": "pdf"}).status_code == 422
        )
        assert client.get("/api/v1/stats/review", params={"year": "soon"}).status_code == 422


# --- the web page -------------------------------------------------------------------------
def test_the_stats_page_draws_the_figures_and_names_the_box_at_fault(
    lab: Lab, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from hub.app import create_app
    from hub.auth import create_user, issue_token
    from hub.core.settings import get_settings
    from hub.models import Role
    from hub.web.i18n import LANG_COOKIE
    from tests.support.api import PASSWORD, bearer

    settings = get_settings(None, database_url=lab.url, data_dir=tmp_path, timezone="Europe/Paris")
    with Session(lab.engine) as session:
        manager = create_user(session, username="manager", password=PASSWORD, role=Role.MANAGER)
        token, _ = issue_token(session, manager, name="tests")
        session.commit()
    with TestClient(create_app(settings, start_ingest=False), headers=bearer(token)) as client:
        page = client.get("/web/stats", params={"from": "2026-01-01", "to": "2027-01-01"})
        assert page.status_code == 200
        assert f"<strong>{report_2026(lab).totals['sessions']}</strong>" in page.text

        client.cookies.set(LANG_COOKIE, "fr")
        backwards = client.get("/web/stats", params={"from": "2027-01-01", "to": "2026-01-01"})
        assert backwards.status_code == 422
        assert "Au (le lendemain) : 2026-01-01 n&#39;est pas après le premier jour" in (
            backwards.text
        )
        far = client.get("/web/stats", params={"to": "0001-01-01"})
        assert far.status_code == 422 and "hors limites" in far.text
