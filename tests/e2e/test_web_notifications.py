"""The notifications page: each person ticks what they receive, managers the lab's defaults,
admins read the webhooks and the delivery log; in English and French."""

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
from hub.services import notifications
from hub.services.notification_preferences import MEMBER_KINDS
from tests.e2e.web import sign_in
from tests.support.api import PASSWORD, role_tokens


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        notifications.enqueue(
            session,
            cause="c",
            channel="email",
            recipient="hugo@example.org",
            kind="print.failed",
            params={},
            now=datetime.now(UTC),
        )
        session.commit()
    role_tokens(engine)
    engine.dispose()
    app = create_app(
        get_settings(None, database_url=database_url, data_dir=tmp_path), start_ingest=False
    )
    with TestClient(app) as client:
        yield client


def test_a_member_chooses_in_french(hub: TestClient) -> None:
    hub.cookies.set("atelier_lang", "fr")
    token = sign_in(hub, "test-member", PASSWORD)
    page = hub.get("/web/notifications")
    assert page.status_code == 200
    assert (
        "Ce que je reçois par e-mail" in page.text
        and "Une de mes impressions a échoué" in page.text
    )
    assert "Les choix par défaut du lab" not in page.text and "Journal des envois" not in page.text
    assert "incident" not in page.text.lower().split("<main")[-1]  # staff kinds are not offered
    saved = hub.post("/web/notifications", data={"wanted": ["print.failed"], "csrf": token})
    assert saved.status_code == 200
    assert saved.text.count("(votre choix)") == len(MEMBER_KINDS)
    assert 'value="print.failed" checked' in saved.text
    assert 'value="print.finished" checked' not in saved.text


def test_managers_set_defaults_and_admins_read_the_log(hub: TestClient) -> None:
    sign_in(hub, "test-manager", PASSWORD)
    page = hub.get("/web/notifications")
    assert "The lab&#39;s defaults" in page.text and "Delivery log" not in page.text
    hub.cookies.clear()
    sign_in(hub, "test-admin", PASSWORD)
    page = hub.get("/web/notifications")
    assert (
        "Delivery log" in page.text and "hugo@example.org" in page.text and "waiting" in page.text
    )
