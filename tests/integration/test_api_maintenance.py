"""The maintenance writes of the API: a task signed off (its counter reset, the machine
released when its lockout came from that task) and an incident closed, as the web does them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import (
    AuditEntry,
    BusyPeriod,
    Downtime,
    DowntimeCause,
    Incident,
    Machine,
    MaintenanceSignOff,
    Role,
)
from hub.services.maintenance.lockout import check_lockouts
from hub.services.maintenance.records import open_incident
from hub.services.maintenance.tasks import add_task
from tests.e2e.web import csrf_of, sign_in
from tests.support.api import PASSWORD, bearer, role_tokens

# Camille (the maintainer login) maintains the CNC and only trains on the laser (hub/demo/seed.py).
MAINTAINER_ACTOR = "user:test-maintainer"


@dataclass
class Published:
    """Stands in for the allow-list publisher: which machines' lists were re-published."""

    calls: list[list[str] | None] = field(default_factory=list)

    def publish(self, machine_codes: list[str] | None = None) -> None:
        self.calls.append(machine_codes)


@dataclass
class Lab:
    client: TestClient
    engine: Engine
    tokens: dict[Role, str]
    published: Published

    def headers(self, role: Role) -> dict[str, str]:
        return bearer(self.tokens[role])

    def sign_off(self, task_id: int, body: dict[str, Any], role: Role = Role.MAINTAINER) -> Any:
        return self.client.post(
            f"/api/v1/maintenance/tasks/{task_id}/sign-off", json=body, headers=self.headers(role)
        )

    def machine(self, code: str) -> Machine:
        with Session(self.engine) as session:
            machine = session.exec(select(Machine).where(Machine.code == code)).one()
            session.expunge(machine)
            return machine

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with Session(self.engine) as session:
            return list(session.exec(select(model).where(*where)).all())


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    tokens = role_tokens(engine)
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    try:
        with TestClient(create_app(settings, start_ingest=False)) as client:
            published = Published()
            client.app.state.publisher = published  # type: ignore[attr-defined]
            yield Lab(client, engine, tokens, published)
    finally:
        engine.dispose()


def _busy(engine: Engine, machine: str, hours: float) -> None:
    """`hours` of finished busy time on the machine, a day ago."""
    start = datetime.now(UTC) - timedelta(days=1)
    with Session(engine) as session:
        session.add(
            BusyPeriod(
                site="lab",
                machine=machine,
                source="test",
                started_at=start,
                ended_at=start + timedelta(hours=hours),
                busy_s=hours * 3600,
            )
        )
        session.commit()


def _critical_tasks(engine: Engine, *titles: str) -> list[int]:
    """Critical tasks on cnc-1 every 10 busy hours; with 12 hours used, the check locks it."""
    ids = []
    with Session(engine) as session:
        for title in titles:
            task = add_task(
                session,
                title=title,
                actor="test",
                machine="cnc-1",
                every_hours=10,
                critical=True,
            )
            ids.append(task.id or 0)
        session.commit()
    _busy(engine, "cnc-1", 12)
    with Session(engine) as session:
        result = check_lockouts(session, now=datetime.now(UTC), actor="test")
        session.commit()
    assert result.locked == ["cnc-1"]
    return ids


def _due(lab: Lab, task_id: int) -> dict[str, Any]:
    tasks = lab.client.get(
        "/api/v1/maintenance/tasks",
        params={"machine": "cnc-1"},
        headers=lab.headers(Role.MAINTAINER),
    ).json()
    return next(t for t in tasks if t["task_id"] == task_id)


