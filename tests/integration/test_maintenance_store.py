"""Maintenance on SQLite and PostgreSQL: due from ingested hours, lockout, sign-off, incidents,
the calendar feed and the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.errors import Forbidden, HubError, InvalidValue, NotFound
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.domain.maintenance import DueStatus
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import (
    AuditEntry,
    Downtime,
    DowntimeCause,
    Incident,
    Machine,
    MachineType,
    MaintenanceCounter,
    MaintenanceSignOff,
    Member,
    Role,
    Training,
    TrainingLevel,
)
from hub.services.maintenance.lockout import check_lockouts
from hub.services.maintenance.signoffs import sign_off_task
from hub.services.maintenance.tasks import TaskDue, add_task, calendar, task_states
from protocol import EventType, encode_envelope, new_envelope
from tests.support.api import bearer, role_tokens

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=20)
HOUR = timedelta(hours=1)


class Feed:
    """Events through the real ingest writer, as an agent would send them."""

    def __init__(self, writer: IngestWriter, machine: str) -> None:
        self.writer, self.machine, self.seq = writer, machine, 0

    def envelope(self, kind: EventType, at: timedelta, /, **data: object) -> bytes:
        self.seq += 1
        env = new_envelope(
            machine=self.machine, type=kind, seq=self.seq, data=data, now=lambda: T0 + at
        )
        return encode_envelope(env)

    def send(self, payload: bytes) -> None:
        self.writer.write_batch([Incoming(f"atelier/v1/lab/{self.machine}/event", payload)])

    def __call__(self, kind: EventType, at: timedelta, /, **data: object) -> None:
        self.send(self.envelope(kind, at, **data))

    def busy(self, start: timedelta, hours: float) -> None:
        self(EventType.MACHINE_BUSY, start, source="laser")
        self(EventType.MACHINE_IDLE, start + hours * HOUR, source="laser", busy_s=hours * 3600)


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        # Camille also maintains the laser; Hugo only uses it.
        camille = session.exec(select(Member).where(Member.email == "camille@example.org")).one()
        laser = session.exec(select(MachineType).where(MachineType.code == "laser")).one()
        session.add(
            Training(
                member_id=camille.id,
                machine_type_id=laser.id,
                level=TrainingLevel.MAINTAINER,
                granted_at=T0,
                expires_at=T0 + timedelta(days=365),
            )
        )
        session.commit()
    try:
        yield engine
    finally:
        engine.dispose()


def _tasks(session: Session) -> None:
    add_task(
        session,
        title="clean the lens",
        actor="test",
        machine_type="laser",
        every_hours=20,
        critical=True,
        created_at=T0,
    )
    add_task(
        session,
        title="replace nozzle",
        actor="test",
        machine="printer-1",
        counter=MaintenanceCounter.PRINT,
        every_hours=300,
        created_at=T0,
    )
    add_task(
        session, title="belt check", actor="test", machine="cnc-1", every_days=14, created_at=T0
    )
    session.commit()


def _state(states: list[TaskDue], title: str, machine: str) -> TaskDue:
    return next(s for s in states if s.task.title == title and s.machine.code == machine)


def _machine(session: Session, code: str) -> Machine:
    machine = session.exec(select(Machine).where(Machine.code == code)).one()
    session.refresh(machine)
    return machine


def test_due_and_overdue_come_from_the_ingested_counters(engine) -> None:
    laser, printer = Feed(IngestWriter(engine), "laser-1"), Feed(IngestWriter(engine), "printer-1")
    laser.busy(timedelta(0), 9.0)
    laser.busy(timedelta(days=1), 10.0)  # 19 of 20 hours: within the 10 % margin
    printer(EventType.JOB_STARTED, timedelta(0), job_id="1")
    printer(EventType.JOB_FINISHED, timedelta(hours=299), job_id="1", duration_s=299 * 3600)
    with Session(engine) as session:
        _tasks(session)
        states = task_states(session, now=NOW)
        lens = _state(states, "clean the lens", "laser-1")
        assert lens.counter_hours == pytest.approx(19.0)
        assert lens.state.status is DueStatus.DUE_SOON
        assert lens.state.busy_hours_left == pytest.approx(1.0)
        nozzle = _state(states, "replace nozzle", "printer-1")
        assert nozzle.state.status is DueStatus.DUE_SOON and nozzle.counter_hours == pytest.approx(
            299
        )
        # Busy hours of the laser do not count on the printer's print counter, nor elsewhere.
        assert {s.machine.code for s in states if s.task.title == "clean the lens"} == {"laser-1"}
        belt = _state(states, "belt check", "cnc-1")
        assert belt.state.status is DueStatus.OVERDUE and belt.state.days_left == -6
        assert belt.due_on == (T0 + timedelta(days=14)).date()
    laser.busy(timedelta(days=2), 1.5)
    with Session(engine) as session:
        lens = _state(task_states(session, now=NOW), "clean the lens", "laser-1")
        assert lens.state.status is DueStatus.OVERDUE
        assert lens.state.busy_hours_left == pytest.approx(-0.5)


def test_the_check_locks_on_critical_overdue_and_the_sign_off_releases(engine) -> None:
    laser = Feed(IngestWriter(engine), "laser-1")
    laser.busy(timedelta(0), 21.0)
    with Session(engine) as session:
        _tasks(session)
        result = check_lockouts(session, now=NOW, actor="check")
        session.commit()
        # The CNC's belt check is overdue too, but not critical: the CNC stays open.
        assert result.locked == ["laser-1"] and result.changed == ["laser-1"]
        machine = _machine(session, "laser-1")
        assert machine.locked and machine.lock_reason == "maintenance overdue: #1 clean the lens"
        assert not _machine(session, "cnc-1").locked
        again = check_lockouts(session, now=NOW + HOUR, actor="check")
        session.commit()
        assert again.changed == []
        assert len(session.exec(select(Downtime)).all()) == 1
        locks = session.exec(select(AuditEntry).where(AuditEntry.action == "machine.lock")).all()
        assert [(a.actor, a.entity_id) for a in locks] == [("check", "laser-1")]

        with pytest.raises(Forbidden) as refused:
            sign_off_task(
                session, task_id=1, by_email="hugo@example.org", note="x", now=NOW, actor="t"
            )
        assert (refused.value.code, refused.value.field) == ("maintenance.not_maintainer", "by")
        assert refused.value.params == {"email": "hugo@example.org", "machine_type": "laser"}
        with pytest.raises(InvalidValue) as empty:
            sign_off_task(
                session, task_id=1, by_email="camille@example.org", note=" ", now=NOW, actor="t"
            )
        assert (empty.value.code, empty.value.field) == ("maintenance.note_empty", "note")
        with pytest.raises(NotFound) as unknown:
            sign_off_task(
                session, task_id=99, by_email="camille@example.org", note="x", now=NOW, actor="t"
            )
        assert (unknown.value.code, unknown.value.params) == (
            "maintenance.task_unknown",
            {"task": 99},
        )
        assert "no maintenance task 99" in str(unknown.value)
        done = sign_off_task(
            session,
            task_id=1,
            by_email="Camille@example.org",
            note="lens cleaned",
            now=NOW + 2 * HOUR,
            actor="t",
        )
        session.commit()
        assert done.unlocked and done.machine == "laser-1"
        assert done.sign_off.counter_hours == pytest.approx(21.0)
        assert not _machine(session, "laser-1").locked
        downtime = session.exec(select(Downtime)).one()
        assert downtime.started_at == NOW and downtime.ended_at == NOW + 2 * HOUR
        lens = _state(task_states(session, now=NOW), "clean the lens", "laser-1")
        assert lens.state.status is DueStatus.OK and lens.state.busy_hours_left == pytest.approx(20)
    laser.busy(timedelta(days=3), 20.5)
    with Session(engine) as session:
        assert check_lockouts(session, now=NOW, actor="check").locked == ["laser-1"]
        sign_off_task(
            session, task_id=1, by_email="camille@example.org", note="again", now=NOW, actor="t"
        )
        session.commit()
        history = session.exec(select(MaintenanceSignOff).order_by(MaintenanceSignOff.id)).all()
        assert [round(h.counter_hours, 2) for h in history] == [21.0, 41.5]
        assert len(session.exec(select(Downtime)).all()) == 2


def test_a_lock_put_by_a_person_is_left_alone(engine) -> None:
    Feed(IngestWriter(engine), "laser-1").busy(timedelta(0), 25.0)
    with Session(engine) as session:
        _tasks(session)
        machine = _machine(session, "laser-1")
        machine.locked, machine.lock_reason = True, "broken mirror"
        session.add(machine)
        session.commit()
        assert check_lockouts(session, now=NOW, actor="check").changed == []
        done = sign_off_task(
            session, task_id=1, by_email="camille@example.org", note="ok", now=NOW, actor="t"
        )
        session.commit()
        assert not done.unlocked
        machine = _machine(session, "laser-1")
        assert machine.locked and machine.lock_reason == "broken mirror"
        (manual,) = session.exec(select(Downtime)).all()
        assert manual.cause is DowntimeCause.MANUAL and manual.reason == "broken mirror"
        assert manual.started_at == NOW and manual.ended_at is None
        # Unlocked by hand while a critical task is overdue: the next check locks again.
        Feed(IngestWriter(engine), "laser-1").busy(timedelta(days=2), 21.0)
        machine.locked, machine.lock_reason = False, None
        session.add(machine)
        session.commit()
        assert check_lockouts(session, now=NOW + HOUR, actor="check").locked == ["laser-1"]
        session.commit()
        downtimes = session.exec(select(Downtime).order_by(Downtime.id)).all()
        assert [(d.cause, d.started_at, d.ended_at) for d in downtimes] == [
            (DowntimeCause.MANUAL, NOW, NOW + HOUR),
            (DowntimeCause.MAINTENANCE, NOW + HOUR, None),
        ]


def test_person_mistakes_in_tasks_are_named(engine) -> None:
    with Session(engine) as session:
        for kwargs, code, field in [
            ({"machine": "laser-1", "machine_type": "laser", "every_days": 3}, "scope", "machine"),
            ({"machine": "laser-9", "every_days": 3}, "machine.unknown", "machine"),
            ({"machine_type": "lathe", "every_days": 3}, "machine_type.unknown", "machine_type"),
            ({"machine": "laser-1"}, "interval_missing", "every_hours"),
            ({"machine": "laser-1", "every_hours": 0}, "interval_not_positive", "every_hours"),
            ({"machine": "laser-1", "every_days": -1}, "interval_not_positive", "every_days"),
            ({"machine": "laser-1", "every_days": 1, "title": " "}, "title_empty", "title"),
        ]:
            with pytest.raises(HubError) as refused:
                add_task(session, **{"title": "t", "actor": "test", **kwargs})
            assert refused.value.code.endswith(code) and refused.value.field == field, kwargs
        add_task(session, title="nozzle", actor="t", machine_type="printer", every_days=30)
        with pytest.raises(InvalidValue) as which:
            sign_off_task(
                session, task_id=1, by_email="camille@example.org", note="x", now=NOW, actor="t"
            )
        assert (which.value.code, which.value.field) == ("maintenance.machine_ambiguous", "machine")
        assert "several machines" in str(which.value)


def test_incident_events_open_one_ticket_each(engine) -> None:
    cnc, printer = Feed(IngestWriter(engine), "cnc-1"), Feed(IngestWriter(engine), "printer-1")
    pressed = cnc.envelope(EventType.INCIDENT_REPORTED, HOUR, source="button", member="m-1234")
    cnc.send(pressed)
    cnc.send(pressed)  # delivered twice: one ticket
    printer(
        EventType.INCIDENT_REPORTED,
        2 * HOUR,
        source="octoprint",
        kind="printer-offline",
        note="OctoPrint not answering",
    )
    with Session(engine) as session:
        tickets = session.exec(select(Incident).order_by(Incident.id)).all()
        assert [(t.source, t.kind, t.reported_by_ref) for t in tickets] == [
            ("button", "", "m-1234"),
            ("octoprint", "printer-offline", None),
        ]
        assert tickets[0].opened_at == T0 + HOUR and tickets[0].closed_at is None
    printer(
        EventType.INCIDENT_REPORTED,
        3 * HOUR,
        source="octoprint",
        kind="printer-online",
        note="OctoPrint answering again",
    )
    with Session(engine) as session:
        tickets = session.exec(select(Incident).order_by(Incident.id)).all()
        assert len(tickets) == 2 and tickets[0].closed_at is None
        assert tickets[1].closed_at == T0 + 3 * HOUR
        assert tickets[1].resolution == "OctoPrint answering again"


def test_the_calendar_feed_parses_and_holds_the_due_dates(engine) -> None:
    laser = Feed(IngestWriter(engine), "laser-1")
    # 14 busy hours in the last 28 days: half an hour a day, 6 hours left -> due in 12 days.
    for day in range(14):
        laser.busy(timedelta(days=day), 1.0)
    with Session(engine) as session:
        _tasks(session)
        long_title = "réglage du miroir, lentille; et buse — " + ", ".join(["l'alignement"] * 4)
        add_task(
            session, title=long_title, actor="t", machine="laser-1", every_days=30, created_at=T0
        )
        session.commit()
        text = calendar(session, now=NOW, site="lab")
    assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    assert "\n" not in text.replace("\r\n", "")
    parsed = icalendar.Calendar.from_ical(text)
    events = {
        str(e["SUMMARY"]): e["DTSTART"].dt for e in parsed.walk("VEVENT")
    }  # the printer has no print hours yet: no date to estimate
    assert events == {
        "laser-1: clean the lens (critical)": (NOW + timedelta(days=12)).date(),
        "cnc-1: belt check": (T0 + timedelta(days=14)).date(),
        f"laser-1: {long_title}": (T0 + timedelta(days=30)).date(),
    }
    uids = [str(e["UID"]) for e in parsed.walk("VEVENT")]
    assert len(set(uids)) == 3


def test_the_api_lists_due_tasks_serves_the_feed_and_takes_incidents(
    engine, database_url: str, tmp_path: Path
) -> None:
    Feed(IngestWriter(engine), "laser-1").busy(timedelta(0), 21.0)
    with Session(engine) as session:
        _tasks(session)
    app = create_app(
        get_settings(None, database_url=database_url, data_dir=tmp_path), start_ingest=False
    )
    with TestClient(app) as client:
        client.headers.update(bearer(role_tokens(engine)[Role.MAINTAINER]))
        tasks = client.get("/api/v1/maintenance/tasks", params={"machine": "laser-1"}).json()
        assert [(t["title"], t["status"], t["critical"]) for t in tasks] == [
            ("clean the lens", "overdue", True)
        ]
        assert tasks[0]["hours_left"] == pytest.approx(-1.0)
        feed = client.get("/api/v1/maintenance/calendar.ics")
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
        assert len(icalendar.Calendar.from_ical(feed.text).walk("VEVENT")) == 2
        created = client.post(
            "/api/v1/maintenance/incidents",
            json={"machine": "cnc-1", "text": "dust extraction weak", "reported_by": "front desk"},
        )
        assert created.status_code == 201, created.text
        assert created.json()["source"] == "web" and created.json()["machine"] == "cnc-1"
        assert (
            client.post(
                "/api/v1/maintenance/incidents", json={"machine": "cnc-9", "text": "x"}
            ).status_code
            == 404
        )
        assert (
            client.post(
                "/api/v1/maintenance/incidents", json={"machine": "cnc-1", "text": ""}
            ).status_code
            == 422
        )
        listed = client.get("/api/v1/maintenance/incidents").json()
        assert [i["text"] for i in listed] == ["dust extraction weak"]


def test_the_commands_name_a_person_s_mistake_and_exit_2(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from atelier_cli import app

    migrate(sqlite_url)
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "hub"))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["hub", *args])
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    code, out = run("maintenance", "task", "add", "--title", "t", "--machine", "cnc-1",
                    "--every-hours", "3", "--counter", "beam")  # fmt: skip
    assert code == 2 and "--counter: 'beam' is not one of busy" in out
    code, out = run("maintenance", "task", "add", "--title", "t", "--machine", "cnc-9",
                    "--every-days", "3")  # fmt: skip
    assert code == 2 and "--machine: no machine 'cnc-9' (known: cnc-1, laser-1" in out
    code, out = run("maintenance", "task", "add", "--title", "belt", "--machine", "cnc-1",
                    "--every-days", "90")  # fmt: skip
    assert code == 0 and "task 1 added" in out and "cnc-1: ok" in out
    code, out = run("maintenance", "sign-off", "1", "--by", "ines@example.org", "--note", "ok")
    assert code == 2 and "--by: ines@example.org holds no valid maintainer training" in out
    code, out = run("maintenance", "sign-off", "1", "--by", "nobody@example.org", "--note", "ok")
    assert code == 2 and "--by: no member with email nobody@example.org" in out
    code, out = run("maintenance", "sign-off", "7", "--by", "camille@example.org", "--note", "ok")
    assert code == 2 and "no maintenance task 7" in out
    code, out = run("maintenance", "sign-off", "1", "--by", "camille@example.org", "--note", "ok")
    assert code == 0 and "task 1 signed off on cnc-1" in out
    code, out = run("maintenance", "due", "--all")
    assert code == 0 and "cnc-1" in out and "belt" in out
    code, out = run("incident", "open", "cnc-9", "--text", "smoke")
    assert code == 2 and "no machine 'cnc-9'" in out
    code, out = run("incident", "close", "4", "--note", "x")
    assert code == 2 and "no incident 4" in out
