"""The admins' notification API: webhooks (secret shown once, never again) and the delivery log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import Role
from hub.services import notifications
from hub.services.notification_preferences import MEMBER_KINDS
from tests.support.api import bearer, role_tokens


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[Role, str], object]]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    tokens = role_tokens(engine)
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    try:
        with TestClient(create_app(settings, start_ingest=False)) as client:
            yield client, tokens, engine
    finally:
        engine.dispose()


def test_the_secret_is_shown_once_and_only_admins_see_webhooks(
    lab: tuple[TestClient, dict[Role, str], object],
) -> None:
    client, tokens, _ = lab
    admin = bearer(tokens[Role.ADMIN])
    body = {"name": "lab-bot", "url": "https://bot.example.org/hook", "kinds": ["print.failed"]}
    created = client.post("/api/v1/webhooks", json=body, headers=admin)
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and created.json()["personal_data"] is False
    listed = client.get("/api/v1/webhooks", headers=admin)
    assert listed.status_code == 200 and "secret" not in listed.json()[0]
    assert secret not in listed.text
    for role in (Role.MANAGER, Role.MEMBER):
        assert client.get("/api/v1/webhooks", headers=bearer(tokens[role])).status_code == 403
    again = client.post("/api/v1/webhooks", json=body, headers=admin)
    assert again.status_code == 422 and again.json()["detail"][0]["loc"] == ["body", "name"]
    bad = client.post(
        "/api/v1/webhooks", json={**body, "name": "x", "url": "ftp://x"}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "url"]
    unknown = client.post(
        "/api/v1/webhooks", json={**body, "name": "y", "kinds": ["nope"]}, headers=admin
    )
    assert unknown.status_code == 422 and "nope" in unknown.json()["detail"][0]["msg"]
    hook_id = created.json()["id"]
    off = client.patch(f"/api/v1/webhooks/{hook_id}", json={"enabled": False}, headers=admin)
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert (
        client.patch("/api/v1/webhooks/999", json={"enabled": True}, headers=admin).status_code
        == 404
    )


def test_the_delivery_log_lists_messages_without_their_body(
    lab: tuple[TestClient, dict[Role, str], object],
) -> None:
    client, tokens, engine = lab
    with Session(engine) as session:  # type: ignore[call-overload]
        notifications.enqueue(
            session,
            cause="t",
            channel="email",
            recipient="hugo@example.org",
            kind="test",
            params={"lab": "Fablab secret words"},
            now=datetime.now(UTC),
        )
        session.commit()
    log = client.get(
        "/api/v1/notifications/deliveries?status=pending", headers=bearer(tokens[Role.ADMIN])
    )
    assert log.status_code == 200
    [row] = log.json()
    assert row["kind"] == "test" and row["status"] == "pending" and row["attempts"] == 0
    assert "secret words" not in log.text
    assert (
        client.get(
            "/api/v1/notifications/deliveries?status=lost", headers=bearer(tokens[Role.ADMIN])
        ).status_code
        == 422
    )
    assert (
        client.get(
            "/api/v1/notifications/deliveries", headers=bearer(tokens[Role.MANAGER])
        ).status_code
        == 403
    )


def test_each_person_chooses_and_managers_set_the_lab_default(
    lab: tuple[TestClient, dict[Role, str], object],
) -> None:
    client, tokens, _ = lab
    member, manager = bearer(tokens[Role.MEMBER]), bearer(tokens[Role.MANAGER])
    mine = client.get("/api/v1/notifications/preferences", headers=member).json()
    assert [p["kind"] for p in mine] == list(MEMBER_KINDS)  # no staff kind for a member
    assert {p["source"] for p in mine} == {"built-in"}
    lab_default = {"kind": "print.finished", "channel": "email", "enabled": False}
    assert (
        client.put("/api/v1/notifications/defaults", json=lab_default, headers=manager).status_code
        == 200
    )
    mine = {
        p["kind"]: p for p in client.get("/api/v1/notifications/preferences", headers=member).json()
    }
    assert mine["print.finished"] == {**lab_default, "source": "lab"}
    own = {"kind": "print.finished", "enabled": True}
    after = {
        p["kind"]: p
        for p in client.put("/api/v1/notifications/preferences", json=own, headers=member).json()
    }
    assert after["print.finished"]["enabled"] is True and after["print.finished"]["source"] == "own"
    staff_only = client.put(
        "/api/v1/notifications/preferences",
        json={"kind": "incident.opened", "enabled": True},
        headers=member,
    )
    assert staff_only.status_code == 422 and staff_only.json()["detail"][0]["loc"] == [
        "body",
        "kind",
    ]
    wrong = client.put(
        "/api/v1/notifications/defaults", json={"kind": "print.x", "enabled": True}, headers=manager
    )
    assert wrong.status_code == 422 and "print.finished" in wrong.json()["detail"][0]["msg"]
    assert (
        client.put("/api/v1/notifications/defaults", json=lab_default, headers=member).status_code
        == 403
    )
