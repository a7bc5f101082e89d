"""`atelier hub user`: the first admin is made from the command line, and tokens with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from atelier_cli import app
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from tests.support.api import bearer

runner = CliRunner()


@pytest.fixture
def hub_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    from sqlmodel import Session

    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    return url


def test_first_admin_token_and_revocation(hub_db: str, tmp_path: Path) -> None:
    made = runner.invoke(
        app,
        ["hub", "user", "add", "Alice", "--role", "admin", "--password-stdin"],
        input="a long enough secret\n",
    )
    assert made.exit_code == 0, made.output
    token = runner.invoke(app, ["hub", "user", "token", "alice", "--name", "ci", "--days", "30"])
    assert token.exit_code == 0, token.output
    raw = token.output.strip()
    assert raw.startswith("atl_")
    settings = get_settings(None, database_url=hub_db, data_dir=tmp_path)
    with TestClient(create_app(settings, start_ingest=False)) as client:
        assert client.get("/api/v1/users/me", headers=bearer(raw)).json()["username"] == "alice"
        listed = runner.invoke(app, ["hub", "user", "tokens", "alice"])
        assert raw[:12] in listed.output and raw not in listed.output
        revoked = runner.invoke(app, ["hub", "user", "revoke-token", raw[:12]])
        assert revoked.exit_code == 0, revoked.output
        assert client.get("/api/v1/users/me", headers=bearer(raw)).status_code == 401
    trainer = runner.invoke(
        app,
        [
            "hub",
            "user",
            "add",
            "camille",
            "--role",
            "trainer",
            "--member",
            "camille@example.org",
            "--password-stdin",
        ],
        input="another long secret\n",
    )
    assert trainer.exit_code == 0, trainer.output
    disabled = runner.invoke(app, ["hub", "user", "set", "camille", "--disabled"])
    assert "disabled" in disabled.output


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "bob", "--role", "wizard", "--password-stdin"], "long enough pw\n", "--role"),
        (["add", "bob", "--role", "member", "--password-stdin"], "long enough pw\n", "member"),
        (["add", "bob", "--role", "admin", "--password-stdin"], "short\n", "at least 10"),
        (
            ["add", "bob", "--member", "nobody@example.org", "--password-stdin"],
            "x" * 12,
            "--member",
        ),
        (["token", "nobody", "--name", "x"], "", "no user 'nobody'"),
        (["token", "nobody", "--name", "x", "--days", "0"], "", "--days"),
        (["revoke-token", "atl_nothing0"], "", "no single token"),
    ],
)
def test_mistakes_exit_2_with_the_fix(
    hub_db: str, args: list[str], stdin: str, message: str
) -> None:
    result = runner.invoke(app, ["hub", "user", *args], input=stdin)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
