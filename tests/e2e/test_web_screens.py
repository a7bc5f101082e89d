"""The web screens over HTTP: who sees which menu and page, CSRF, and that each form goes
through the API's own rule (the allow-list is re-published, the audit log names the user)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.maintenance_service import add_task
from hub.models import AuditEntry, Badge, Member, Role, Training
from hub.seed import seed_demo
from tests.e2e.web import csrf_of, sign_in
from tests.support.api import PASSWORD, role_tokens

PAGES = {
    "/": set(Role),
    "/web/machines": set(Role),
    "/web/machines/laser-1": set(Role),
    "/web/me": {Role.MEMBER, Role.TRAINER, Role.MAINTAINER},
    "/web/members": {Role.TRAINER, Role.MAINTAINER, Role.MANAGER, Role.ADMIN},
    "/web/members/1": {Role.TRAINER, Role.MAINTAINER, Role.MANAGER, Role.ADMIN},
    "/web/trainings": {Role.TRAINER, Role.MAINTAINER, Role.MANAGER, Role.ADMIN},
    "/web/maintenance": {Role.TRAINER, Role.MAINTAINER, Role.MANAGER, Role.ADMIN},
    "/web/stats": {Role.MANAGER, Role.ADMIN},
    "/web/billing": {Role.MANAGER, Role.ADMIN},
}


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    url = database_url
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        add_task(session, title="Clean the spindle", actor="test", machine="cnc-1", every_days=1)
        session.commit()
    role_tokens(engine)  # users test-<role> with PASSWORD
    engine.dispose()
    app = create_app(get_settings(None, database_url=url, data_dir=tmp_path), start_ingest=False)
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("role", list(Role))
def test_each_role_sees_its_menu_and_pages_and_nothing_else(hub: TestClient, role: Role) -> None:
    sign_in(hub, f"test-{role.value}", PASSWORD)
    home = hub.get("/").text
    for path, roles in PAGES.items():
        page = hub.get(path, follow_redirects=False)
        expected = 200 if role in roles else (404 if path == "/web/me" else 403)
        assert page.status_code == expected, (path, page.status_code, page.text[:300])
        if path.count("/") == 2 and path != "/web/me":
            assert (f'href="{path}"' in home) == (role in roles), (role, path)


def test_signed_out_pages_lead_to_the_login(hub: TestClient) -> None:
    for path in PAGES:
        page = hub.get(path, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login", path
    assert hub.get("/web/stream", follow_redirects=False).status_code == 303


def test_a_form_without_its_token_is_refused(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    path = "/web/members/2/badges"
    assert hub.post(path, data={"uid": "0A0B0C0D"}).status_code == 403
    assert hub.post(path, data={"uid": "0A0B0C0D", "csrf": "f" * 64}).status_code == 403
    ok = hub.post(path, data={"uid": "0A0B0C0D"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and "0A0B0C0D" in ok.text


def test_a_manager_enrols_and_revokes_a_card(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    page = hub.post("/web/members/2/badges", data={"uid": "0a:0b:0c:0d", "csrf": token})
    assert page.status_code == 200 and "0A0B0C0D" in page.text
    taken = hub.post("/web/members/3/badges", data={"uid": "0A0B0C0D", "csrf": token})
    assert taken.status_code == 422 and "already enrolled" in taken.text
    engine = hub.app.state.engine
    with Session(engine) as session:
        badge = session.exec(select(Badge).where(Badge.uid == "0A0B0C0D")).one()
    revoked = hub.post(f"/web/badges/{badge.id}/revoke", data={"csrf": token})
    assert revoked.status_code == 200 and "revoked" in revoked.text
    with Session(engine) as session:
        assert session.get(Badge, badge.id).revoked_at is not None
        actions = [a.action for a in session.exec(select(AuditEntry))]
        assert {"badge.enrol", "badge.revoke"} <= set(actions)


def test_certifying_follows_the_api_trainer_rule(hub: TestClient) -> None:
    engine = hub.app.state.engine
    with Session(engine) as session:
        nathan = session.exec(select(Member).where(Member.email == "nathan@example.org")).one()
    # A manager is not a trainer for the laser: the API's rule refuses, the page says why.
    token = sign_in(hub, "test-manager", PASSWORD)
    refused = hub.post(
        "/web/trainings", data={"member_id": nathan.id, "machine_type": "laser", "csrf": token}
    )
    assert refused.status_code == 403
    hub.cookies.clear()
    token = sign_in(hub, "test-trainer", PASSWORD)
    chosen = hub.get(f"/web/trainings?member={nathan.id}")
    # Camille trains on the laser and printers and maintains the CNC: the API's rule lets a
    # maintainer grant too, so all three are offered.
    assert all(f"Certify on {t}" in chosen.text for t in ("Laser cutter", "3D printer", "CNC mill"))
    done = hub.post(
        "/web/trainings",
        data={"member_id": nathan.id, "machine_type": "laser", "months": 12, "csrf": token},
    )
    assert done.status_code == 200, done.text[:500]
    with Session(engine) as session:
        training = session.exec(select(Training).where(Training.member_id == nathan.id)).one()
        assert training.granted_by_id is not None and training.expires_at is not None


def test_a_maintainer_signs_off_and_locks_out(hub: TestClient) -> None:
    token = sign_in(hub, "test-maintainer", PASSWORD)
    board = hub.get("/web/maintenance")
    assert "Clean the spindle" in board.text
    empty = hub.post(
        "/web/maintenance/tasks/1/sign-off", data={"machine": "cnc-1", "note": " ", "csrf": token}
    )
    assert empty.status_code == 422
    signed = hub.post(
        "/web/maintenance/tasks/1/sign-off",
        data={"machine": "cnc-1", "note": "spindle cleaned", "csrf": token},
    )
    assert signed.status_code == 200 and "cnc-1: signed off" in signed.text
    locked = hub.post("/web/machines/laser-1/lock", data={"reason": "lens cracked", "csrf": token})
    assert locked.status_code == 200 and "lens cracked" in locked.text
    assert hub.get("/api/v1/machines/laser-1").json()["locked"] is True
    hub.post("/web/machines/laser-1/unlock", data={"csrf": token})
    assert hub.get("/api/v1/machines/laser-1").json()["locked"] is False


def test_french_from_the_browser_and_the_switch(hub: TestClient) -> None:
    page = hub.get("/login", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.8"})
    assert 'lang="fr"' in page.text and "Se connecter" in page.text
    token = csrf_of(page.text)
    switched = hub.post("/web/lang", data={"lang": "en", "next": "/login", "csrf": token})
    assert switched.status_code == 200 and 'lang="en"' in switched.text
    page = hub.get("/login", headers={"Accept-Language": "fr"})
    assert "Sign in" in page.text  # the switch (a cookie) wins over the browser
    away = hub.post(
        "/web/lang",
        data={"lang": "fr", "next": "//evil.example/", "csrf": token},
        follow_redirects=False,
    )
    assert away.headers["location"] == "/"


def test_the_live_stream_sends_cards_and_lets_go_of_a_closed_browser(tmp_path: Path) -> None:
    import threading
    import time

    import httpx
    import uvicorn

    from hub.web import pages
    from tests.support.mosquitto import free_port

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    role_tokens(engine)
    engine.dispose()
    app = create_app(get_settings(None, database_url=url, data_dir=tmp_path), start_ingest=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=base, timeout=10) as client:
            sign_in(client, "test-member", PASSWORD)
            with client.stream("GET", "/web/stream") as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                # One iterator, kept: dropping it would close the connection.
                lines = answer.iter_lines()
                events: list[str] = []
                while len(events) < 5:
                    line = next(lines)
                    if line.startswith("event: "):
                        events.append(line[7:])
                # Four cards, then the lab's events (staff only: not for a member), then today.
                assert events == [
                    "card-cnc-1",
                    "card-laser-1",
                    "card-printer-1",
                    "card-printer-2",
                    "today",
                ]
                assert pages._streams["open"] == 1
        # The browser went away: the hub notices within a few ticks and frees the stream.
        deadline = time.monotonic() + 10
        while pages._streams["open"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pages._streams["open"] == 0
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_billing_shows_statements_balances_and_a_members_own(hub: TestClient) -> None:
    from datetime import date

    from hub.billing_store import (
        BalanceMovement,
        BillingAccount,
        BillingMonth,
        BillingRate,
        Statement,
    )

    engine = hub.app.state.engine
    with Session(engine) as session:
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        session.add(
            BillingRate(
                machine_type="laser",
                category="individual",
                effective_from=date(2026, 1, 1),
                cents_per_hour=1500,
            )
        )
        session.add(BillingAccount(member_id=hugo.id, prepaid_only=True, balance_cents=1250))
        session.add(BalanceMovement(member_id=hugo.id, kind="topup", cents=2000, note="cash"))
        session.add(BillingMonth(month="2026-10", timezone="Europe/Paris"))
        session.add(
            Statement(
                number="2026-10-0001",
                month="2026-10",
                payer_ref=hugo.ref,
                payer_name=hugo.name,
                total_cents=750,
                prepaid_cents=750,
            )
        )
        session.commit()
    sign_in(hub, "test-manager", PASSWORD)
    page = hub.get("/web/billing")
    assert page.status_code == 200
    for text in ("2026-10-0001", "Hugo Petit", "€15.00", "€12.50", "€7.50"):
        assert text in page.text, text
    hub.cookies.clear()
    sign_in(hub, "test-member", PASSWORD)
    mine = hub.get("/web/me", headers={"Accept-Language": "fr"})
    assert "2026-10-0001" in mine.text and "12,50\xa0€" in mine.text and "cash" in mine.text
    assert hub.get("/web/billing").status_code == 403


def test_the_dashboard_flags_maintenance_due_and_a_lockout(hub: TestClient) -> None:
    from datetime import UTC, datetime, timedelta

    engine = hub.app.state.engine
    with Session(engine) as session:
        add_task(
            session,
            title="Clean the lens",
            actor="test",
            machine="laser-1",
            every_days=1,
            created_at=datetime.now(UTC) - timedelta(days=3),
        )
        session.commit()
    token = sign_in(hub, "test-maintainer", PASSWORD)
    hub.post("/web/machines/printer-2/lock", data={"reason": "nozzle jammed", "csrf": token})
    page = hub.get("/").text
    laser = page[page.index('id="card-laser-1"') : page.index('id="card-printer-1"')]
    assert "Maintenance due:" in laser and "Clean the lens" in laser
    assert "Clean the spindle" not in page  # not due yet: no flag
    printer = page[page.index('id="card-printer-2"') :]
    assert "Locked out:" in printer and "nozzle jammed" in printer
