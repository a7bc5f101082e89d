"""Staff jobs finished in the browser, over HTTP on both databases: closing a billing month and
a credit note, the lab's name, address and opening hours; every form answers with a redirect
(post-redirect-get) and the page it leads to says what was done, once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.errors import InvalidValue
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import (
    AuditEntry,
    BillingMonth,
    MachineSession,
    Member,
    MemberCategory,
    Statement,
)
from hub.models.lab import LAB_NAME_MAX
from hub.services import lab_settings
from hub.services.billing import import_rates
from hub.services.maintenance.tasks import add_task
from tests.e2e.web import sign_in
from tests.support.api import PASSWORD, role_tokens

MONTH = "2026-10"
START = datetime(2026, 10, 13, 13, 0, tzinfo=UTC)


def _sessions(session: Session, first: datetime = START) -> None:
    """Rates for the laser and three hours of Hugo's on it from `first` (October 2026)."""
    rows = ["machine_type,category,effective_from,cents_per_hour"]
    rows += [f"laser,{c.value},2026-01-01,800" for c in MemberCategory]
    import_rates(session, "\n".join(rows) + "\n")
    hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
    for n in range(3):
        start = first + timedelta(days=n)
        session.add(
            MachineSession(
                id=f"oct-{n}",
                site="lab",
                machine="laser-1",
                member_ref=hugo.ref,
                started_at=start,
                ended_at=start + timedelta(hours=1),
                end_reason="badge-out",
                duration_s=3600.0,
            )
        )


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        _sessions(session)
        add_task(session, title="Clean the spindle", actor="test", machine="cnc-1", every_days=9)
        session.commit()
    role_tokens(engine)
    engine.dispose()
    settings_ = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with TestClient(create_app(settings_, start_ingest=False)) as client:
        yield client


def _audited(hub: TestClient, action: str) -> list[AuditEntry]:
    with Session(hub.app.state.engine) as session:
        return list(session.exec(select(AuditEntry).where(AuditEntry.action == action)).all())


def _numbers(hub: TestClient) -> list[str]:
    """The statements' and credit notes' numbers in the order they were issued (one series a
    year, hub/services/billing: the test does not guess the year of issue)."""
    with Session(hub.app.state.engine) as session:
        return list(session.exec(select(Statement.number).order_by(col(Statement.id))).all())


