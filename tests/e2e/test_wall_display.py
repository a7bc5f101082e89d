"""The wall display over HTTP, on SQLite and PostgreSQL: display tokens made and revoked from
the web, the CLI and the service; the kiosk page's summary, groups, filter and printing
details; and hostile secrets, names, options and stored rows answered without an error.

The browser side (the live banner when the hub dies) is tests/e2e/test_browser_wall.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app as cli
from hub.app import create_app
from hub.core.errors import InvalidValue, NotFound
from hub.core.settings import get_settings
from hub.models import AuditEntry, DisplayToken, Machine, Member
from hub.services import displays
from tests.e2e.web import csrf_of, sign_in
from tests.integration.test_hostile_rows import anything, statuses, write_rows
from tests.support.api import PASSWORD, role_tokens
from tests.support.databases import demo_lab

URL = re.compile(r'id="kiosk"[^>]*value="(http://testserver/wall/(atd_[^"?]+)[^"]*)"')


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Engine]]:
    with demo_lab(database_url) as engine:
        role_tokens(engine)
        settings_ = get_settings(None, database_url=database_url, data_dir=tmp_path)
        with TestClient(create_app(settings_, start_ingest=False)) as client:
            yield client, engine


def _display(engine: Engine, name: str = "hall screen") -> str:
    with Session(engine) as session:
        secret, _ = displays.create_display(session, name=name, actor="test")
        session.commit()
    return secret


def _set(engine: Engine, code: str, **values: Any) -> None:
    with Session(engine) as session:
        machine = session.exec(select(Machine).where(Machine.code == code)).one()
        for key, value in values.items():
            setattr(machine, key, value)
        session.add(machine)
        session.commit()


def test_a_display_token_opens_the_board_without_a_login_and_a_revoked_one_is_refused(
    lab: tuple[TestClient, Engine],
) -> None:
    client, engine = lab
    secret = _display(engine)
    page = client.get(f"/wall/{secret}")
    assert page.status_code == 200
    # No menu, no sign-out, no login cookie needed: the board alone.
    assert "Main menu" not in page.text and "/logout" not in page.text
    assert 'id="wall-laser-1"' in page.text
    with client.stream("GET", f"/wall/{secret}/stream") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = answer.iter_lines()
        seen = [next(lines) for _ in range(4)]
        assert "event: board" in seen and any(re.fullmatch(r"id: \d\d:\d\d", s) for s in seen)
    with Session(engine) as session:
        row = displays.revoke_display(session, display=secret[:12], actor="test")
        session.commit()
        assert row.revoked_at is not None
    refused = client.get(f"/wall/{secret}")
    assert refused.status_code == 403
    assert "revoked or is not valid" in refused.text
    assert client.get(f"/wall/{secret}/stream").status_code == 403
    # Twelve hours, a year: a display token does not expire.
    later = _display(engine, "printer room")
    with Session(engine) as session:
        assert displays.display_for(session, later, now=datetime.now(UTC) + timedelta(days=400))


def test_the_stream_says_revoked_when_the_token_is_revoked_while_open(
    lab: tuple[TestClient, Engine],
) -> None:
    client, engine = lab
    secret = _display(engine)
    with client.stream("GET", f"/wall/{secret}/stream") as answer:
        lines = answer.iter_lines()
        while next(lines) != "event: board":
            pass
        with Session(engine) as session:
            displays.revoke_display(session, display=secret[:12], actor="test")
            session.commit()
        events = []
        while "event: revoked" not in events:
            events.append(next(lines))


def test_a_connection_ends_with_bye_and_the_board_comes_again_on_the_next(
    lab: tuple[TestClient, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.web import wall_screens

    client, engine = lab
    secret = _display(engine)
    monkeypatch.setattr(wall_screens, "LIFETIME_S", 2.5)  # five minutes in production
    for _ in range(2):
        with client.stream("GET", f"/wall/{secret}/stream") as answer:
            events = [line for line in answer.iter_lines() if line.startswith("event: ")]
        # The board first, then a sign of life while nothing changes, then goodbye.
        assert events[0] == "event: board" and events[-1] == "event: bye", events
    assert wall_screens._walls["open"] == 0


def test_the_board_counts_groups_filters_and_shows_since_and_the_print(
    lab: tuple[TestClient, Engine],
) -> None:
    client, engine = lab
    secret = _display(engine)
    with Session(engine) as session:
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
    started = datetime(2026, 12, 7, 13, 5, tzinfo=UTC)  # 14:05 in Paris, the demo's zone
    _set(
        engine,
        "laser-1",
        online=True,
        last_status={
            "busy": False,
            "session": {"session_id": "s1", "member": hugo.ref, "started_at": started.isoformat()},
        },
    )
    _set(
        engine,
        "printer-1",
        online=True,
        last_status={
            "busy": True,
            "session": {"session_id": "s2", "member": lea.ref, "started_at": started.isoformat()},
        },
        last_telemetry={"progress": 42.5, "file": "bracket_v3.gcode", "print_time_left_s": 4380},
    )
    _set(engine, "printer-2", online=True, locked=True, lock_reason="nozzle clogged")
    text = client.get(f"/wall/{secret}").text
    summary = dict(re.findall(r'class="sum-(\w+)"><strong>(\d+)</strong>', text))
    assert summary == {"free": "0", "in_use": "1", "printing": "1", "locked": "1", "offline": "1"}
    laser = text.split('id="wall-laser-1"')[1].split("</li>")[0]
    assert "In use" in laser and "since 14:05" in laser
    # The lab did not let members see who uses a machine: the public wall names nobody.
    assert "Hugo" not in text and "Léa" not in text
    printer = text.split('id="wall-printer-1"')[1].split("</li>")[0]
    assert "Printing 42 %" in printer and "bracket_v3.gcode" in printer
    assert "1 h 13 min left" in printer and "since 14:05" in printer
    assert "nozzle clogged" in text
    # Grouped by room by default: the demo's two rooms, in order.
    rooms = re.findall(r"<h2>([^<]+)</h2>", text)
    assert rooms == sorted(rooms) and len(rooms) == 2
    by_type = client.get(f"/wall/{secret}?group=type").text
    assert re.findall(r"<h2>([^<]+)</h2>", by_type) == ["3D printer", "CNC mill", "Laser cutter"]
    printers = client.get(f"/wall/{secret}?type=printer&group=none").text
    assert "wall-printer-1" in printers and "wall-laser-1" not in printers
    assert "<h2>" not in printers
    summary = dict(re.findall(r'class="sum-(\w+)"><strong>(\d+)</strong>', printers))
    assert summary == {"free": "0", "in_use": "0", "printing": "1", "locked": "1", "offline": "0"}
    french = client.get(f"/wall/{secret}?lang=fr").text
    assert "depuis 14:05" in french and "libre" in french and "hors ligne" in french
    assert "Connexion perdue" in french


def test_the_names_are_on_the_wall_when_the_lab_shows_them(
    database_url: str, tmp_path: Path
) -> None:
    with demo_lab(database_url) as engine:
        secret = _display(engine)
        with Session(engine) as session:
            hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        status = {"session": {"session_id": "s1", "member": hugo.ref}}
        _set(engine, "laser-1", online=True, last_status=status)
        settings_ = get_settings(
            None,
            database_url=database_url,
            data_dir=tmp_path,
            members_see_who_uses_machines=True,
        )
        with TestClient(create_app(settings_, start_ingest=False)) as client:
            assert "Hugo Petit" in client.get(f"/wall/{secret}").text


def test_a_wrong_grouping_or_type_names_the_choices(lab: tuple[TestClient, Engine]) -> None:
    client, engine = lab
    secret = _display(engine)
    wrong = client.get(f"/wall/{secret}?group=floor")
    assert wrong.status_code == 422 and "location, type, none" in wrong.text
    unknown = client.get(f"/wall/{secret}?type=lathe&lang=fr")
    assert unknown.status_code == 404 and "laser" in unknown.text and "lathe" in unknown.text


def test_an_admin_makes_and_revokes_a_display_from_the_web(lab: tuple[TestClient, Engine]) -> None:
    client, engine = lab
    for role in ("member", "trainer", "maintainer", "manager"):
        with TestClient(client.app) as other:
            sign_in(other, f"test-{role}", PASSWORD)
            assert other.get("/web/displays", follow_redirects=False).status_code == 403
            assert 'href="/web/displays"' not in other.get("/").text
    token = sign_in(client, "test-admin", PASSWORD)
    assert 'href="/web/displays"' in client.get("/").text
    before = _audits(engine)
    # Without its CSRF token, refused and nothing made.
    refused = client.post("/web/displays", data={"name": "hall"})
    assert refused.status_code == 403 and _audits(engine) == before
    empty = client.post("/web/displays", data={"name": "  ", "csrf": token})
    assert empty.status_code == 422
    assert 'id="name-error"' in empty.text and "say which screen" in empty.text
    made = client.post(
        "/web/displays",
        data={"name": "printer room", "group": "none", "type": "printer", "csrf": token},
    )
    assert made.status_code == 200
    found = URL.search(made.text)
    assert found, made.text[-2000:]
    url, secret = found.group(1), found.group(2)
    assert "group=none" in url and "type=printer" in url
    assert client.get(url.replace("http://testserver", "")).status_code == 200
    listing = client.get("/web/displays").text
    assert "printer room" in listing and secret not in listing  # the secret is shown once
    with Session(engine) as session:
        row = session.exec(select(DisplayToken)).one()
        assert row.created_by == "user:test-admin" and row.token_hash != secret
    gone = client.post(f"/web/displays/{row.id}/revoke", data={"csrf": csrf_of(listing)})
    assert gone.status_code == 200 and "Display revoked" in gone.text
    assert client.get(f"/wall/{secret}").status_code == 403
    assert _audits(engine) == before + 2
    for far in (999_999, 2**31, 2**63, 10**30, -1):
        unknown = client.post(f"/web/displays/{far}/revoke", data={"csrf": token})
        assert unknown.status_code == 404 and "no single display" in unknown.text, far
    assert client.get("/web/displays?revoked=x%00").status_code == 200


def _audits(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(AuditEntry).where(AuditEntry.entity == "display")).all())


def test_the_cli_makes_lists_and_revokes_displays(
    lab: tuple[TestClient, Engine], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    client, engine = lab
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    made = runner.invoke(
        cli, ["hub", "display", "add", "hall screen", "--type", "laser", "--hub-url", "http://x"]
    )
    assert made.exit_code == 0, made.output
    url = made.output.strip().splitlines()[-1]
    assert url.startswith("http://x/wall/atd_") and url.endswith("?type=laser")
    path = url.removeprefix("http://x")
    assert client.get(path).status_code == 200
    secret = path.split("/")[2].split("?")[0]
    listed = runner.invoke(cli, ["hub", "display", "list"])
    assert secret[:12] in listed.output and secret not in listed.output
    assert "live" in listed.output
    revoked = runner.invoke(cli, ["hub", "display", "revoke", secret[:12]])
    assert revoked.exit_code == 0, revoked.output
    assert client.get(path).status_code == 403
    # A person's mistakes: the flag named, exit code 2, no traceback.
    for args, flag in (
        (["add", "hall", "--group", "floor"], "--group"),
        (["add", "hall", "--type", "lathe"], "--type"),
        (["add", " "], "NAME"),
        (["revoke", "atd_nothing"], "DISPLAY"),
    ):
        wrong = runner.invoke(cli, ["hub", "display", *args])
        assert wrong.exit_code == 2, (args, wrong.output)
        assert wrong.output.startswith(flag) and "Traceback" not in wrong.output


hostile_text = st.text(max_size=300) | st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "x" * 101,
        "x" * 100_000,
        "atd_" + "A" * 43,
        "atd_\x00",
        "1",
        "0",
        "-1",
        str(2**31),
        str(2**63),
        "NaN",
        "../etc",
        "%00",
        "🙂" * 50,
    ]
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=hostile_text, group=hostile_text, kind=hostile_text, name=hostile_text)
@example(secret="atd_\x00", group="\x00", kind="\x00", name="\x00")
@example(secret="atd_" + "A" * 43, group="type", kind="laser", name="x" * 101)
def test_hostile_secrets_options_and_names_are_refused_cleanly(
    lab: tuple[TestClient, Engine], secret: str, group: str, kind: str, name: str
) -> None:
    client, engine = lab
    params = {"group": group[:100], "type": kind[:100]}
    quoted = quote(secret[:4000], safe="")  # an HTTP client refuses a longer URL
    for path in (f"/wall/{quoted}", f"/wall/{quoted}/stream"):
        answer = client.get(path, params=params)
        assert answer.status_code in (403, 404, 422), (path, answer.status_code)
    with Session(engine) as session:
        try:
            raw, row = displays.create_display(session, name=name, actor="test")
        except InvalidValue as exc:
            assert exc.field == "name"
            session.rollback()
        else:
            session.commit()
            assert row.name and "\x00" not in row.name and len(row.name) <= 100
            assert displays.display_for(session, raw) is not None
        try:
            displays.revoke_display(session, display=secret, actor="test")
        except NotFound as exc:
            assert exc.field == "display"
        session.rollback()


telemetries = anything | st.fixed_dictionaries(
    {},
    optional={
        key: anything | st.text(max_size=500)
        for key in ("progress", "print_time_left_s", "file", "tool0_actual")
    },
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(status=statuses, telemetry=telemetries, sample=anything)
def test_the_wall_renders_whatever_is_stored(
    lab: tuple[TestClient, Engine], status: Any, telemetry: Any, sample: Any
) -> None:
    client, engine = lab
    secret = _display(engine, "fuzz")
    for code in ("laser-1", "printer-1"):
        write_rows(engine, code, status, telemetry, sample)
    for group in ("location", "type", "none"):
        answer = client.get(f"/wall/{secret}?group={group}")
        assert answer.status_code == 200, answer.text[-500:]
    with client.stream("GET", f"/wall/{secret}/stream") as answer:
        lines = answer.iter_lines()
        while next(lines) != "event: board":
            pass


@settings(
    max_examples=8,  # each example migrates and opens the database twice, as the CLI does
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=hostile_text, group=hostile_text, kind=hostile_text, key=hostile_text)
@example(name="\x00", group="type", kind="", key="\x00")
def test_the_cli_takes_hostile_arguments_with_exit_2_or_a_working_address(
    lab: tuple[TestClient, Engine],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    group: str,
    kind: str,
    key: str,
) -> None:
    client, _ = lab
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    args = ["hub", "display", "add", name[:2000], "--group", group[:200], "--type", kind[:200]]
    made = runner.invoke(cli, [*args, "--hub-url", "http://x"])
    assert made.exit_code in (0, 2), made.output
    assert made.exception is None or isinstance(made.exception, SystemExit), made.exception
    if made.exit_code == 0:
        path = made.output.strip().splitlines()[-1].removeprefix("http://x")
        assert client.get(path).status_code == 200
    else:
        # The hub's refusal names the argument; an argument that reads as an option ("-x")
        # is Click's own usage error. Either way exit 2 and no traceback.
        assert made.output.startswith(("NAME:", "--group:", "--type:", "Usage:")), made.output
    revoked = runner.invoke(cli, ["hub", "display", "revoke", key[:2000]])
    assert revoked.exit_code == 2, revoked.output
    assert revoked.output.startswith(("DISPLAY:", "Usage:")), revoked.output
    assert "Traceback" not in made.output + revoked.output
