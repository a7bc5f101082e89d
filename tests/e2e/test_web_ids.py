"""An id in a screen's URL beyond what the databases store (32-bit ids on PostgreSQL) is an
unknown id, a 404, never a driver error (a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from hub.api.deps import MAX_ID
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.services.maintenance.tasks import add_task
from tests.e2e.web import sign_in
from tests.support.api import PASSWORD, role_tokens

UNKNOWN = 999_999  # in range, no such row: the answer every id out of range must get
OUT_OF_RANGE = [MAX_ID + 1, 2**63, 2**64, 10**30]


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        add_task(session, title="Clean the spindle", actor="test", machine="cnc-1", every_days=1)
        session.commit()
    role_tokens(engine)
    engine.dispose()
    app = create_app(
        get_settings(None, database_url=database_url, data_dir=tmp_path), start_ingest=False
    )
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/web/members/{id}", "no member with id"),  # screens.py
        ("/web/members/{id}/edit", "no member with id"),  # admin_screens.py
        ("/web/members/{id}/tap", "no member with id"),  # enrol_screens.py
    ],
)
def test_an_id_out_of_range_in_a_page_is_an_unknown_id(
    hub: TestClient, path: str, says: str
) -> None:
    sign_in(hub, "test-manager", PASSWORD)
    unknown = hub.get(path.format(id=UNKNOWN))
    assert unknown.status_code == 404 and says in unknown.text
    for big in OUT_OF_RANGE:
        page = hub.get(path.format(id=big))
        assert page.status_code == 404, (big, page.text[:300])
        assert says in page.text and str(big) in page.text
    assert hub.get(path.format(id=2)).status_code == 200  # the screen itself works


def test_an_id_out_of_range_in_a_form_is_an_unknown_id(hub: TestClient) -> None:
    token = sign_in(hub, "test-maintainer", PASSWORD)
    path = "/web/maintenance/tasks/{id}/sign-off"
    form = {"machine": "cnc-1", "note": "", "csrf": token}
    unknown = hub.post(path.format(id=UNKNOWN), data=form)
    assert unknown.status_code == 404 and "no maintenance task" in unknown.text
    for big in OUT_OF_RANGE:
        page = hub.post(path.format(id=big), data=form)
        assert page.status_code == 404 and "no maintenance task" in page.text, big
        closed = hub.post(
            f"/web/maintenance/incidents/{big}/close", data={"resolution": "", "csrf": token}
        )
        assert closed.status_code == 404 and "no incident" in closed.text, big
    hub.cookies.clear()
    token = sign_in(hub, "test-manager", PASSWORD)
    revoked = hub.post(f"/web/badges/{2**64}/revoke", data={"csrf": token})
    assert revoked.status_code == 404 and "no badge with id" in revoked.text
    for member_id in (UNKNOWN, 2**64):
        enrolled = hub.post(
            f"/web/members/{member_id}/badges", data={"uid": "0A0B0C0D", "csrf": token}
        )
        assert enrolled.status_code == 404 and "no member with id" in enrolled.text