def test_a_manager_closes_a_month_the_page_says_so_once(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    page = hub.get("/web/billing").text
    assert 'action="/web/billing/close"' in page and f'<option value="{MONTH}"' in page
    answer = hub.post(
        "/web/billing/close", data={"month": MONTH, "csrf": token}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/web/billing?month={MONTH}"
    shown = hub.get(answer.headers["location"])
    assert f"{MONTH} is closed: 1 statement(s)" in shown.text
    assert f'href="/web/billing/statements/{_numbers(hub)[0]}"' in shown.text
    assert "is closed" not in hub.get("/web/billing").text  # the message is shown once
    with Session(hub.app.state.engine) as session:
        assert session.exec(select(BillingMonth.month)).all() == [MONTH]
        statement = session.exec(select(Statement)).one()
        assert statement.total_cents == 3 * 800
    assert [a.actor for a in _audited(hub, "billing.close")] == ["user:test-manager"]
    # Closing it again changes nothing and says so; the month is no longer offered.
    again = hub.post("/web/billing/close", data={"month": MONTH, "csrf": token})
    assert "was already closed: 1 statement(s), unchanged" in again.text
    assert f'<option value="{MONTH}"' not in again.text
    assert len(_audited(hub, "billing.close")) == 1


def test_a_month_not_over_or_not_a_month_is_refused_under_its_field(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    fr = {"Accept-Language": "fr"}
    for month, words in (
        ("2999-01", "is not over yet"),
        ("octobre", "is not a month"),
        ("2026-13", "is not a month"),
        ("\x00", "is not a month"),
    ):
        page = hub.post("/web/billing/close", data={"month": month, "csrf": token})
        assert page.status_code == 422, month
        assert 'id="close_month-error">' in page.text and words in page.text, month
    french = hub.post("/web/billing/close", data={"month": "octobre", "csrf": token}, headers=fr)
    assert "n&#39;est pas un mois" in french.text
    with Session(hub.app.state.engine) as session:
        assert session.exec(select(BillingMonth)).all() == []


def test_only_managers_close_a_month(hub: TestClient) -> None:
    for role in ("maintainer", "trainer", "member"):
        hub.cookies.clear()
        token = sign_in(hub, f"test-{role}", PASSWORD)
        page = hub.post("/web/billing/close", data={"month": MONTH, "csrf": token})
        assert page.status_code == 403, role
    hub.cookies.clear()
    sign_in(hub, "test-manager", PASSWORD)
    assert hub.post("/web/billing/close", data={"month": MONTH}).status_code == 403  # no token
    assert _audited(hub, "billing.close") == []


def test_a_manager_credits_a_session_from_the_statement_page(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    hub.post("/web/billing/close", data={"month": MONTH, "csrf": token})
    number = _numbers(hub)[0]
    page = hub.get(f"/web/billing/statements/{number}")
    assert page.status_code == 200
    # Names, not codes: the member and the machine as people know them.
    assert "Hugo Petit" in page.text and "Trotec Speedy 100" in page.text
    assert page.text.count('name="sessions"') == 3
    path = f"/web/billing/statements/{number}/credit"
    nothing = hub.post(path, data={"reason": "laser fault", "csrf": token})
    assert nothing.status_code == 422
    assert 'id="credit_session-error">name at least one session' in nothing.text
    no_reason = hub.post(path, data={"sessions": "oct-1", "reason": "  ", "csrf": token})
    assert no_reason.status_code == 422 and 'id="credit_reason-error">' in no_reason.text
    assert 'value="oct-1" id="s-2" checked' in no_reason.text  # the ticks are kept
    stranger = hub.post(path, data={"sessions": "oct-9", "reason": "x", "csrf": token})
    assert stranger.status_code == 422 and "are not on statement" in stranger.text
    answer = hub.post(
        path,
        data={"sessions": "oct-1", "reason": "laser fault", "csrf": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    shown = hub.get(answer.headers["location"])
    credit_number = _numbers(hub)[-1]
    assert credit_number != number  # a credit note never reuses a number
    assert f"Credit note {credit_number}: -8,00 €" in shown.text
    assert shown.text.count('name="sessions"') == 2 and "credited" in shown.text
    twice = hub.post(path, data={"sessions": "oct-1", "reason": "again", "csrf": token})
    assert twice.status_code == 422 and "already credited" in twice.text
    with Session(hub.app.state.engine) as session:
        note = session.exec(select(Statement).where(Statement.number == credit_number)).one()
        assert note.total_cents == -800 and note.reason == "laser fault"
    assert [a.actor for a in _audited(hub, "billing.credit")] in ([], ["user:test-manager"])
    assert hub.get("/web/billing/statements/2026-10-999").status_code == 422


def test_the_labs_name_address_and_hours_are_set_in_the_web(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    page = hub.get("/web/settings").text
    assert 'value="tue-sat 14:00-19:00"' in page and 'id="lab_name" name="name"' in page
    wrong = hub.post(
        "/web/settings/lab",
        data={"name": "FabLab", "address": "", "opening_hours": "mon 19:00-14:00", "csrf": token},
    )
    assert wrong.status_code == 422
    assert 'id="lab_opening_hours-error">' in wrong.text and "mon 19:00-14:00" in wrong.text
    empty = hub.post(
        "/web/settings/lab",
        data={"name": " ", "opening_hours": "mon 10:00-12:00", "csrf": token},
        headers={"Accept-Language": "fr"},
    )
    assert (
        empty.status_code == 422 and "donnez le nom du lab tel qu&#39;il est déclaré" in empty.text
    )
    answer = hub.post(
        "/web/settings/lab",
        data={
            "name": "FabLab des Capucins",
            "address": "3 rue des Capucins\n29200 Brest",
            "opening_hours": "tue-fri 14:00-19:00; sat 10:00-18:00",
            "csrf": token,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    shown = hub.get("/web/settings", headers={"Accept-Language": "fr"}).text
    assert "Le nom, l’adresse et les horaires de l’atelier sont enregistrés." in shown
    assert 'value="FabLab des Capucins"' in shown and "29200 Brest</textarea>" in shown
    with Session(hub.app.state.engine) as session:
        lab = lab_settings.current(session, site="lab")
        assert lab.opening_hours == "tue-fri 14:00-19:00; sat 10:00-18:00"
    assert [a.actor for a in _audited(hub, "lab.update")] == ["user:test-manager"]
    hub.cookies.clear()
    token = sign_in(hub, "test-maintainer", PASSWORD)
    refused = hub.post(
        "/web/settings/lab", data={"name": "x", "opening_hours": "mon 10:00-11:00", "csrf": token}
    )
    assert refused.status_code == 403


def test_every_billing_and_settings_form_answers_with_a_redirect(hub: TestClient) -> None:
    token = sign_in(hub, "test-admin", PASSWORD)
    forms = [
        ("/web/billing/topup", {"member_id": "hugo@example.org", "amount": "20"}, "+20,00 €"),
        ("/web/billing/plan", {"member_id": "hugo@example.org", "plan": "later"}, "plan saved"),
        (
            "/web/billing/rates",
            {
                "machine_type": "laser",
                "category": "student",
                "effective_from": "2027-01-01",
                "cents_per_hour": "900",
            },
            "rate saved",
        ),
        ("/web/settings/retention", {"telemetry": "60", "events": "400"}, "retention rules"),
        ("/web/settings/retention/apply", {}, "Purged now"),
    ]
    for path, data, words in forms:
        answer = hub.post(path, data={**data, "csrf": token}, follow_redirects=False)
        assert answer.status_code == 303, (path, answer.text[-500:])
        assert words in hub.get(answer.headers["location"]).text, path


def test_a_planted_notice_cookie_is_not_shown(hub: TestClient) -> None:
    sign_in(hub, "test-manager", PASSWORD)
    hub.cookies.set("atelier_notice", "eyJtIjoiaGFja2VkIiwicCI6e319.0000")
    assert "hacked" not in hub.get("/web/billing").text


# Hostile values for the lab's settings, through the real service and both databases.
_hostile_text = st.one_of(
    st.text(max_size=600),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\u202e", "x" * 121, "x" * 501, "\ud7ff"]),
)


@pytest.fixture
def engine(database_url: str):  # type: ignore[no-untyped-def]
    migrate(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=_hostile_text,
    address=_hostile_text,
    hours=st.one_of(_hostile_text, st.just("mon 10:00-12:00")),
)
def test_hostile_lab_settings_are_saved_whole_or_refused_by_field(
    engine,
    name: str,
    address: str,
    hours: str,  # type: ignore[no-untyped-def]
) -> None:
    with Session(engine) as session:
        try:
            lab_settings.change(
                session, name=name, address=address, opening_hours=hours, actor="test"
            )
            session.commit()
        except InvalidValue as error:
            session.rollback()
            assert error.field in ("name", "address", "opening_hours")
            return
        saved = lab_settings.current(session, site="lab")
        assert saved.name == name.strip() and 0 < len(saved.name) <= LAB_NAME_MAX
        assert "\x00" not in saved.name + saved.address + saved.opening_hours


def test_a_maintainer_makes_and_changes_a_task_the_lockout_follows(hub: TestClient) -> None:
    from hub.models import Machine, MaintenanceTaskRow

    token = sign_in(hub, "test-maintainer", PASSWORD)
    form = hub.get("/web/maintenance/tasks/new").text
    # Picked by name: the machines and types as people call them, not their codes.
    assert '<option value="machine:laser-1">Trotec Speedy 100</option>' in form
    assert '<option value="type:laser">' in form
    data = {"title": "Clean the lens", "scope": "machine:laser-1", "csrf": token}
    for bad, field, words in (
        ({"every_hours": "douze"}, "every_hours", "is not a number of hours"),
        ({"every_hours": "nan"}, "every_hours", "is not a number of hours"),
        ({"every_hours": "1e999"}, "every_hours", "is not a number of hours"),
        ({"every_days": "-3"}, "every_days", "is not a whole number of days"),
        ({"every_days": "99999999999"}, "every_days", "is not a whole number of days"),
        ({}, "every_hours", "give an interval"),
        ({"every_days": "0"}, "every_days", "more than 0"),
        ({"every_days": "7", "scope": "machine:nope"}, "scope", "no machine"),
        ({"every_days": "7", "scope": ""}, "scope", "give either a machine"),
        ({"every_days": "7", "title": " "}, "title", ""),
        ({"every_days": "7", "counter": "\x00"}, "counter", "is not a counter"),
    ):
        page = hub.post("/web/maintenance/tasks/new", data={**data, **bad})
        assert page.status_code == 422, (bad, page.status_code)
        assert f'id="{field}-error">' in page.text and words in page.text, bad
    answer = hub.post(
        "/web/maintenance/tasks/new",
        data={**data, "every_hours": "40,5", "critical": "1"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    board = hub.get("/web/maintenance").text
    assert "Task “Clean the lens” added." in board
    engine = hub.app.state.engine
    with Session(engine) as session:
        task = session.exec(
            select(MaintenanceTaskRow).where(MaintenanceTaskRow.title == "Clean the lens")
        ).one()
        assert task.every_hours == 40.5 and task.critical and task.machine_id is not None
    # Camille maintains the CNC only: no sign-off form for the laser's task, one for the CNC.
    assert f'action="/web/maintenance/tasks/{task.id}/sign-off"' not in board
    assert 'action="/web/maintenance/tasks/1/sign-off"' in board
    edit = hub.get(f"/web/maintenance/tasks/{task.id}/edit").text
    assert 'value="40.5"' in edit and "Trotec Speedy 100" in edit
    # A one-day calendar interval on a critical task made before today: overdue, so locked.
    with Session(engine) as session:
        row = session.get(MaintenanceTaskRow, task.id)
        row.created_at = datetime.now(UTC) - timedelta(days=3)
        session.add(row)
        session.commit()
    changed = hub.post(
        f"/web/maintenance/tasks/{task.id}/edit",
        data={
            "title": "Clean the lens and mirrors",
            "counter": "busy",
            "every_days": "1",
            "critical": "1",
            "active": "1",
            "csrf": token,
        },
    )
    assert "Task “Clean the lens and mirrors” saved." in changed.text
    with Session(engine) as session:
        row = session.get(MaintenanceTaskRow, task.id)
        assert row.every_hours is None and row.every_days == 1
        laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
    assert hub.get("/api/v1/machines/laser-1").json()["locked"] is True, laser
    assert [a.actor for a in _audited(hub, "maintenance.task_update")] == ["user:test-maintainer"]
    hub.cookies.clear()
    token = sign_in(hub, "test-trainer", PASSWORD)
    assert hub.get("/web/maintenance/tasks/new").status_code == 403
    refused = hub.post(f"/web/maintenance/tasks/{task.id}/edit", data={**data, "csrf": token})
    assert refused.status_code == 403
    assert 'href="/web/maintenance/tasks/new"' not in hub.get("/web/maintenance").text


def test_a_trainer_grants_the_trainer_level_the_api_rule_holds(hub: TestClient) -> None:
    from hub.models import Training, TrainingLevel

    engine = hub.app.state.engine
    with Session(engine) as session:
        nathan = session.exec(select(Member).where(Member.email == "nathan@example.org")).one()
    token = sign_in(hub, "test-trainer", PASSWORD)
    chosen = hub.get(f"/web/trainings?member={nathan.id}").text
    assert '<option value="trainer">trainer</option>' in chosen
    answer = hub.post(
        "/web/trainings",
        data={"member_id": nathan.id, "machine_type": "laser", "level": "trainer", "csrf": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    shown = hub.get(answer.headers["location"], headers={"Accept-Language": "fr"})
    assert "Nathan" in shown.text and "est désormais formateur : Laser" in shown.text
    with Session(engine) as session:
        levels = {
            t.level for t in session.exec(select(Training).where(Training.member_id == nathan.id))
        }
    assert levels == {TrainingLevel.TRAINER}
    hub.cookies.clear()
    token = sign_in(hub, "test-manager", PASSWORD)  # not a trainer on the laser: refused
    refused = hub.post(
        "/web/trainings",
        data={"member_id": nathan.id, "machine_type": "laser", "level": "trainer", "csrf": token},
    )
    assert refused.status_code == 403


def test_the_members_list_is_paged_counted_and_by_name(hub: TestClient) -> None:
    engine = hub.app.state.engine
    with Session(engine) as session:
        for n in range(120):
            session.add(Member(name=f"Zz Member {n:03d}", email=f"zz{n}@example.org"))
        session.commit()
        total = len(session.exec(select(Member)).all())
    sign_in(hub, "test-trainer", PASSWORD)
    first = hub.get("/web/members").text
    assert f"{total} members match; 1 to 50 shown, by name." in first
    assert "Page 1 of 3" in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert first.index("Camille Martin") < first.index("Hugo Petit")  # by name
    last = hub.get("/web/members?page=3").text
    assert f"101 to {total} shown" in last and "Zz Member 119" in last
    beyond = hub.get("/web/members?page=99").text  # past the end: the last page
    assert "Page 3 of 3" in beyond
    found = hub.get("/web/members?q=zz+member+01&page=1").text
    assert "10 members match; 1 to 10 shown" in found and "Page 1" not in found
    french = hub.get("/web/members", headers={"Accept-Language": "fr"}).text
    assert f"{total} membres correspondent" in french
    for bad in ("0", "-1", "x", "100001"):
        assert hub.get(f"/web/members?page={bad}").status_code == 422, bad


def test_a_members_page_shows_balance_plan_sessions_with_cost_and_what_blocks_them(
    hub: TestClient,
) -> None:
    engine = hub.app.state.engine
    token = sign_in(hub, "test-manager", PASSWORD)
    with Session(engine) as session:
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        newcomer = Member(name="Inès Nouvelle", email="ines@example.org")
        session.add(newcomer)
        session.commit()
        session.refresh(newcomer)
        session.refresh(hugo)
        session.expunge_all()
    # A manager tops Hugo up by typing his name, and enters a rate in euros.
    hub.post("/web/billing/topup", data={"member_id": "hugo petit", "amount": "5", "csrf": token})
    page = hub.get(f"/web/members/{hugo.id}").text
    assert "€5.00" in page and "pay later" in page
    # October's three laser hours, priced as the close would (8 €/h), and by machine name.
    assert page.count("€8.00") == 3 and "Trotec Speedy 100" in page
    assert "can use no machine yet" not in page
    blocked = hub.get(f"/web/members/{newcomer.id}", headers={"Accept-Language": "fr"}).text
    assert "ne peut encore utiliser aucune machine" in blocked
    assert "aucune carte" in blocked and "Aucune formation valide" in blocked
    hub.post("/web/billing/close", data={"month": MONTH, "csrf": token})
    closed = hub.get(f"/web/members/{hugo.id}").text
    assert closed.count("€8.00") == 3  # now the statement's own lines
    hub.cookies.clear()
    sign_in(hub, "test-trainer", PASSWORD)
    trainer_view = hub.get(f"/web/members/{hugo.id}").text
    assert "Trotec Speedy 100" in trainer_view and "€8.00" not in trainer_view  # no money


def test_rates_are_typed_in_euros_and_members_by_name(hub: TestClient) -> None:
    from hub.models import BillingRate

    token = sign_in(hub, "test-manager", PASSWORD)
    rate = {
        "machine_type": "printer",
        "category": "student",
        "effective_from": "2027-01-01",
        "cents_per_hour": "3,50",
        "start_fee_cents": "1",
        "minimum_cents": "0,5",
        "csrf": token,
    }
    assert hub.post("/web/billing/rates", data=rate).status_code == 200
    with Session(hub.app.state.engine) as session:
        row = session.exec(select(BillingRate).where(BillingRate.machine_type == "printer")).one()
        assert (row.cents_per_hour, row.start_fee_cents, row.minimum_cents) == (350, 100, 50)
    for bad in ("-2", "1e3", "12345678", "\x00", "NaN"):
        page = hub.post("/web/billing/rates", data={**rate, "cents_per_hour": bad})
        assert page.status_code == 422 and 'id="rate_cents_per_hour-error">' in page.text, bad
    with Session(hub.app.state.engine) as session:
        session.add(Member(name="Hugo Petit", email="hugo2@example.org"))
        session.commit()
    shared = hub.post(
        "/web/billing/topup", data={"member_id": "Hugo Petit", "amount": "5", "csrf": token}
    )
    assert shared.status_code == 422
    assert (
        "several members are called Hugo Petit" in shared.text
        and "hugo2@example.org" in shared.text
    )