def test_a_sign_off_resets_the_counter_and_releases_the_lockout_of_that_task(lab: Lab) -> None:
    (task_id,) = _critical_tasks(lab.engine, "Clean the spindle")
    assert lab.machine("cnc-1").locked
    assert _due(lab, task_id)["status"] == "overdue"

    # The task is for one machine: no need to name it.
    answer = lab.sign_off(task_id, {"note": "spindle cleaned, collet replaced"})

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["task_id"] == task_id and body["machine"] == "cnc-1"
    assert body["counter"] == "busy" and body["counter_hours"] == pytest.approx(12)
    assert body["unlocked"] is True and body["still_overdue"] == []
    (row,) = lab.rows(MaintenanceSignOff, MaintenanceSignOff.task_id == task_id)
    assert row.note == "spindle cleaned, collet replaced" and row.counter_hours == pytest.approx(12)
    assert row.id == body["id"]
    machine = lab.machine("cnc-1")
    assert not machine.locked and machine.lock_reason is None
    (downtime,) = lab.rows(Downtime, Downtime.cause == DowntimeCause.MAINTENANCE)
    assert downtime.ended_at is not None
    due = _due(lab, task_id)  # the counter starts again: all ten hours left
    assert due["status"] == "ok" and due["hours_left"] == pytest.approx(10)
    actions = {
        (a.action, a.actor)
        for a in lab.rows(
            AuditEntry, col(AuditEntry.action).in_(["maintenance.sign_off", "machine.unlock"])
        )
    }
    assert actions == {
        ("maintenance.sign_off", MAINTAINER_ACTOR),
        ("machine.unlock", MAINTAINER_ACTOR),
    }
    assert lab.published.calls == [["cnc-1"]]  # the agent hears of the release at once


def test_the_machine_stays_locked_while_another_critical_task_is_overdue(lab: Lab) -> None:
    first, second = _critical_tasks(lab.engine, "Clean the spindle", "Check the belts")

    one = lab.sign_off(first, {"machine": "cnc-1", "note": "spindle cleaned"})
    assert one.status_code == 201, one.text
    assert one.json()["unlocked"] is False
    assert one.json()["still_overdue"] == [f"#{second} Check the belts"]
    assert lab.machine("cnc-1").locked
    assert lab.published.calls == []  # nothing changed for the agent

    two = lab.sign_off(second, {"note": "belts tensioned"})
    assert two.status_code == 201, two.text
    assert two.json()["unlocked"] is True
    assert not lab.machine("cnc-1").locked


