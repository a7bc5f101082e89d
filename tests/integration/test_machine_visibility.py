"""Who is on a machine: staff see the name; a member sees "in use" (and their own name) unless
the lab sets `members_see_who_uses_machines`. Checked in the API, the dashboard, its live
stream and the machine pages, with a member login and a staff login."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from hub.app import create_app
from hub.auth import create_user, issue_token
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.models import Machine, MachineKind, MachineType, Member, Role
from tests.support.api import PASSWORD, bearer

USING = "Ada Lovelace"
# The pages that show who is on a machine; the machine pages show no one, and must not
# either to a member.
PAGES = ["/"]
SILENT_PAGES = ["/web/machines", "/web/machines/laser-1"]


def _lab(url: str) -> dict[str, dict[str, str]]:
    """laser-1 in a session of Ada's; logins: a member (Bob), Ada herself, a trainer."""
    migrate(url)
    engine = make_engine(url)
    started = datetime.now(UTC) - timedelta(minutes=5)
    try:
        with Session(engine) as session:
            laser = MachineType(code="laser", name="Laser", kind=MachineKind.LASER)
            ada = Member(ref="m-ada", name=USING, email="ada@example.org")
            bob = Member(ref="m-bob", name="Bob Martin", email="bob@example.org")
            session.add_all([laser, ada, bob])
            session.flush()
            session.add(
                Machine(
                    code="laser-1",
                    name="Laser 1",
                    site="lab",
                    kind=MachineKind.LASER,
                    machine_type_id=laser.id or 0,
                    online=True,
                    last_seen=started,
                    last_status={
                        "relay": "closed",
                        "session": {
                            "session_id": "s-1",
                            "member": "m-ada",
                            "started_at": started.isoformat(),
                        },
                    },
                )
            )
            headers = {}
            for name, role, member in (
                ("bob", Role.MEMBER, bob),
                ("ada", Role.MEMBER, ada),
                ("trainer", Role.TRAINER, None),
            ):
                user = create_user(
                    session, username=name, password=PASSWORD, role=role, member=member
                )
                token, _ = issue_token(session, user, name="tests")
                headers[name] = bearer(token)
            session.commit()
    finally:
        engine.dispose()
    return headers


@pytest.fixture(params=[False, True], ids=["default", "members-see-who"])
def hub(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], bool]]:
    headers = _lab(database_url)
    settings = get_settings(
        None,
        database_url=database_url,
        data_dir=tmp_path,
        members_see_who_uses_machines=request.param,
    )
    with TestClient(create_app(settings, start_ingest=False)) as client:
        yield client, headers, request.param


def _shown(client: TestClient, headers: dict[str, str]) -> dict[str, bool]:
    """Where the name of who is on laser-1 appears, for this login."""
    listed = client.get("/api/v1/machines", headers=headers)
    one = client.get("/api/v1/machines/laser-1", headers=headers)
    assert listed.status_code == one.status_code == 200
    [machine] = listed.json()
    assert machine["state"] == one.json()["state"] == "in_use"  # "in use" is always shown
    shown = {
        "api list": machine["in_use_by"] == USING,
        "api one": one.json()["in_use_by"] == USING,
    }
    for path in PAGES:
        page = client.get(path, headers=headers)
        assert page.status_code == 200, (path, page.text)
        shown[path] = USING in page.text
    stream = client.get("/web/stream", headers=headers)
    assert stream.status_code == 200 and "event: card-laser-1" in stream.text
    shown["stream"] = USING in stream.text
    return shown


@pytest.fixture(autouse=True)
def _short_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.web import pages

    monkeypatch.setattr(pages, "STREAM_TICK_S", 0.05)
    monkeypatch.setattr(pages, "STREAM_LIFETIME_S", 0.2)


def test_staff_see_the_name_members_only_when_the_lab_says_so(
    hub: tuple[TestClient, dict[str, dict[str, str]], bool],
) -> None:
    client, headers, members_see_who = hub
    staff = _shown(client, headers["trainer"])
    assert all(staff.values()), staff
    member = _shown(client, headers["bob"])
    assert member == dict.fromkeys(member, members_see_who), member
    if not members_see_who:
        # Not even the pseudonymous reference stands in for the name.
        answer = client.get("/api/v1/machines", headers=headers["bob"]).json()
        assert answer[0]["in_use_by"] is None
        for path in [*PAGES, *SILENT_PAGES]:
            page = client.get(path, headers=headers["bob"])
            assert page.status_code == 200 and "m-ada" not in page.text and USING not in page.text


def test_a_member_sees_their_own_name_on_the_machine_they_use(
    hub: tuple[TestClient, dict[str, dict[str, str]], bool],
) -> None:
    client, headers, _ = hub
    own = _shown(client, headers["ada"])
    assert all(own.values()), own
