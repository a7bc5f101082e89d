"""Erasure leaves nothing that names the member, anywhere: every table and column (found by
inspecting the schema, so a table added later is searched too) and, on SQLite, the raw bytes
of the database file and its write-ahead log. The export before it holds all they have.

The lab is built through the hub's own paths: events through the ingest writer (a badge read,
a session with a print job and an incident, a retained status naming the card, malformed
badge events turned into dead letters), a login and tokens from the CLI, a badge enrolled
and an incident reported through the API, a month closed into a statement.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app as cli
from hub.app import create_app
from hub.billing_store import close_month, import_rates
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import ApiToken, Member, MemberCategory, Role, User
from protocol import EventType, encode_envelope, new_envelope
from protocol.messages import Status
from tests.support.api import bearer, role_tokens

runner = CliRunner()
SITE, MACHINE = "lab", "laser-1"
EVENTS = f"atelier/v1/{SITE}/{MACHINE}/event"
NAME, EMAIL, UID = "Hugo Petit", "hugo@example.org", "04C3D4E5"
SECOND_UID = "0A1B2C3D"  # enrolled through the API during the test
LOGIN = "hugo.petit"
JOB_FILE = f"{NAME} bracket.gcode"  # people name their files after themselves


@dataclass
class Lab:
    url: str
    engine: Engine
    client: TestClient
    admin: dict[str, str]
    member_id: int
    ref: str
    member_token: str


def _event(seq: int, type: EventType, **data: Any) -> Incoming:
    envelope = new_envelope(machine=MACHINE, type=type, seq=seq, data=data)
    return Incoming(EVENTS, encode_envelope(envelope))


def _ingest(engine: Engine, ref: str) -> None:
    writer = IngestWriter(engine)
    writer.write_batch(
        [
            _event(1, EventType.BADGE_READ, badge=UID, request_id="r1"),
            _event(2, EventType.BADGE_GRANTED, badge=UID, member=ref, session_id="s1"),
            _event(3, EventType.SESSION_STARTED, session_id="s1", member=ref, badge=UID),
            _event(4, EventType.JOB_STARTED, job_id="j1", file=JOB_FILE, member=ref),
            _event(5, EventType.INCIDENT_REPORTED, source="button", note="lens", member=ref),
        ]
    )
    writer.write_batch(
        [
            _event(6, EventType.JOB_FINISHED, job_id="j1", duration_s=60, member=ref),
            _event(
                7,
                EventType.SESSION_ENDED,
                session_id="s1",
                member=ref,
                reason="out",
                duration_s=600,
            ),
            # The retained status of a machine in use names the session's card.
            Incoming(
                f"atelier/v1/{SITE}/{MACHINE}/status",
                Status(
                    machine=MACHINE,
                    state="online",
                    session={"session_id": "s2", "member": ref, "badge": UID},
                ).encode(),
            ),
            # Malformed badge events from a confused reader: dead letters holding the UID
            # (written another way), the name and the email.
            Incoming(
                EVENTS,
                json.dumps(
                    {"v": 1, "type": "badge.granted", "data": {"badge": "04:c3:d4:e5"}}
                ).encode(),
            ),
            Incoming(
                EVENTS,
                json.dumps({"v": 1, "note": f"{NAME} <{EMAIL}>", "uid": UID}).encode(),
            ),
        ]
    )


def _close_the_month(engine: Engine) -> None:
    rates = "machine_type,category,effective_from,cents_per_hour,start_fee_cents\n" + "".join(
        f"laser,{c.value},2020-01-01,1200,150\n" for c in MemberCategory
    )
    now = datetime.now(UTC)
    month = now.strftime("%Y-%m")
    after = datetime(now.year + now.month // 12, now.month % 12 + 1, 2, tzinfo=UTC)
    with Session(engine) as session:
        import_rates(session, rates)
        close_month(session, month, tz=ZoneInfo("Europe/Paris"), now=after, actor="test")
        session.commit()


@pytest.fixture
def lab(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site=SITE)
        hugo = session.exec(select(Member).where(Member.email == EMAIL)).one()
        member_id, ref = hugo.id, hugo.ref
    assert member_id is not None
    tokens = role_tokens(engine)
    _ingest(engine, ref)
    _close_the_month(engine)
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "hub"))
    # The login and a token, from the CLI as an operator creates them (audited).
    added = runner.invoke(
        cli,
        ["hub", "user", "add", LOGIN, "--member", EMAIL, "--password-stdin"],
        input="correct horse battery\n",
    )
    assert added.exit_code == 0, added.output
    issued = runner.invoke(cli, ["hub", "user", "token", LOGIN, "--name", "laptop"])
    assert issued.exit_code == 0, issued.output
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path / "hub")
    try:
        with TestClient(create_app(settings, start_ingest=False)) as client:
            admin = bearer(tokens[Role.ADMIN])
            enrolled = client.post(
                "/api/v1/badges", json={"uid": SECOND_UID, "member_id": member_id}, headers=admin
            )
            assert enrolled.status_code == 201, enrolled.text
            reported = client.post(
                "/api/v1/maintenance/incidents",
                json={"machine": MACHINE, "text": f"{NAME} says the lens is dirty"},
                headers=admin | {"Content-Type": "application/json"},
            )
            assert reported.status_code == 201, reported.text
            yield Lab(
                database_url,
                engine,
                client,
                admin,
                member_id,
                ref,
                issued.output.strip().splitlines()[-1],
            )
    finally:
        engine.dispose()


def _needles() -> list[str]:
    uid_forms = [
        form
        for uid in (UID, SECOND_UID)
        for form in (uid, ":".join(uid[i : i + 2] for i in (0, 2, 4, 6)))
    ]
    return [NAME, EMAIL, LOGIN, "test-member", *uid_forms]


def _found_in_tables(engine: Engine) -> list[str]:
    """Every row of every table, every column as text, searched case-insensitively."""
    needles = [n.lower() for n in _needles()]
    found = []
    inspector = sa.inspect(engine)
    with engine.connect() as conn:
        for table in inspector.get_table_names():
            columns = [c["name"] for c in inspector.get_columns(table)]
            quoted = ", ".join(f'"{c}"' for c in columns)
            for row in conn.exec_driver_sql(f'SELECT {quoted} FROM "{table}"'):
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    text = (
                        bytes(value).decode("utf-8", "replace")
                        if isinstance(value, bytes | memoryview)
                        else str(value)
                    ).lower()
                    found += [f"{table}.{column}: {n}" for n in needles if n in text]
    return found


def _found_in_files(url: str) -> list[str]:
    path = Path(make_url(url).database or "")
    found = []
    for file in (path, path.with_name(path.name + "-wal")):
        if not file.exists():
            continue
        data = file.read_bytes().lower()
        found += [f"{file.name}: {n}" for n in _needles() if n.lower().encode() in data]
    return found


def test_the_export_holds_login_tokens_money_statements_incidents_and_jobs(lab: Lab) -> None:
    # The member asks for it themselves, with their own token.
    answer = lab.client.get(
        f"/api/v1/members/{lab.member_id}/export", headers=bearer(lab.member_token)
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    # Two logins: the tests' member login (tests/support/api.py links it to Hugo) and his own.
    logins = {login["username"]: login for login in data["logins"]}
    assert set(logins) == {LOGIN, "test-member"}
    login = logins[LOGIN]
    assert login["role"] == "member" and login["active"] is True
    assert [t["name"] for t in login["tokens"]] == ["laptop"]
    assert "token_hash" not in json.dumps(data)
    assert {b["uid"] for b in data["badges"]} == {UID, SECOND_UID}
    [statement] = data["statements"]
    assert statement["payer_ref"] == lab.ref and statement["payer_name"] == NAME
    assert [line["session_id"] for line in data["statement_lines"]] == ["s1"]
    assert [m["kind"] for m in data["balance_movements"]] == ["charge"] or all(
        m["cents"] for m in data["balance_movements"]
    )
    assert [i["source"] for i in data["incidents"]] == ["button"]
    assert [(j["job_id"], j["file"]) for j in data["print_jobs"]] == [("j1", JOB_FILE)]


def test_erasure_leaves_no_name_email_uid_or_login_anywhere(lab: Lab) -> None:
    before = _found_in_tables(lab.engine)
    # The lab really holds them in the places erasure must reach, or this test proves nothing.
    for place in (
        "member.name",
        "audit.",
        "statement.payer_name",
        "dead_letter.payload",
        "event.data",
        "print_job.file",
        "machine.last_status",
        "user.username",
        "incident.text",
    ):
        assert any(f.startswith(place) for f in before), (place, before)

    exported = lab.client.get(f"/api/v1/members/{lab.member_id}/export", headers=lab.admin)
    answer = lab.client.post(f"/api/v1/members/{lab.member_id}/erase", headers=lab.admin)
    assert answer.status_code == 200, answer.text
    counts = answer.json()
    assert counts["logins"] == 2 and counts["tokens"] == 2 and counts["dead_letters"] == 2

    assert _found_in_tables(lab.engine) == []
    if lab.url.startswith("sqlite"):
        assert _found_in_files(lab.url) == []

    # The login is disabled and its token no longer opens anything.
    refused = lab.client.get("/api/v1/users/me", headers=bearer(lab.member_token))
    assert refused.status_code == 401
    with Session(lab.engine) as session:
        users = session.exec(select(User).where(User.member_id == lab.member_id)).all()
        assert len(users) == 2 and not any(u.active for u in users)
        for user in users:
            tokens = session.exec(select(ApiToken).where(ApiToken.user_id == user.id)).all()
            assert tokens and all(t.revoked_at is not None for t in tokens)
    # The history is kept under the pseudonymous reference: sessions, statements, lines.
    export = lab.client.get(f"/api/v1/members/{lab.member_id}/export", headers=lab.admin).json()
    assert export["member"]["ref"] == lab.ref and export["member"]["name"] == "(erased)"
    kept = ("sessions", "statement_lines", "incidents", "balance_movements")
    assert {k: export[k] for k in kept} == {k: exported.json()[k] for k in kept}
    [job] = export["print_jobs"]  # the job stays; its file no longer names him
    assert job == {**exported.json()["print_jobs"][0], "file": "ERASED bracket.gcode"}
    [statement] = export["statements"]
    assert statement["payer_name"] == "(erased)"
    assert statement["total_cents"] == exported.json()["statements"][0]["total_cents"]


def test_a_reader_holding_the_log_is_reported_and_the_next_checkpoint_empties_it(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from hub.core.db import forget_erased

    migrate(sqlite_url)
    engine = make_engine(sqlite_url)
    wal = Path(make_url(sqlite_url).database or "").with_name("hub.db-wal")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE member SET name = name")
        reader = engine.connect()
        reader.exec_driver_sql("BEGIN")
        reader.exec_driver_sql("SELECT count(*) FROM member").one()  # holds a snapshot
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO member (name, ref, category, status, created_at) "
                "VALUES ('x', 'm-x', 'individual', 'active', '2026-01-01')"
            )
        assert forget_erased(engine) is False
        assert "could not be emptied" in caplog.text and wal.stat().st_size > 0
        reader.close()
        assert forget_erased(engine) is True and wal.stat().st_size == 0
    finally:
        engine.dispose()
