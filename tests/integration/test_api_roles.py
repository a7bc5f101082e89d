"""The whole role x endpoint matrix: who gets in where, asserted for every route of the API.

Each case is a concrete request on the demo lab (hub/demo/seed.py). The member login is Hugo; the
trainer and maintainer logins are Camille, who trains on the laser and the printers and
maintains the CNC; the manager and the admin are not members. A role listed for a case must
get neither 401 nor 403 (nor a 5xx); every other role must get exactly 403, and a request
without a token 401. A route of the app missing from the table fails the test, so nobody
can add an endpoint without deciding who may call it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import ApiToken, Badge, Machine, Member, Role, Training, User
from hub.services.bookings import Actor, book, set_rules
from hub.services.maintenance.records import open_incident
from hub.services.maintenance.tasks import add_task
from tests.support.api import PASSWORD, bearer, role_tokens

M, T, X, G, A = Role.MEMBER, Role.TRAINER, Role.MAINTAINER, Role.MANAGER, Role.ADMIN
ALL = {M, T, X, G, A}
STAFF = {T, X, G, A}
MANAGE = {G, A}
PUBLIC = "public"
# Two days from now on the hour: a slot on every booking grid, within how far ahead.
SOON = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
SLOT = {"starts_at": SOON.isoformat(), "ends_at": (SOON + timedelta(hours=1)).isoformat()}

# (method, path template, body, roles allowed for this concrete request)
# {own} is the member's own member id (Hugo), {other} another member (Léa), {laser_training}
# a training on the laser, {cnc_training} one on the CNC. Which trainer may grant what is
# tested in test_api_crud.py; here Camille trains on every type.
CASES: list[tuple[str, str, dict[str, Any] | None, set[Role] | str]] = [
    ("GET", "/health", None, PUBLIC),
    ("POST", "/api/v1/auth/login", {"username": "test-member", "password": PASSWORD}, PUBLIC),
    ("POST", "/api/v1/auth/logout", None, ALL),
    ("GET", "/api/v1/users/me", None, ALL),
    ("GET", "/api/v1/users", None, {A}),
    (
        "POST",
        "/api/v1/users",
        {"username": "new", "password": "long enough!", "role": "admin"},
        {A},
    ),
    ("PATCH", "/api/v1/users/{user}", {"active": True}, {A}),
    ("GET", "/api/v1/tokens", None, ALL),
    ("POST", "/api/v1/tokens", {"name": "script"}, ALL),
    ("DELETE", "/api/v1/tokens/{spare_token}", None, {A}),
    ("GET", "/api/v1/members", None, STAFF),
    ("POST", "/api/v1/members", {"name": "Zoé", "category": "student"}, MANAGE),
    ("GET", "/api/v1/members/{own}", None, ALL),
    ("GET", "/api/v1/members/{other}", None, STAFF),
    ("PATCH", "/api/v1/members/{other}", {"category": "professional"}, MANAGE),
    ("DELETE", "/api/v1/members/{other}", None, {A}),
    ("GET", "/api/v1/members/{own}/export", None, {M, G, A}),
    ("GET", "/api/v1/members/{other}/export", None, MANAGE),
    ("POST", "/api/v1/members/{other}/erase", None, {A}),
    ("GET", "/api/v1/members/{own}/categories", None, {M, G, A}),
    ("GET", "/api/v1/members/{other}/categories", None, MANAGE),
    ("DELETE", "/api/v1/members/{other}/categories/latest", None, MANAGE),
    ("GET", "/api/v1/badges", None, MANAGE),
    ("POST", "/api/v1/badges", {"uid": "0A0B0C0D", "member_id": 2}, MANAGE),
    ("POST", "/api/v1/badges/{badge}/revoke", None, MANAGE),
    ("POST", "/api/v1/badges/read-requests", {"machine": "laser-1"}, MANAGE),
    ("GET", "/api/v1/badges/read-requests/{request}?machine=laser-1", None, MANAGE),
    ("GET", "/api/v1/trainings", None, ALL),
    ("GET", "/api/v1/trainings?member_id={other}", None, STAFF),
    (
        "POST",
        "/api/v1/trainings",
        {"member_id": 6, "machine_type": "laser", "level": "user"},
        {T},
    ),
    # Camille maintains the CNC: the maintainer level ranks above trainer.
    ("POST", "/api/v1/trainings", {"member_id": 6, "machine_type": "cnc"}, {T}),
    ("GET", "/api/v1/trainings/{own_training}", None, ALL),
    ("GET", "/api/v1/trainings/{laser_training}", None, STAFF),
    ("PATCH", "/api/v1/trainings/{laser_training}", {"supervised_only": True}, {T}),
    ("PATCH", "/api/v1/trainings/{cnc_training}", {"supervised_only": True}, {T}),
    ("DELETE", "/api/v1/trainings/{cnc_training}", None, {T, G, A}),
    ("GET", "/api/v1/machines", None, ALL),
    ("GET", "/api/v1/machines/laser-1", None, ALL),
    ("GET", "/api/v1/machines/laser-1/counters", None, ALL),
    ("GET", "/api/v1/machines/laser-1/telemetry", None, ALL),
    (
        "POST",
        "/api/v1/machines",
        {"code": "laser-2", "name": "Epilog", "site": "lab", "machine_type": "laser"},
        {A},
    ),
    ("PATCH", "/api/v1/machines/cnc-1", {"location": "Atelier métal"}, {A}),
    ("DELETE", "/api/v1/machines/printer-2", None, {A}),
    ("POST", "/api/v1/machines/laser-1/lock", {"reason": "lens cleaning"}, {X, G, A}),
    ("POST", "/api/v1/machines/laser-1/unlock", None, {X, G, A}),
    ("GET", "/api/v1/machine-types", None, ALL),
    ("POST", "/api/v1/machine-types", {"code": "sewing", "name": "Sewing machine"}, {A}),
    # The laser has trainers: the admin gets a 409 (test_first_trainer.py appoints one).
    ("POST", "/api/v1/machine-types/laser/first-trainer", {"member_id": 1}, {A}),
    ("GET", "/api/v1/sessions", None, ALL),
    ("GET", "/api/v1/sessions?member={other_ref}", None, STAFF),
    ("GET", "/api/v1/events", None, STAFF),
    ("GET", "/api/v1/audit", None, MANAGE),
    ("GET", "/api/v1/retention", None, MANAGE),
    ("PATCH", "/api/v1/retention", {"events": 365}, {A}),
    ("POST", "/api/v1/retention/apply", None, {A}),
    ("GET", "/api/v1/lab/identity", None, MANAGE),
    ("GET", "/api/v1/lab/accounts", None, MANAGE),
    ("GET", "/api/v1/helloasso/tiers", None, MANAGE),
    ("POST", "/api/v1/helloasso/import", None, MANAGE),
    ("PUT", "/api/v1/helloasso/tiers", {"tier": "Adhésion", "category": "individual"}, MANAGE),
    ("PATCH", "/api/v1/lab/accounts", {"sales": "7061"}, MANAGE),
    ("PATCH", "/api/v1/lab/identity", {"name": "Fablab des Trois Rivières"}, {A}),
    ("GET", "/api/v1/notifications/deliveries", None, {A}),
    ("GET", "/api/v1/notifications/preferences", None, ALL),
    ("PUT", "/api/v1/notifications/preferences", {"kind": "print.failed", "enabled": False}, ALL),
    ("GET", "/api/v1/notifications/defaults", None, MANAGE),
    ("PUT", "/api/v1/notifications/defaults", {"kind": "print.failed", "enabled": True}, MANAGE),
    ("GET", "/api/v1/webhooks", None, {A}),
    ("POST", "/api/v1/webhooks", {"name": "bot", "url": "https://bot.example.org/"}, {A}),
    ("PATCH", "/api/v1/webhooks/1", {"enabled": False}, {A}),
    ("GET", "/api/v1/ingest/stats", None, MANAGE),
    ("GET", "/metrics", None, MANAGE),
    ("GET", "/api/v1/maintenance/tasks", None, STAFF),
    ("GET", "/api/v1/maintenance/calendar.ics", None, STAFF),
    ("GET", "/api/v1/maintenance/incidents", None, STAFF),
    ("GET", "/api/v1/maintenance/interlock-faults", None, STAFF),
    (
        "POST",
        "/api/v1/maintenance/incidents",
        {"machine": "laser-1", "text": "smoke from the tube"},
        STAFF,
    ),
    # Camille signs the CNC's work off; the manager's and the admin's logins are no member.
    (
        "POST",
        "/api/v1/maintenance/tasks/{task_id}/sign-off",
        {"machine": "cnc-1", "note": "spindle cleaned"},
        {X},
    ),
    (
        "POST",
        "/api/v1/maintenance/incidents/{incident_id}/close",
        {"note": "fan replaced"},
        {X, G, A},
    ),
    ("GET", "/api/v1/bookings", None, ALL),
    ("GET", "/api/v1/bookings?member_id={other}", None, STAFF),
    # Members book for themselves: the manager's and the admin's logins are no member (422).
    ("POST", "/api/v1/bookings", {"machine": "laser-1", **SLOT}, ALL),
    ("POST", "/api/v1/bookings", {"machine": "laser-1", "block": True, **SLOT}, STAFF),
    ("GET", "/api/v1/bookings/{hugo_booking}", None, ALL),
    ("PATCH", "/api/v1/bookings/{hugo_booking}", {"note": "engraving"}, ALL),
    ("PATCH", "/api/v1/bookings/{lea_booking}", {"note": "engraving"}, STAFF),
    ("DELETE", "/api/v1/bookings/{lea_booking}", None, STAFF),
    ("GET", "/api/v1/bookings/feeds/member/{own}.ics", None, ALL),
    ("GET", "/api/v1/bookings/feeds/member/{other}.ics", None, STAFF),
    ("GET", "/api/v1/bookings/feeds/machine/laser-1.ics", None, ALL),
    ("GET", "/api/v1/booking-rules/machine-types/laser", None, ALL),
    ("PUT", "/api/v1/booking-rules/machine-types/laser", {"max_minutes": 120}, MANAGE),
    ("GET", "/api/v1/booking-rules/machines/laser-1", None, ALL),
    ("PUT", "/api/v1/booking-rules/machines/laser-1", {"max_minutes": 120}, MANAGE),
    ("GET", "/api/v1/stats/usage?from=2026-01-01&to=2027-01-01", None, MANAGE),
    ("GET", "/api/v1/stats/review?year=2026&format=xlsx", None, MANAGE),
    ("GET", "/api/v1/stats/bookings?from=2026-01-01&to=2027-01-01", None, MANAGE),
]


Lab = tuple[Path, dict[Role, str], dict[str, Any]]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """A migrated, seeded database with a login and a token per role, copied for each case
    so that cases never see each other's changes."""
    path = tmp_path_factory.mktemp("roles") / "template.db"
    url = f"sqlite:///{path}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    tokens = role_tokens(engine)
    with Session(engine) as session:

        def member(email: str) -> Member:
            return session.exec(select(Member).where(Member.email == email)).one()

        def training_of(who: Member, type_id: int) -> int:
            row = session.exec(
                select(Training).where(
                    Training.member_id == who.id, Training.machine_type_id == type_id
                )
            ).one()
            return row.id or 0

        hugo, lea = member("hugo@example.org"), member("lea@example.org")
        admin = session.exec(select(User).where(User.username == "test-admin")).one()
        spare = ApiToken(
            user_id=admin.id or 0, name="spare", token_hash="0" * 64, prefix="atl_spare000"
        )
        session.add(spare)
        for mtype in ("laser", "printer"):
            set_rules(session, machine_type=mtype, values={"bookable": True}, actor="test")
        staff = Actor(name="test", staff=True)
        bookings_made = {
            name: book(
                session,
                machine=machine,
                starts_at=SOON + timedelta(hours=3),
                ends_at=SOON + timedelta(hours=4),
                member_id=who.id,
                actor=staff,
                now=datetime.now(UTC),
                tz=ZoneInfo("Europe/Paris"),
            ).id
            for name, machine, who in (("hugo", "laser-1", hugo), ("lea", "printer-1", lea))
        }
        task = add_task(
            session, title="Clean the spindle", actor="test", machine="cnc-1", every_days=1
        )
        laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        incident = open_incident(session, machine=laser, source="web", text="smoke from the tube")
        session.commit()
        ids = {
            "own": hugo.id,
            "other": lea.id,
            "other_ref": lea.ref,
            "user": admin.id,
            "spare_token": spare.id,
            "badge": session.exec(select(Badge).where(Badge.member_id == lea.id)).one().id,
            "own_training": training_of(hugo, 1),
            "laser_training": training_of(member("contact@durand.example"), 1),
            "cnc_training": training_of(member("ines@example.org"), 3),
            "request": "0123abcd",
            "task_id": task.id,
            "incident_id": incident.id,
            "hugo_booking": bookings_made["hugo"],
            "lea_booking": bookings_made["lea"],
        }
    engine.dispose()
    return path, tokens, ids


