"""The web screens over HTTP: who sees which menu and page, CSRF, and that each form goes
through the API's own rule (the allow-list is re-published, the audit log names the user)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import ApiToken, AuditEntry, Badge, MachineType, Member, Role, Training, User
from hub.services.maintenance.tasks import add_task
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
    "/web/settings": {Role.MANAGER, Role.ADMIN},
    "/web/users": {Role.ADMIN},
    "/web/users/1": {Role.ADMIN},
    "/web/displays": {Role.ADMIN},
    "/web/account": set(Role),
    "/web/notifications": set(Role),
    "/web/members/new": {Role.MANAGER, Role.ADMIN},
    "/web/members/2/edit": {Role.MANAGER, Role.ADMIN},
    "/web/machines/new": {Role.ADMIN},
    "/web/machines/laser-1/edit": {Role.ADMIN},
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
    # The service's refusal sits under the note of that row, and speaks French in French.
    assert '<p class="error" id="note-1-cnc-1-error">the note is empty' in empty.text
    assert 'aria-describedby="note-1-cnc-1-error"' in empty.text
    french = hub.post(
        "/web/maintenance/tasks/1/sign-off",
        data={"machine": "cnc-1", "note": " ", "csrf": token},
        headers={"Accept-Language": "fr"},
    )
    assert '<p class="error" id="note-1-cnc-1-error">la note est vide' in french.text
    signed = hub.post(
        "/web/maintenance/tasks/1/sign-off",
        data={"machine": "cnc-1", "note": "spindle cleaned", "csrf": token},
    )
    assert signed.status_code == 200 and "Shapeoko 4: signed off" in signed.text
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

    from hub.services.billing import (
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


# --- the forms that change records (hub/web/admin_screens.py) ------------------------------
RATES_CSV = (
    "machine_type,category,effective_from,cents_per_hour\n"
    "laser,student,2027-01-01,900\n"
    "printer,student,2027-01-01,300\n"
)
# Every form: its address, a valid body, a role the API refuses it to (None: open to all).
FORMS: list[tuple[str, dict[str, str], Role | None]] = [
    ("/web/members/new", {"name": "Zoé Roux", "email": "zoe@example.org"}, Role.MAINTAINER),
    ("/web/members/2/edit", {"name": "Léa B.", "category": "student"}, Role.TRAINER),
    (
        "/web/machines/new",
        {"code": "laser-2", "name": "Laser 2", "site": "lab", "machine_type": "laser"},
        Role.MANAGER,
    ),
    ("/web/machines/laser-1/edit", {"name": "Big laser", "machine_type": "laser"}, Role.MANAGER),
    ("/web/machine-types", {"code": "lathe", "name": "Lathe"}, Role.MANAGER),
    ("/web/machine-types/1", {"name": "Laser", "kind": "laser"}, Role.MANAGER),
    ("/web/users", {"username": "zoe", "password": "x" * 12, "role": "manager"}, Role.MANAGER),
    ("/web/users/1", {"role": "admin", "active": "1"}, Role.MANAGER),
    ("/web/users/1/password", {"password": "y" * 12}, Role.MANAGER),
    ("/web/account/tokens", {"name": "script"}, None),
    ("/web/settings/retention", {"telemetry": "90", "events": "400"}, Role.MANAGER),
    ("/web/settings/retention/apply", {}, Role.MANAGER),
    ("/web/settings/identity", {"name": "Fablab des Rivières", "locale": "fr"}, Role.MANAGER),
    ("/web/settings/books", {"sales": "7061", "bank": "512"}, Role.MAINTAINER),
    ("/web/settings/helloasso/tier", {"tier": "Adhésion", "category": "student"}, Role.MAINTAINER),
    ("/web/notifications/defaults", {"wanted": "print.failed"}, Role.MAINTAINER),
    ("/web/billing/topup", {"member_id": "2", "amount": "20"}, Role.MAINTAINER),
    ("/web/billing/plan", {"member_id": "2", "plan": "prepaid"}, Role.TRAINER),
    (
        "/web/billing/rates",
        {
            "machine_type": "laser",
            "category": "student",
            "effective_from": "2027-01-01",
            "cents_per_hour": "900",
        },
        Role.MAINTAINER,
    ),
]


def _audit_count(hub: TestClient) -> int:
    with Session(hub.app.state.engine) as session:
        return len(session.exec(select(AuditEntry)).all())


@pytest.mark.parametrize(("path", "data", "refused"), FORMS, ids=[f[0] for f in FORMS])
def test_each_form_refuses_a_missing_token_and_the_wrong_role(
    hub: TestClient, path: str, data: dict[str, str], refused: Role | None
) -> None:
    allowed = Role.ADMIN
    before = _audit_count(hub)
    if refused is not None:
        token = sign_in(hub, f"test-{refused.value}", PASSWORD)
        page = hub.post(path, data={**data, "csrf": token})
        assert page.status_code == 403 and "not open to your role" in page.text, path
        hub.cookies.clear()
    token = sign_in(hub, f"test-{allowed.value}", PASSWORD)
    assert hub.post(path, data=data).status_code == 403
    assert hub.post(path, data={**data, "csrf": "0" * 64}).status_code == 403
    assert _audit_count(hub) == before  # nothing was changed by the refusals
    done = hub.post(path, data={**data, "csrf": token})
    assert done.status_code == 200, (path, done.text[-800:])
    assert _audit_count(hub) > before, path


def test_the_rates_import_refuses_a_missing_token_and_the_wrong_role(hub: TestClient) -> None:
    files = {"file": ("rates.csv", RATES_CSV.encode(), "text/csv")}
    token = sign_in(hub, "test-maintainer", PASSWORD)
    refused = hub.post("/web/billing/rates/import", data={"csrf": token}, files=files)
    assert refused.status_code == 403
    hub.cookies.clear()
    sign_in(hub, "test-manager", PASSWORD)
    assert hub.post("/web/billing/rates/import", files=files).status_code == 403


def test_a_manager_creates_and_edits_a_member_and_sees_refusals_by_the_field(
    hub: TestClient,
) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    assert 'href="/web/members/new"' in hub.get("/web/members").text
    bad = hub.post(
        "/web/members/new",
        data={"name": "Zoé Roux", "email": "zoe-at-example", "csrf": token},
    )
    assert bad.status_code == 422
    assert 'id="email-error">not an email address' in bad.text
    assert 'value="Zoé Roux"' in bad.text  # what was typed stays in the form
    taken = hub.post(
        "/web/members/new",
        data={"name": "Zoé Roux", "email": "LEA@example.org", "csrf": token},
    )
    assert taken.status_code == 422
    assert 'id="email-error">another member already has email lea@example.org' in taken.text
    made = hub.post(
        "/web/members/new",
        data={"name": "Zoé Roux", "email": "zoe@example.org", "category": "student", "csrf": token},
    )
    assert made.status_code == 200 and "Zoé Roux" in made.text
    engine = hub.app.state.engine
    with Session(engine) as session:
        zoe = session.exec(select(Member).where(Member.email == "zoe@example.org")).one()
        lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
    form = hub.get(f"/web/members/{zoe.id}/edit")
    assert 'value="zoe@example.org"' in form.text
    own = hub.post(
        f"/web/members/{zoe.id}/edit",
        data={"name": "Zoé Roux", "payer_id": str(zoe.id), "csrf": token},
    )
    assert own.status_code == 422 and 'id="payer_id-error">a member cannot be their own' in own.text
    saved = hub.post(
        f"/web/members/{zoe.id}/edit",
        data={
            "name": "Zoé Roux-Petit",
            "email": "zoe@example.org",
            "category": "student",
            "status": "suspended",
            "payer_id": str(lea.id),
            "csrf": token,
        },
    )
    assert saved.status_code == 200 and "Zoé Roux-Petit" in saved.text
    with Session(engine) as session:
        zoe = session.get(Member, zoe.id)
        assert zoe.status.value == "suspended" and zoe.payer_id == lea.id
        actions = [a.action for a in session.exec(select(AuditEntry))]
        assert actions.count("member.create") == 1 and "member.update" in actions


def test_the_payer_is_given_by_email_or_number_with_companies_suggested(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    engine = hub.app.state.engine
    with Session(engine) as session:
        acme = Member(name="ACME SARL", email="compta@acme.example", category="company")
        session.add(acme)
        session.commit()
        lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
        acme_id, lea_id = acme.id, lea.id
    fields = {"name": lea.name, "email": "lea@example.org", "category": lea.category.value}
    form = hub.get(f"/web/members/{lea_id}/edit")
    assert '<option value="compta@acme.example">ACME SARL</option>' in form.text
    unknown = hub.post(
        f"/web/members/{lea_id}/edit",
        data={**fields, "payer_id": "nobody@acme.example", "csrf": token},
    )
    assert unknown.status_code == 422
    assert 'id="payer_id-error">no member with email or number' in unknown.text
    by_email = hub.post(
        f"/web/members/{lea_id}/edit",
        data={**fields, "payer_id": "COMPTA@acme.example", "csrf": token},
    )
    assert by_email.status_code == 200
    with Session(engine) as session:
        assert session.get(Member, lea_id).payer_id == acme_id
    # The form shows the payer by email; an empty field: Léa pays for herself again.
    assert 'value="compta@acme.example"' in hub.get(f"/web/members/{lea_id}/edit").text
    hub.post(f"/web/members/{lea_id}/edit", data={**fields, "payer_id": "", "csrf": token})
    with Session(engine) as session:
        assert session.get(Member, lea_id).payer_id is None


def test_a_manager_changes_a_category_from_a_day_and_sees_its_history(hub: TestClient) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from hub.services.billing import BillingMonth

    token = sign_in(hub, "test-manager", PASSWORD)
    engine = hub.app.state.engine
    with Session(engine) as session:
        lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
        fields = {"name": lea.name, "email": lea.email or "", "status": lea.status.value}
        before = lea.category.value
    new = "professional" if before != "professional" else "student"
    today = datetime.now(ZoneInfo(get_settings().timezone)).date()
    first = today.replace(day=1)
    previous = first - timedelta(days=1)
    with Session(engine) as session:
        session.add(BillingMonth(month=previous.strftime("%Y-%m"), timezone="Europe/Paris"))
        session.commit()
    form = hub.get(f"/web/members/{lea.id}/edit")
    assert 'name="category_from" type="date"' in form.text
    closed = hub.post(
        f"/web/members/{lea.id}/edit",
        data={**fields, "category": new, "category_from": previous.isoformat(), "csrf": token},
    )
    assert closed.status_code == 422
    # Under the day's input, its refusal (the field named by where it shows, not in words).
    assert (
        f'id="category_from-error">{previous.isoformat()} is in or before the closed billing month'
        in closed.text
    )
    assert f'value="{previous.isoformat()}"' in closed.text  # what was typed stays
    not_a_day = hub.post(
        f"/web/members/{lea.id}/edit",
        data={**fields, "category": new, "category_from": "15/10/2026", "csrf": token},
    )
    assert not_a_day.status_code == 422 and 'id="category_from-error"' in not_a_day.text
    saved = hub.post(
        f"/web/members/{lea.id}/edit",
        data={**fields, "category": new, "category_from": first.isoformat(), "csrf": token},
    )
    assert saved.status_code == 200
    assert "Category history" in saved.text
    row = re.search(r"categories-heading.*?<tbody>(.*?)</tbody>", saved.text, re.S)
    assert row is not None and new in row.group(1) and before in row.group(1)
    api = hub.get(f"/api/v1/members/{lea.id}/categories").json()
    assert [(c["previous_category"], c["category"], c["effective_from"]) for c in api] == [
        (before, new, first.isoformat())
    ]

    # Taken back from the page: a trainer may not, a manager may, once (then nothing is left).
    undo = f"/web/members/{lea.id}/categories/undo"
    assert hub.post(undo).status_code == 403  # no form token
    taken = hub.post(undo, data={"csrf": token})
    assert taken.status_code == 200
    assert f"Category change taken back: {before} again." in taken.text
    assert "categories-heading" not in taken.text  # no history left to show
    with Session(engine) as session:
        assert session.get(Member, lea.id).category.value == before
    again = hub.post(undo, data={"csrf": token})
    assert again.status_code == 409 and "never changed" in again.text
    hub.cookies.clear()
    trainer = sign_in(hub, "test-trainer", PASSWORD)
    refused = hub.post(undo, data={"csrf": trainer})
    assert refused.status_code == 403 and "not open to your role" in refused.text


def test_an_admin_creates_and_edits_machines_and_types(hub: TestClient) -> None:
    token = sign_in(hub, "test-admin", PASSWORD)
    bad = hub.post(
        "/web/machines/new",
        data={"code": "Laser 2", "name": "Laser 2", "site": "lab", "machine_type": "laser"},
        headers={"X-CSRF-Token": token},
    )
    assert bad.status_code == 422 and 'id="code-error"' in bad.text
    unknown = hub.post(
        "/web/machines/new",
        data={"code": "lathe-1", "name": "Lathe", "site": "lab", "machine_type": "", "csrf": token},
    )
    assert unknown.status_code == 422 and 'id="machine_type-error"' in unknown.text
    typed = hub.post("/web/machine-types", data={"code": "lathe", "name": "Lathe", "csrf": token})
    assert typed.status_code == 200 and "lathe" in typed.text
    again = hub.post("/web/machine-types", data={"code": "lathe", "name": "Lathe", "csrf": token})
    assert again.status_code == 422 and "already exists" in again.text
    made = hub.post(
        "/web/machines/new",
        data={
            "code": "lathe-1",
            "name": "Lathe",
            "site": "lab",
            "machine_type": "lathe",
            "kind": "other",
            "csrf": token,
        },
    )
    assert made.status_code == 200 and "Lathe" in made.text
    assert hub.get("/api/v1/machines/lathe-1").json()["machine_type"] == "lathe"
    edited = hub.post(
        "/web/machines/lathe-1/edit",
        data={
            "name": "Metal lathe",
            "location": "Atelier métal",
            "machine_type": "cnc",
            "csrf": token,
        },
    )
    assert edited.status_code == 200 and "Metal lathe" in edited.text
    machine = hub.get("/api/v1/machines/lathe-1").json()
    assert machine["machine_type"] == "cnc" and machine["location"] == "Atelier métal"
    emptied = hub.post("/web/machines/lathe-1/edit", data={"name": " ", "csrf": token})
    assert emptied.status_code == 422 and 'id="name-error"' in emptied.text
    with Session(hub.app.state.engine) as session:
        lathe = session.exec(select(MachineType).where(MachineType.code == "lathe")).one()
    renamed = hub.post(
        f"/web/machine-types/{lathe.id}", data={"name": "Tour", "kind": "cnc", "csrf": token}
    )
    assert renamed.status_code == 200 and 'value="Tour"' in renamed.text


def test_an_admin_sets_and_clears_a_machines_plug_topic(hub: TestClient) -> None:
    token = sign_in(hub, "test-admin", PASSWORD)
    form = hub.get("/web/machines/laser-1/edit")
    assert 'name="plug_topic"' in form.text and "Smart plug topic" in form.text
    base = {"name": "Laser", "machine_type": "laser", "kind": "laser", "csrf": token}
    # The API's own rule and message, next to the field; nothing is saved.
    refused = hub.post("/web/machines/laser-1/edit", data=base | {"plug_topic": "tele/+/SENSOR"})
    assert refused.status_code == 422 and 'id="plug_topic-error"' in refused.text
    assert "name the one topic, without + or # wildcards" in refused.text
    assert 'value="tele/+/SENSOR"' in refused.text  # kept in the field to correct
    theirs = hub.post("/web/machines/laser-1/edit", data=base | {"plug_topic": "atelier/v1/x"})
    assert theirs.status_code == 422 and "not a $ topic nor one of Atelier" in theirs.text
    saved = hub.post(
        "/web/machines/laser-1/edit", data=base | {"plug_topic": " tele/plug-laser/SENSOR "}
    )
    assert saved.status_code == 200
    assert hub.get("/api/v1/machines/laser-1").json()["plug_topic"] == "tele/plug-laser/SENSOR"
    assert 'value="tele/plug-laser/SENSOR"' in hub.get("/web/machines/laser-1/edit").text
    cleared = hub.post("/web/machines/laser-1/edit", data=base | {"plug_topic": ""})
    assert cleared.status_code == 200
    assert hub.get("/api/v1/machines/laser-1").json()["plug_topic"] is None
    made = hub.post(
        "/web/machines/new",
        data={
            "code": "laser-2",
            "name": "Laser 2",
            "site": "lab",
            "machine_type": "laser",
            "plug_topic": "shellies/laser-2/relay/0/power",
            "csrf": token,
        },
    )
    assert made.status_code == 200
    machine = hub.get("/api/v1/machines/laser-2").json()
    assert machine["plug_topic"] == "shellies/laser-2/relay/0/power"
    bad = hub.post(
        "/web/machines/new",
        data={
            "code": "laser-3",
            "name": "Laser 3",
            "site": "lab",
            "machine_type": "laser",
            "plug_topic": "tele/plug laser/SENSOR",
            "csrf": token,
        },
    )
    assert bad.status_code == 422 and 'id="plug_topic-error"' in bad.text
    assert "printable ASCII without spaces" in bad.text
    assert hub.get("/api/v1/machines/laser-3").status_code == 404
    # In French: the label, the hint and the service's reason (plug_topic.wildcard) too.
    hub.cookies.set("atelier_lang", "fr")
    french = hub.post("/web/machines/laser-1/edit", data=base | {"plug_topic": "#"})
    assert "Topic de la prise connectée (facultatif)" in french.text
    assert french.status_code == 422 and 'id="plug_topic-error"' in french.text
    assert "nommez le topic exact, sans joker + ni #" in french.text


def test_an_admin_manages_users_and_everyone_their_own_tokens(hub: TestClient) -> None:
    engine = hub.app.state.engine
    with Session(engine) as session:
        lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
    token = sign_in(hub, "test-admin", PASSWORD)
    short = hub.post(
        "/web/users",
        data={"username": "lea", "password": "short", "role": "trainer", "csrf": token},
    )
    assert short.status_code == 422 and 'id="password-error"' in short.text
    unlinked = hub.post(
        "/web/users",
        data={"username": "lea", "password": "a-long-password", "role": "member", "csrf": token},
    )
    assert unlinked.status_code == 422 and 'id="member_id-error"' in unlinked.text
    made = hub.post(
        "/web/users",
        data={
            "username": "lea",
            "password": "a-long-password",
            "role": "member",
            "member_id": str(lea.id),
            "csrf": token,
        },
    )
    assert made.status_code == 200 and "lea" in made.text
    with Session(engine) as session:
        lea_user = session.exec(select(User).where(User.username == "lea")).one()
    # Léa makes herself a token; the secret is shown once and works as a Bearer token.
    hub.cookies.clear()
    lea_csrf = sign_in(hub, "lea", "a-long-password")
    nameless = hub.post("/web/account/tokens", data={"name": " ", "csrf": lea_csrf})
    assert nameless.status_code == 422 and 'id="name-error"' in nameless.text
    created = hub.post(
        "/web/account/tokens", data={"name": "my script", "expires_in_days": "30", "csrf": lea_csrf}
    )
    assert created.status_code == 200
    secret = re.search(r'id="secret" readonly value="([^"]+)"', created.text).group(1)
    assert secret not in hub.get("/web/account").text  # shown once
    script = {"Authorization": f"Bearer {secret}"}
    assert hub.get("/api/v1/users/me", headers=script).json()["username"] == "lea"
    with Session(engine) as session:
        mine = session.exec(select(ApiToken).where(ApiToken.name == "my script")).one()
    revoked = hub.post(f"/web/account/tokens/{mine.id}/revoke", data={"csrf": lea_csrf})
    assert revoked.status_code == 200 and "revoked" in revoked.text
    assert hub.get("/api/v1/users/me", headers=script).status_code == 401
    # Another's token is not hers to revoke.
    with Session(engine) as session:
        others = session.exec(select(ApiToken).where(ApiToken.user_id != lea_user.id)).first()
    assert (
        hub.post(f"/web/account/tokens/{others.id}/revoke", data={"csrf": lea_csrf}).status_code
        == 403
    )
    # The admin promotes her, then disables her: her web session ends at once.
    hub.cookies.clear()
    token = sign_in(hub, "test-admin", PASSWORD)
    stranger = hub.post(
        f"/web/users/{lea_user.id}",
        data={"role": "trainer", "member_id": "nobody@example.org", "active": "1", "csrf": token},
    )
    assert stranger.status_code == 422
    assert 'id="member_id-error">no member with email or number' in stranger.text
    promoted = hub.post(  # the member given by email this time
        f"/web/users/{lea_user.id}",
        data={"role": "trainer", "member_id": "lea@example.org", "active": "1", "csrf": token},
    )
    assert promoted.status_code == 200 and "user saved" in promoted.text
    assert 'value="lea@example.org"' in promoted.text  # the linked member, by email
    short = hub.post(f"/web/users/{lea_user.id}/password", data={"password": "x", "csrf": token})
    assert short.status_code == 422 and 'id="password-error"' in short.text
    disabled = hub.post(
        f"/web/users/{lea_user.id}",
        data={"role": "trainer", "member_id": str(lea.id), "csrf": token},
    )
    assert disabled.status_code == 200
    with Session(engine) as session:
        lea_user = session.get(User, lea_user.id)
        assert lea_user.role is Role.TRAINER and not lea_user.active
        live = session.exec(
            select(ApiToken).where(
                ApiToken.user_id == lea_user.id, col(ApiToken.revoked_at).is_(None)
            )
        ).all()
        assert live == []


def test_retention_settings_for_admins_read_only_for_managers(hub: TestClient) -> None:
    sign_in(hub, "test-manager", PASSWORD)
    page = hub.get("/web/settings")
    assert page.status_code == 200 and "Only an admin changes these rules." in page.text
    assert 'action="/web/settings/retention"' not in page.text
    hub.cookies.clear()
    token = sign_in(hub, "test-admin", PASSWORD)
    short = hub.post(
        "/web/settings/retention", data={"telemetry": "90", "events": "10", "csrf": token}
    )
    assert (
        short.status_code == 422 and 'id="events-error">events: keep them at least 30' in short.text
    )
    forever = hub.post("/web/settings/retention", data={"telemetry": "", "csrf": token})
    assert forever.status_code == 422 and 'id="telemetry-error"' in forever.text
    saved = hub.post(
        "/web/settings/retention",
        data={"telemetry": "60", "events": "400", "dead_letters": "", "csrf": token},
    )
    assert saved.status_code == 200 and 'value="400"' in saved.text
    rules = hub.get("/api/v1/retention").json()
    assert rules == {
        "telemetry": 60,
        "events": 400,
        "dead_letters": None,
        "badge_events": 90,  # not in the form: left as it was
        "sessions": 548,
    }


def test_an_admin_sets_the_labs_identity_and_sees_refusals_under_their_field(
    hub: TestClient,
) -> None:
    sign_in(hub, "test-manager", PASSWORD)
    page = hub.get("/web/settings")
    assert "The lab on its statements" in page.text
    assert 'action="/web/settings/identity"' not in page.text  # managers read it
    hub.cookies.clear()
    token = sign_in(hub, "test-admin", PASSWORD)
    wrong = hub.post(
        "/web/settings/identity",
        data={"siret": "73282932000075", "rna": "W691234567", "csrf": token},
        headers={"accept-language": "fr"},
    )
    assert wrong.status_code == 422
    assert 'id="siret-error">73282932000075 n&#39;est pas un SIRET valide' in wrong.text
    assert 'value="W691234567"' in wrong.text  # what was typed stays in the form
    # The name and address are the lab's form (shared with the yearly review).
    lab = hub.post(
        "/web/settings/lab",
        data={
            "name": "Fablab des Rivières",
            "address": "12 rue de l'Usine\n69001 Lyon",
            "opening_hours": "tue-sat 14:00-19:00",
            "csrf": token,
        },
    )
    assert lab.status_code == 200 and "Fablab des Rivières" in lab.text
    saved = hub.post(
        "/web/settings/identity",
        data={
            "siret": "732 829 320 00074",
            "rna": "W691234567",
            "vat_mention": "TVA non applicable, art. 293 B du CGI",
            "locale": "fr",
            "csrf": token,
        },
    )
    assert saved.status_code == 200 and "the lab&#39;s identity is saved" in saved.text
    assert 'value="73282932000074"' in saved.text and "69001 Lyon</textarea>" in saved.text
    wrong_account = hub.post(
        "/web/settings/books",
        data={"sales": "70 6", "csrf": token},
        headers={"accept-language": "fr"},
    )
    assert wrong_account.status_code == 422
    assert (
        'id="sales-error">sales : &#39;70 6&#39; n&#39;est pas un numéro de compte'
        in wrong_account.text
    )
    books = hub.post(
        "/web/settings/books", data={"sales": "7061", "prepaid": "4191", "csrf": token}
    )
    assert (
        books.status_code == 200 and 'value="7061"' in books.text and 'value="4191"' in books.text
    )


def test_a_manager_maps_tiers_and_imports_a_helloasso_export(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    french = {"accept-language": "fr"}
    refused = hub.post(
        "/web/settings/helloasso/tier",
        data={"tier": "Adhésion étudiante", "category": "vip", "csrf": token},
        headers=french,
    )
    assert (
        refused.status_code == 422
        and 'id="category-error">&#39;vip&#39; ne fait pas partie de' in refused.text
    )
    saved = hub.post(
        "/web/settings/helloasso/tier",
        data={"tier": "Adhésion étudiante", "category": "student", "csrf": token},
    )
    assert saved.status_code == 200 and "<td>Adhésion étudiante</td>" in saved.text
    export = (
        "\ufeffRéférence commande;Date de la commande;Statut de la commande;Nom adhérent;"
        "Prénom adhérent;Email payeur;Tarif;Montant tarif\r\n"
        "501;14/09/2026 18:42;Validé;Øster;Łukasz;lukasz@example.org;Adhésion étudiante;10,00\r\n"
        "502;14/09/2026;Validé;Sans;Tarif;x@example.org;Adhésion mystère;10,00\r\n"
    ).encode()
    files = {"file": ("adhesions.csv", export, "text/csv")}
    dry = hub.post(
        "/web/settings/helloasso/import",
        data={"kind": "memberships", "dry_run": "1", "csrf": token},
        files=files,
        headers=french,
    )
    assert dry.status_code == 200
    assert "Essai à blanc, rien n&#39;a changé. 2 ligne(s) : 1 membre(s) créé(s)" in dry.text
    assert (
        "ligne 3, Tarif : le tarif &#39;Adhésion mystère&#39; ne donne aucune catégorie" in dry.text
    )
    assert "lukasz@example.org" not in hub.get("/api/v1/members?limit=500").text
    real = hub.post(
        "/web/settings/helloasso/import",
        data={"kind": "memberships", "csrf": token},
        files=files,
    )
    assert real.status_code == 200 and "1 member(s) created" in real.text
    assert "Łukasz Øster" in hub.get("/api/v1/members?limit=500").text
    wrong = hub.post(
        "/web/settings/helloasso/import",
        data={"kind": "memberships", "csrf": token},
        files={"file": ("x.csv", b"name,email\n", "text/csv")},
    )
    assert wrong.status_code == 422 and 'id="ha_file-error">this is not HelloAsso' in wrong.text


def test_a_member_s_statements_language_is_set_in_their_form(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    form = hub.get("/web/members/2/edit").text
    assert '<option value="">the lab&#39;s language</option>' in form
    saved = hub.post(
        "/web/members/2/edit",
        data={"name": "Léa B.", "category": "student", "language": "fr", "csrf": token},
    )
    assert saved.status_code in (200, 303)
    assert hub.get("/api/v1/members/2").json()["language"] == "fr"
    kept = hub.post(  # a form without the box leaves it
        "/web/members/2/edit", data={"name": "Léa B.", "category": "student", "csrf": token}
    )
    assert kept.status_code in (200, 303)
    assert hub.get("/api/v1/members/2").json()["language"] == "fr"
    wrong = hub.post(
        "/web/members/2/edit",
        data={"name": "Léa B.", "category": "student", "language": "de", "csrf": token},
    )
    assert wrong.status_code == 422
    assert hub.get("/api/v1/members/2").json()["language"] == "fr"


def test_a_manager_tops_up_sets_a_plan_and_enters_rates(hub: TestClient) -> None:
    from hub.services.billing import BalanceMovement, BillingAccount, BillingRate

    engine = hub.app.state.engine
    with Session(engine) as session:
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
    token = sign_in(hub, "test-manager", PASSWORD)
    wrong = hub.post(
        "/web/billing/topup", data={"member_id": str(hugo.id), "amount": "douze", "csrf": token}
    )
    assert wrong.status_code == 422
    assert 'id="topup_amount-error">&#39;douze&#39; is not an amount in euros' in wrong.text
    nobody = hub.post("/web/billing/topup", data={"member_id": "", "amount": "5", "csrf": token})
    assert nobody.status_code == 422
    assert 'id="topup_member_id-error">give the member by email or number' in nobody.text
    stranger = hub.post(
        "/web/billing/topup",
        data={"member_id": "nobody@example.org", "amount": "5", "csrf": token},
    )
    assert stranger.status_code == 422
    assert 'id="topup_member_id-error">no member with email or number' in stranger.text
    topped = hub.post(
        "/web/billing/topup",
        data={"member_id": str(hugo.id), "amount": "12,50", "note": "receipt 42", "csrf": token},
    )
    assert topped.status_code == 200 and "Hugo Petit: +12,50 €" in topped.text
    planned = hub.post(
        "/web/billing/plan", data={"member_id": str(hugo.id), "plan": "prepaid", "csrf": token}
    )
    assert planned.status_code == 200
    # Any member is typed by email, account or not; account holders are suggested.
    assert '<option value="Hugo Petit">hugo@example.org</option>' in planned.text
    by_email = hub.post(
        "/web/billing/topup",
        data={"member_id": "LEA@example.org", "amount": "3", "csrf": token},
    )
    assert by_email.status_code == 200 and "+3,00 €" in by_email.text
    with Session(engine) as session:
        account = session.get(BillingAccount, hugo.id)
        assert account.balance_cents == 1250 and account.prepaid_only
        move = session.exec(
            select(BalanceMovement).where(BalanceMovement.member_id == hugo.id)
        ).one()
        assert move.note == "receipt 42" and move.actor == "user:test-manager"
    rate = {
        "machine_type": "laser",
        "category": "student",
        "effective_from": "2027-01-01",
        "cents_per_hour": "neuf",
        "csrf": token,
    }
    bad = hub.post("/web/billing/rates", data=rate)
    assert bad.status_code == 422
    assert 'id="rate_cents_per_hour-error">&#39;neuf&#39; is not an amount in euros' in bad.text
    # Rates are typed in euros: 9 €/h is kept as 900 cents.
    assert hub.post("/web/billing/rates", data={**rate, "cents_per_hour": "9"}).status_code == 200
    broken = hub.post(
        "/web/billing/rates/import",
        data={"csrf": token},
        files={"file": ("rates.csv", b"machine_type,category\nlaser,student\n", "text/csv")},
    )
    assert broken.status_code == 422 and "nothing was imported" in broken.text
    imported = hub.post(
        "/web/billing/rates/import",
        data={"csrf": token},
        files={"file": ("rates.csv", RATES_CSV.encode(), "text/csv")},
    )
    assert imported.status_code == 200 and "1 added, 1 replaced" in imported.text
    with Session(engine) as session:
        rates = session.exec(select(BillingRate)).all()
        assert sorted((r.machine_type, r.cents_per_hour) for r in rates) == [
            ("laser", 900),
            ("printer", 300),
        ]
        actions = {a.action for a in session.exec(select(AuditEntry))}
        assert {
            "billing.topup",
            "billing.plan",
            "billing.rate_set",
            "billing.rates_import",
        } <= actions


def test_billing_refusals_are_shown_in_french_under_their_field(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    french = {"Accept-Language": "fr"}
    wrong = hub.post(
        "/web/billing/topup",
        data={"member_id": "hugo@example.org", "amount": "douze", "csrf": token},
        headers=french,
    )
    assert wrong.status_code == 422
    assert 'id="topup_amount-error">&#39;douze&#39; n&#39;est pas un montant en euros' in wrong.text
    closed_type = hub.post(
        "/web/billing/rates",
        data={
            "machine_type": "plasma",
            "category": "student",
            "effective_from": "2027-01-01",
            "cents_per_hour": "900",
            "csrf": token,
        },
        headers=french,
    )
    assert closed_type.status_code == 422
    assert 'id="rate_machine_type-error">' in closed_type.text
    line = hub.post(
        "/web/billing/rates/import",
        data={"csrf": token},
        files={
            "file": (
                "tarifs.csv",
                b"machine_type,category,effective_from,cents_per_hour\nlaser,retraite,2027-01-01,1\n",
                "text/csv",
            )
        },
        headers=french,
    )
    assert line.status_code == 422
    assert "tarifs.csv : ligne 2, category : &#39;retraite&#39; n&#39;est pas" in line.text
    assert "rien n&#39;a été importé" in line.text


def test_the_new_forms_speak_french(hub: TestClient) -> None:
    sign_in(hub, "test-admin", PASSWORD)
    french = {"Accept-Language": "fr"}
    assert "Nouveau membre" in hub.get("/web/members/new", headers=french).text
    assert "Utilisateurs" in hub.get("/web/users", headers=french).text
    assert "Mes jetons d’API" in hub.get("/web/account", headers=french).text


def test_lockout_and_retention_refusals_speak_the_readers_language(hub: TestClient) -> None:
    fr = {"Accept-Language": "fr"}
    token = sign_in(hub, "test-maintainer", PASSWORD)
    empty = hub.post("/web/machines/laser-1/lock", data={"reason": "  ", "csrf": token}, headers=fr)
    assert empty.status_code == 422 and "la raison est vide" in empty.text
    assert hub.get("/api/v1/machines/laser-1").json()["locked"] is False
    nowhere = hub.post("/web/machines/nope-9/unlock", data={"csrf": token})
    assert nowhere.status_code == 404
    hub.cookies.clear()
    token = sign_in(hub, "test-admin", PASSWORD)
    words = hub.post(
        "/web/settings/retention",
        data={"telemetry": "douze", "events": "400", "csrf": token},
        headers=fr,
    )
    assert words.status_code == 422
    assert 'id="telemetry-error">donnez un nombre de jours' in words.text
    short = hub.post(
        "/web/settings/retention",
        data={"telemetry": "60", "events": "10", "csrf": token},
        headers=fr,
    )
    assert 'id="events-error">events : gardez-les au moins 30 jours' in short.text
    assert hub.get("/api/v1/retention").json()["telemetry"] != 60  # nothing saved
