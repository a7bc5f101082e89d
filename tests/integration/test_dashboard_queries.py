"""The live dashboard reads only the members it shows, whatever the size of the member table.

It is redrawn every second per open dashboard (/web/stream): loading every member's name on
each tick was the whole member table, each second, per browser. These tests count what is read
from the member table (statements, and rows returned), never how long it takes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine, Result
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select

from hub.app import create_app
from hub.auth import create_user, issue_token
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.models import Machine, MachineKind, MachineSession, MachineType, Member, Role, User
from hub.services.machine_views import machines_public
from tests.support.api import PASSWORD, bearer

MEMBERS = 2000
IN_SESSION = "m-insession"
# Staff see who is on a machine whatever the lab's setting (hub/api/machines.py).
STAFF_VIEWER = User(username="manager", password_hash="-", role=Role.MANAGER)
FROM_MEMBER = re.compile(r"\bFROM member\b", re.IGNORECASE)


@dataclass
class MemberReads:
    statements: int = 0  # statements sent to the database that read the member table
    rows: list[int] = field(default_factory=list)  # rows each ORM query on it returned


@contextmanager
def member_reads(engine: Engine) -> Iterator[MemberReads]:
    """Count, while open, what any session on this engine reads from the member table."""
    reads = MemberReads()

    def on_cursor(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if FROM_MEMBER.search(statement):
            reads.statements += 1

    def on_orm(state: ORMExecuteState) -> Result[Any] | None:
        froms = state.statement.get_final_froms() if state.is_select else []  # type: ignore[attr-defined]
        if "member" not in {getattr(table, "name", None) for table in froms}:
            return None
        frozen = state.invoke_statement().freeze()
        reads.rows.append(len(frozen.data))
        return frozen()

    event.listen(engine, "before_cursor_execute", on_cursor)
    event.listen(OrmSession, "do_orm_execute", on_orm)
    try:
        yield reads
    finally:
        event.remove(OrmSession, "do_orm_execute", on_orm)
        event.remove(engine, "before_cursor_execute", on_cursor)


def _lab(url: str, members: int) -> None:
    """Two machines, one of them in a badge session; `members` members in all."""
    migrate(url)
    engine = make_engine(url)
    started = datetime.now(UTC) - timedelta(minutes=5)
    with Session(engine) as session:
        laser = MachineType(code="laser", name="Laser", kind=MachineKind.LASER)
        session.add(laser)
        session.flush()
        session.add_all(
            Member(ref=f"m-{i:08x}", name=f"Member {i}", email=f"m{i}@example.org")
            for i in range(members - 1)
        )
        session.add(Member(ref=IN_SESSION, name="Ada Lovelace"))
        for code, live in (("laser-1", True), ("laser-2", False)):
            status = {
                "relay": "closed" if live else "open",
                "busy": False,
                "session": {
                    "session_id": "s-1",
                    "member": IN_SESSION,
                    "badge": "0A0B0C0D",
                    "mode": "normal",
                    "started_at": started.isoformat(),
                }
                if live
                else None,
            }
            session.add(
                Machine(
                    code=code,
                    name=code.title(),
                    site="lab",
                    kind=MachineKind.LASER,
                    machine_type_id=laser.id or 0,
                    online=True,
                    last_status=status,
                    last_seen=started,
                )
            )
        session.add(
            MachineSession(
                id="s-1", site="lab", machine="laser-1", member_ref=IN_SESSION, started_at=started
            )
        )
        session.commit()
    engine.dispose()


def test_machines_public_reads_one_member_row_for_one_open_session(database_url: str) -> None:
    _lab(database_url, MEMBERS)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, member_reads(engine) as reads:
            machines = machines_public(session, viewer=STAFF_VIEWER, members_see_names=False)
        assert [(m.code, m.state, m.in_use_by) for m in machines] == [
            ("laser-1", "in_use", "Ada Lovelace"),
            ("laser-2", "idle", None),
        ]
        assert reads.statements == 1
        assert reads.rows == [1]  # not MEMBERS
        # No session open: no member is read at all.
        with Session(engine) as session:
            for machine in session.exec(select(Machine)):
                machine.last_status = {"relay": "open", "session": None}
                session.add(machine)
            session.commit()
        with Session(engine) as session, member_reads(engine) as reads:
            assert all(
                m.in_use_by is None
                for m in machines_public(session, viewer=STAFF_VIEWER, members_see_names=False)
            )
        assert reads.statements == 0 and reads.rows == []
    finally:
        engine.dispose()


def test_an_unknown_member_ref_is_shown_as_is(sqlite_url: str) -> None:
    # The same answer as before: a ref with no member row (say, erased) shows the ref.
    _lab(sqlite_url, 3)
    engine = make_engine(sqlite_url)
    try:
        with Session(engine) as session:
            member = session.exec(select(Member).where(Member.ref == IN_SESSION)).one()
            session.delete(member)
            session.commit()
            assert (
                machines_public(session, viewer=STAFF_VIEWER, members_see_names=False)[0].in_use_by
                == IN_SESSION
            )
    finally:
        engine.dispose()


@pytest.fixture
def dashboard(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    from hub.web import pages

    # A stream that ends by itself after a few ticks, so the test client can read it whole.
    monkeypatch.setattr(pages, "STREAM_TICK_S", 0.05)
    monkeypatch.setattr(pages, "STREAM_LIFETIME_S", 0.3)
    _lab(database_url, MEMBERS)
    engine = make_engine(database_url)
    with Session(engine) as session:
        user = create_user(session, username="boss", password=PASSWORD, role=Role.MANAGER)
        token, _ = issue_token(session, user, name="tests")
        session.commit()
    engine.dispose()
    app = create_app(
        get_settings(None, database_url=database_url, data_dir=tmp_path), start_ingest=False
    )
    with TestClient(app) as client:
        yield client, bearer(token)


def test_the_dashboard_and_its_stream_read_only_the_member_in_session(
    dashboard: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = dashboard
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with member_reads(engine) as reads:
        page = client.get("/", headers=headers)
    assert page.status_code == 200 and "Ada Lovelace" in page.text
    assert reads.statements == 1 and reads.rows == [1]

    with member_reads(engine) as reads:
        streamed = client.get("/web/stream", headers=headers)
    assert streamed.status_code == 200
    assert "event: card-laser-1" in streamed.text and "Ada Lovelace" in streamed.text
    # One statement per tick, each returning the one member in session.
    assert reads.statements >= 1 and reads.statements == len(reads.rows)
    assert set(reads.rows) == {1}


@pytest.mark.parametrize(
    "path", ["/web/machines/laser-1", "/web/trainings", "/web/billing", "/web/members/new"]
)
def test_the_machine_trainings_and_billing_pages_read_only_the_members_they_name(
    dashboard: tuple[TestClient, dict[str, str]], path: str
) -> None:
    """They used to load every member to look up a few names (the member form: to offer
    every member as a payer)."""
    client, headers = dashboard
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with member_reads(engine) as reads:
        page = client.get(path, headers=headers)
    assert page.status_code == 200
    assert all(rows <= 1 for rows in reads.rows), reads.rows  # never MEMBERS
    if path == "/web/machines/laser-1":  # its one session names Ada
        assert "Ada Lovelace" in page.text and reads.rows