@pytest.fixture
def lab(
    template: Lab, tmp_path: Path
) -> Iterator[tuple[TestClient, dict[Role, str], dict[str, Any]]]:
    path, tokens, ids = template
    db = tmp_path / "hub.db"
    shutil.copy(path, db)
    settings = get_settings(None, database_url=f"sqlite:///{db}", data_dir=tmp_path)
    with TestClient(create_app(settings, start_ingest=False)) as client:
        yield client, tokens, ids


def _case_id(case: tuple[str, str, Any, Any]) -> str:
    return f"{case[0]} {case[1]}" + (f" {sorted(case[2])}" if isinstance(case[2], dict) else "")


def test_every_route_is_in_the_matrix(template: Lab, tmp_path: Path) -> None:
    settings = get_settings(None, database_url=f"sqlite:///{template[0]}", data_dir=tmp_path)
    app = create_app(settings)
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    covered = {(method, path.split("?")[0]) for method, path, _, _ in CASES}
    templates = {
        (m, p.replace("{own}", "{member_id}").replace("{other}", "{member_id}")) for m, p in covered
    }
    normalised = set()
    for method, path in templates:
        for name in (
            "user",
            "spare_token",
            "badge",
            "own_training",
            "laser_training",
            "cnc_training",
            "request",
            "hugo_booking",
            "lea_booking",
        ):
            target = {
                "request": "request_id",
                "user": "user_id",
                "spare_token": "token_id",
                "badge": "badge_id",
                "hugo_booking": "booking_id",
                "lea_booking": "booking_id",
            }.get(name, "training_id")
            path = path.replace("{" + name + "}", "{" + target + "}")
        path = path.replace("laser-1", "{code}").replace("cnc-1", "{code}")
        path = path.replace("/webhooks/1", "/webhooks/{webhook_id}")
        path = path.replace("printer-2", "{code}").replace(
            "/machine-types/laser/", "/machine-types/{code}/"
        )
        if path.endswith("/booking-rules/machine-types/laser"):
            path = path.replace("/laser", "/{code}")
        normalised.add((method, path))
    missing = routes - normalised
    assert not missing, f"routes with no decision on who may call them: {sorted(missing)}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_role_matrix(
    case: tuple[str, str, dict[str, Any] | None, set[Role] | str],
    lab: tuple[TestClient, dict[Role, str], dict[str, Any]],
) -> None:
    client, tokens, ids = lab
    method, template, body, allowed = case
    path = template.format(**ids)
    anonymous = client.request(method, path, json=body)
    if allowed == PUBLIC:
        assert anonymous.status_code not in (401, 403), anonymous.text
        return
    assert anonymous.status_code == 401, f"{method} {path} without a token: {anonymous.text}"
    assert isinstance(allowed, set)
    # Refused roles first: a refused request must change nothing for the allowed ones.
    for role in sorted(Role, key=lambda r: r in allowed):
        answer = client.request(method, path, json=body, headers=bearer(tokens[role]))
        if role in allowed:
            assert answer.status_code not in (401, 403), f"{role} refused: {answer.text}"
            assert answer.status_code < 500, answer.text
        else:
            assert answer.status_code == 403, f"{role} let in on {method} {path}: {answer.text}"