def test_a_lock_put_by_a_person_is_not_released_by_a_sign_off(lab: Lab) -> None:
    with Session(lab.engine) as session:
        task = add_task(session, title="Oil the rails", actor="test", machine="cnc-1", every_days=7)
        session.commit()
        task_id = task.id
    locked = lab.client.post(
        "/api/v1/machines/cnc-1/lock",
        json={"reason": "spindle noise"},
        headers=lab.headers(Role.MAINTAINER),
    )
    assert locked.status_code == 200, locked.text

    answer = lab.sign_off(task_id or 0, {"note": "rails oiled"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["unlocked"] is False
    machine = lab.machine("cnc-1")
    assert machine.locked and machine.lock_reason == "spindle noise"


def test_a_refused_sign_off_says_why_and_saves_nothing(lab: Lab) -> None:
    (task_id,) = _critical_tasks(lab.engine, "Clean the spindle")
    with Session(lab.engine) as session:
        laser_task = add_task(
            session, title="Clean the lens", actor="test", machine="laser-1", every_hours=20
        )
        session.commit()
        laser_task_id = laser_task.id
    unknown = lab.sign_off(9999, {"note": "done"})
    assert unknown.status_code == 404 and "no maintenance task 9999" in unknown.json()["detail"]
    # The service's HubError: its stable code, the field and the params beside the words.
    assert {k: unknown.json()[k] for k in ("code", "field", "params")} == {
        "code": "maintenance.task_unknown",
        "field": "task_id",
        "params": {"task": 9999},
    }
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({"note": "  "}, "note"),
        ({}, "note"),
        ({"note": "x" * 2001}, "note"),
        ({"note": "done", "machine": "x" * 64}, "machine"),
    ]
    for body, wrong in bad_bodies:
        answer = lab.sign_off(task_id, body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["body", wrong], body
    elsewhere = lab.sign_off(task_id, {"machine": "laser-1", "note": "done"})
    assert elsewhere.status_code == 422
    assert elsewhere.json()["detail"][0]["loc"] == ["body", "machine"]
    assert "is for cnc-1, not laser-1" in elsewhere.json()["detail"][0]["msg"]
    assert elsewhere.json()["code"] == "maintenance.task_other_machine"
    assert elsewhere.json()["field"] == "machine"
    # Camille trains on the laser but does not maintain it: a maintainer must sign it off.
    not_hers = lab.sign_off(laser_task_id or 0, {"note": "done"})
    assert not_hers.status_code == 403
    assert "holds no valid maintainer training for laser" in not_hers.json()["detail"]
    refusal = not_hers.json()
    assert (refusal["code"], refusal["field"]) == ("maintenance.not_maintainer", "by")
    # The manager's login is no member: nobody to sign the work.
    manager = lab.sign_off(task_id, {"note": "done"}, Role.MANAGER)
    assert manager.status_code == 403 and "link this login" in manager.json()["detail"]
    assert lab.sign_off(task_id, {"note": "done"}, Role.TRAINER).status_code == 403

    assert lab.rows(MaintenanceSignOff) == []
    assert lab.machine("cnc-1").locked
    assert lab.rows(AuditEntry, AuditEntry.action == "maintenance.sign_off") == []
    assert lab.published.calls == []


def _incident(lab: Lab, text: str = "smoke from the exhaust") -> int:
    opened = lab.client.post(
        "/api/v1/maintenance/incidents",
        json={"machine": "laser-1", "text": text},
        headers=lab.headers(Role.TRAINER),
    )
    assert opened.status_code == 201, opened.text
    return int(opened.json()["id"])


def test_an_incident_is_closed_with_a_note_once(lab: Lab) -> None:
    incident_id = _incident(lab)
    other = _incident(lab, "door sensor loose")
    url = f"/api/v1/maintenance/incidents/{incident_id}/close"

    closed = lab.client.post(
        url, json={"note": " exhaust fan replaced "}, headers=lab.headers(Role.MAINTAINER)
    )

    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert body["id"] == incident_id and body["machine"] == "laser-1"
    assert body["resolution"] == "exhaust fan replaced" and body["closed_by"] == MAINTAINER_ACTOR
    (row,) = lab.rows(Incident, Incident.id == incident_id)
    assert row.closed_at is not None and row.resolution == "exhaust fan replaced"
    assert row.closed_by == MAINTAINER_ACTOR
    (entry,) = lab.rows(AuditEntry, AuditEntry.action == "incident.close")
    assert entry.actor == MAINTAINER_ACTOR and entry.entity_id == str(incident_id)
    still_open = lab.client.get(
        "/api/v1/maintenance/incidents", headers=lab.headers(Role.MAINTAINER)
    ).json()
    assert [i["id"] for i in still_open] == [other]

    again = lab.client.post(url, json={"note": "again"}, headers=lab.headers(Role.ADMIN))
    assert again.status_code == 409 and "already closed" in again.json()["detail"]
    assert again.json()["code"] == "incident.closed" and again.json()["field"] is None
    (row,) = lab.rows(Incident, Incident.id == incident_id)
    assert row.resolution == "exhaust fan replaced" and row.closed_by == MAINTAINER_ACTOR


def test_a_refused_close_leaves_the_incident_open(lab: Lab) -> None:
    incident_id = _incident(lab)
    maintainer = lab.headers(Role.MAINTAINER)
    url = f"/api/v1/maintenance/incidents/{incident_id}/close"

    unknown = lab.client.post(
        "/api/v1/maintenance/incidents/9999/close", json={"note": "done"}, headers=maintainer
    )
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no incident 9999"
    empty = lab.client.post(url, json={"note": " "}, headers=maintainer)
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "note"]
    too_long = lab.client.post(url, json={"note": "x" * 2001}, headers=maintainer)
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "note"]
    trainer = lab.client.post(url, json={"note": "done"}, headers=lab.headers(Role.TRAINER))
    assert trainer.status_code == 403

    (row,) = lab.rows(Incident, Incident.id == incident_id)
    assert row.closed_at is None and row.resolution == ""
    assert lab.rows(AuditEntry, AuditEntry.action == "incident.close") == []


def test_the_web_board_closes_through_the_same_route(lab: Lab) -> None:
    """The web screen calls the API's function: the same audit row, the same 409."""
    with Session(lab.engine) as session:
        laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        incident_id = open_incident(session, machine=laser, source="web", text="lens cracked").id
        session.commit()
    lab.client.headers.clear()
    token = sign_in(lab.client, "test-maintainer", PASSWORD)
    url = f"/web/maintenance/incidents/{incident_id}/close"
    done = lab.client.post(url, data={"resolution": "lens replaced", "csrf": token})
    assert done.status_code == 200 and "Incident closed." in done.text
    (entry,) = lab.rows(AuditEntry, AuditEntry.action == "incident.close")
    assert entry.actor == MAINTAINER_ACTOR
    again = lab.client.post(url, data={"resolution": "again", "csrf": csrf_of(done.text)})
    assert again.status_code == 409 and "already closed" in again.text
