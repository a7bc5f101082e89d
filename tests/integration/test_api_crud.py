"""The API's writes: members, badges, trainings and machines, with the lab's rules, logins,
tokens and the lockout; and a revocation reaching the broker's retained list at once."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import AuditEntry, Member, Role, Training
from tests.support.api import PASSWORD, bearer, role_tokens
from tests.support.mosquitto import MosquittoBroker


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[Role, str], str]]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    tokens = role_tokens(engine)
    engine.dispose()
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    with TestClient(create_app(settings, start_ingest=False)) as client:
        yield client, tokens, database_url


def member_id(url: str, email: str) -> int:
    engine = make_engine(url)
    with Session(engine) as session:
        member = session.exec(select(Member).where(Member.email == email)).one()
    engine.dispose()
    assert member.id is not None
    return member.id


def test_members_are_created_found_changed_and_kept_when_they_have_history(lab) -> None:
    client, tokens, url = lab
    manager = bearer(tokens[Role.MANAGER])
    zoe = client.post(
        "/api/v1/members",
        json={"name": "Zoé Lambert", "email": " Zoe@Example.org ", "category": "student"},
        headers=manager,
    )
    assert zoe.status_code == 201, zoe.text
    assert zoe.json()["email"] == "zoe@example.org" and zoe.json()["ref"].startswith("m-")
    again = client.post(
        "/api/v1/members", json={"name": "Zoé", "email": "zoe@example.org"}, headers=manager
    )
    assert again.status_code == 409 and "zoe@example.org" in again.json()["detail"]
    bad = client.post("/api/v1/members", json={"name": "X", "email": "nope"}, headers=manager)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "email"]

    found = client.get("/api/v1/members", params={"q": "lamb"}, headers=manager).json()
    assert [m["name"] for m in found] == ["Zoé Lambert"]
    students = client.get("/api/v1/members", params={"category": "student"}, headers=manager)
    assert {m["name"] for m in students.json()} == {"Zoé Lambert", "Léa Bernard"}

    zid = zoe.json()["id"]
    changed = client.patch(
        f"/api/v1/members/{zid}", json={"category": "professional"}, headers=manager
    )
    assert changed.json()["category"] == "professional"
    payer = member_id(url, "contact@durand.example")
    assert (
        client.patch(f"/api/v1/members/{zid}", json={"payer_id": payer}, headers=manager).json()[
            "payer_id"
        ]
        == payer
    )
    self_paid = client.patch(f"/api/v1/members/{zid}", json={"payer_id": zid}, headers=manager)
    assert self_paid.status_code == 422

    admin = bearer(tokens[Role.ADMIN])
    hugo = member_id(url, "hugo@example.org")
    kept = client.delete(f"/api/v1/members/{hugo}", headers=admin)
    assert kept.status_code == 409 and "left" in kept.json()["detail"]
    client.patch(f"/api/v1/members/{zid}", json={"payer_id": None}, headers=manager)
    assert client.delete(f"/api/v1/members/{zid}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/members/{zid}", headers=admin).status_code == 404

    actions = [entry["action"] for entry in client.get("/api/v1/audit", headers=admin).json()]
    assert actions[0] == "member.delete" and "member.create" in actions
    assert all(
        entry["actor"].startswith("user:")
        for entry in client.get("/api/v1/audit", headers=admin).json()
    )


def test_a_member_sees_only_their_own_data(lab) -> None:
    client, tokens, url = lab
    hugo = bearer(tokens[Role.MEMBER])
    own, other = member_id(url, "hugo@example.org"), member_id(url, "lea@example.org")
    assert client.get(f"/api/v1/members/{own}", headers=hugo).json()["name"] == "Hugo Petit"
    assert client.get(f"/api/v1/members/{other}", headers=hugo).status_code == 403
    trainings = client.get("/api/v1/trainings", headers=hugo).json()
    assert trainings and {t["member_id"] for t in trainings} == {own}
    assert client.get(f"/api/v1/trainings?member_id={other}", headers=hugo).status_code == 403
    export = client.get(f"/api/v1/members/{own}/export", headers=hugo).json()
    assert export["member"]["email"] == "hugo@example.org"


def test_only_a_trainer_for_the_type_grants_and_the_grant_records_them(lab) -> None:
    client, tokens, url = lab
    camille = bearer(tokens[Role.TRAINER])
    nathan = member_id(url, "nathan@example.org")
    expiry = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    granted = client.post(
        "/api/v1/trainings",
        json={"member_id": nathan, "machine_type": "laser", "expires_at": expiry},
        headers=camille,
    )
    assert granted.status_code == 201, granted.text
    assert granted.json()["granted_by_id"] == member_id(url, "camille@example.org")

    # Hugo is only a user on the laser: with a trainer login he still may not grant.
    engine = make_engine(url)
    with Session(engine) as session:
        from hub.auth import create_user, issue_token

        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        user = create_user(
            session, username="hugo-trainer", password=PASSWORD, role=Role.TRAINER, member=hugo
        )
        token, _ = issue_token(session, user, name="t")
        session.commit()
    engine.dispose()
    refused = client.post(
        "/api/v1/trainings",
        json={"member_id": nathan, "machine_type": "printer"},
        headers=bearer(token),
    )
    assert refused.status_code == 403 and "trainer for printer" in refused.json()["detail"]

    # Re-certification: the same grant again renews the one training.
    later = (datetime.now(UTC) + timedelta(days=730)).isoformat()
    renewed = client.post(
        "/api/v1/trainings",
        json={"member_id": nathan, "machine_type": "laser", "expires_at": later},
        headers=camille,
    )
    assert renewed.json()["id"] == granted.json()["id"]
    assert renewed.json()["expires_at"].startswith(later[:16])
    naive = client.patch(
        f"/api/v1/trainings/{granted.json()['id']}",
        json={"expires_at": "2027-01-01T00:00:00"},
        headers=camille,
    )
    assert naive.status_code == 422 and "time zone" in naive.json()["detail"][0]["msg"]
    unknown = client.post(
        "/api/v1/trainings", json={"member_id": nathan, "machine_type": "loom"}, headers=camille
    )
    assert unknown.status_code == 422 and "laser" in unknown.json()["detail"][0]["msg"]

    engine = make_engine(url)
    with Session(engine) as session:
        rows = session.exec(select(Training).where(Training.member_id == nathan)).all()
        audit = session.exec(select(AuditEntry).where(AuditEntry.entity == "training")).all()
    engine.dispose()
    assert len(rows) == 1
    assert [a.action for a in audit] == ["training.grant", "training.renew"]


def test_badges_enrol_normalised_once_and_revoke_into_history(lab) -> None:
    client, tokens, url = lab
    manager = bearer(tokens[Role.MANAGER])
    lea = member_id(url, "lea@example.org")
    badge = client.post(
        "/api/v1/badges", json={"uid": "0a:0b:0c:0d", "member_id": lea}, headers=manager
    )
    assert badge.status_code == 201 and badge.json()["uid"] == "0A0B0C0D"
    twice = client.post(
        "/api/v1/badges", json={"uid": "0A0B0C0D", "member_id": lea}, headers=manager
    )
    assert twice.status_code == 409
    bad = client.post("/api/v1/badges", json={"uid": "hello", "member_id": lea}, headers=manager)
    assert bad.status_code == 422 and "04A1B2C3" in bad.json()["detail"][0]["msg"]
    revoked = client.post(f"/api/v1/badges/{badge.json()['id']}/revoke", headers=manager).json()
    assert revoked["revoked_at"] is not None
    history = client.get("/api/v1/badges", params={"member_id": lea}, headers=manager).json()
    assert len(history) == 2
    active = client.get(
        "/api/v1/badges", params={"member_id": lea, "active": True}, headers=manager
    ).json()
    assert [b["uid"] for b in active] == ["04B2C3D4"]
    # The card may be enrolled again once revoked (a found badge handed back).
    again = client.post(
        "/api/v1/badges", json={"uid": "0A0B0C0D", "member_id": lea}, headers=manager
    )
    assert again.status_code == 201


def test_machines_and_types_are_managed_by_the_admin(lab) -> None:
    client, tokens, _ = lab
    admin = bearer(tokens[Role.ADMIN])
    sewing = client.post(
        "/api/v1/machine-types", json={"code": "sewing", "name": "Sewing"}, headers=admin
    )
    assert sewing.status_code == 201
    made = client.post(
        "/api/v1/machines",
        json={"code": "brother-1", "name": "Brother", "site": "lab", "machine_type": "sewing"},
        headers=admin,
    )
    assert made.status_code == 201 and made.json()["state"] == "offline"
    assert (
        client.post(
            "/api/v1/machines",
            json={"code": "Bad Code", "name": "x", "site": "lab", "machine_type": "sewing"},
            headers=admin,
        ).status_code
        == 422
    )
    # The service's refusals keep FastAPI's 422 shape, with the stable code and the field.
    untyped = client.post(
        "/api/v1/machines",
        json={"code": "juki-1", "name": "Juki", "site": "lab", "machine_type": "quilting"},
        headers=admin,
    )
    assert untyped.status_code == 422 and untyped.json()["code"] == "machine_type.unknown"
    assert untyped.json()["detail"][0]["loc"] == ["body", "machine_type"]
    assert "sewing" in untyped.json()["detail"][0]["msg"]  # names the types there are
    taken = client.post(
        "/api/v1/machines",
        json={"code": "brother-1", "name": "B", "site": "lab", "machine_type": "sewing"},
        headers=admin,
    )
    assert taken.status_code == 409 and taken.json()["code"] == "machine.exists"
    missing = client.patch("/api/v1/machines/nope", json={"location": "x"}, headers=admin)
    assert missing.status_code == 404 and missing.json()["field"] == "machine"
    moved = client.patch("/api/v1/machines/brother-1", json={"location": "Textile"}, headers=admin)
    assert moved.json()["location"] == "Textile"
    maintainer = bearer(tokens[Role.MAINTAINER])
    locked = client.post(
        "/api/v1/machines/brother-1/lock", json={"reason": "needle"}, headers=maintainer
    )
    assert locked.json()["locked"] and locked.json()["lock_reason"] == "needle"
    assert (
        client.post(
            "/api/v1/machines/brother-1/lock", json={"reason": "  "}, headers=maintainer
        ).status_code
        == 422
    )
    assert not client.post("/api/v1/machines/brother-1/unlock", headers=maintainer).json()["locked"]
    assert client.delete("/api/v1/machines/brother-1", headers=admin).status_code == 204


def test_login_lockout_tokens_and_logout(lab, caplog: pytest.LogCaptureFixture) -> None:
    client, tokens, _ = lab
    caplog.set_level(logging.DEBUG)
    ok = client.post("/api/v1/auth/login", json={"username": "test-admin", "password": PASSWORD})
    assert ok.status_code == 200 and ok.cookies.get("atelier_session")
    session_token = ok.json()["token"]
    assert client.get("/api/v1/users/me", headers=bearer(session_token)).status_code == 200

    # An API token: shown once, listed by prefix only, revoked at once.
    made = client.post("/api/v1/tokens", json={"name": "prometheus"}, headers=bearer(session_token))
    raw = made.json()["token"]
    listed = client.get("/api/v1/tokens", headers=bearer(session_token)).json()
    assert raw not in json.dumps(listed) and made.json()["info"]["prefix"] == raw[:12]
    assert client.get("/metrics", headers=bearer(raw)).status_code == 200
    client.delete(f"/api/v1/tokens/{made.json()['info']['id']}", headers=bearer(session_token))
    assert client.get("/metrics", headers=bearer(raw)).status_code == 401

    assert client.post("/api/v1/auth/logout", headers=bearer(session_token)).status_code == 204
    assert client.get("/api/v1/users/me", headers=bearer(session_token)).status_code == 401

    # Five wrong passwords lock the account: then even the right one is refused, with a wait.
    for _ in range(5):
        wrong = client.post(
            "/api/v1/auth/login", json={"username": "test-manager", "password": "wrong password"}
        )
        assert wrong.status_code == 401
    locked = client.post(
        "/api/v1/auth/login", json={"username": "test-manager", "password": PASSWORD}
    )
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 800
    # Secrets never reach the logs.
    logged = caplog.text
    assert PASSWORD not in logged and raw not in logged and session_token not in logged


def test_many_failures_from_one_address_slow_it_down(lab) -> None:
    client, _, _ = lab
    for attempt in range(20):
        answer = client.post(
            "/api/v1/auth/login", json={"username": f"guess-{attempt}", "password": "x" * 10}
        )
        assert answer.status_code == 401
    blocked = client.post(
        "/api/v1/auth/login", json={"username": "test-admin", "password": PASSWORD}
    )
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers


def test_the_web_page_signs_in_and_out(lab) -> None:
    client, _, _ = lab
    first = client.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login"
    # The login form carries a CSRF token tied to a pre-session cookie; without it, 403.
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', form.text).group(1)
    forged = client.post("/login", data={"username": "test-admin", "password": PASSWORD})
    assert forged.status_code == 403 and "atelier_session" not in client.cookies
    refused = client.post(
        "/login", data={"username": "test-admin", "password": "nope nope", "csrf": token}
    )
    assert refused.status_code == 401 and "wrong username or password" in refused.text
    signed = client.post(
        "/login", data={"username": "test-admin", "password": PASSWORD, "csrf": token}
    )
    assert signed.status_code == 200 and "Trotec Speedy 100" in signed.text
    assert client.get("/api/v1/machines").status_code == 200  # the API, by cookie
    # Signed in, the token follows the login's own cookie: the old one no longer works.
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', signed.text).group(1)
    assert client.post("/logout", data={"csrf": "0" * 64}).status_code == 403
    assert client.get("/api/v1/machines").status_code == 200
    client.post("/logout", data={"csrf": token})
    assert client.get("/api/v1/machines").status_code == 401


def test_a_badge_revoked_through_the_api_leaves_the_retained_list_at_once(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    tokens = role_tokens(engine)
    engine.dispose()
    user, password = mosquitto.hub_user, mosquitto.hub_password
    settings = get_settings(
        None,
        database_url=url,
        data_dir=tmp_path,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_username=user,
        mqtt_password=password,
    )
    lists: list[dict] = []
    got = threading.Condition()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with got:
            lists.append(json.loads(message.payload)["list"])
            got.notify_all()

    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.username_pw_set(user, password)
    watcher.on_message = on_message
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe("atelier/v1/lab/laser-1/acl", qos=1)
    watcher.loop_start()
    try:
        with TestClient(create_app(settings)) as client:
            manager = bearer(tokens[Role.MANAGER])

            def latest_has(uid: str) -> bool | None:
                with got:
                    if not lists:
                        return None
                    return any(e["badge"] == uid for e in lists[-1]["entries"])

            with got:
                assert got.wait_for(lambda: lists, timeout=20), "no list published at start"
            assert latest_has("04C3D4E5")
            badges = client.get("/api/v1/badges", params={"uid": "04C3D4E5"}, headers=manager)
            client.post(f"/api/v1/badges/{badges.json()[0]['id']}/revoke", headers=manager)
            with got:
                assert got.wait_for(lambda: latest_has("04C3D4E5") is False, timeout=10), (
                    "the revoked badge is still on the laser's list"
                )
    finally:
        watcher.loop_stop()
        watcher.disconnect()


def test_a_change_signed_by_the_web_cookie_must_come_from_the_hub_itself(lab) -> None:
    """A page on another site cannot make a signed-in browser change anything (CSRF)."""
    client, tokens, _ = lab
    signed = client.post(
        "/api/v1/auth/login", json={"username": "test-admin", "password": PASSWORD}
    )
    assert signed.status_code == 200 and client.cookies.get("atelier_session")
    body = {"name": "Forged Member", "email": "forged@example.org"}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a file
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://testserver.evil.example"},
    ):
        refused = client.post("/api/v1/members", json=body, headers=headers)
        assert refused.status_code == 403, headers
        assert "cross-site" in refused.json()["detail"]
    # Reading is not a change; the hub's own pages, and tools without a browser's headers, may.
    assert (
        client.get("/api/v1/members", headers={"Origin": "https://evil.example"}).status_code == 200
    )
    same = client.post("/api/v1/members", json=body, headers={"Origin": "http://testserver"})
    assert same.status_code == 201, same.text
    other = {"name": "Second", "email": "second@example.org"}
    assert (
        client.post(
            "/api/v1/members", json=other, headers={"Sec-Fetch-Site": "same-origin"}
        ).status_code
        == 201
    )
    # A bearer token is not sent by a browser on its own: no origin check for it.
    client.cookies.clear()
    third = {"name": "Third", "email": "third@example.org"}
    with_token = client.post(
        "/api/v1/members",
        json=third,
        headers={**bearer(tokens[Role.MANAGER]), "Origin": "https://tools.example"},
    )
    assert with_token.status_code == 201
