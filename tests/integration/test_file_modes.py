"""What the CLI writes with personal data or secrets is readable by its owner only (0600),
even under a permissive umask and over a file that was readable by others; `tls init`
tightens the private keys it finds."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, text
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo

runner = CliRunner()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    old = os.umask(0o022)  # the usual umask: files readable by everyone unless made private
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ATELIER_MQTT_PORT", "1")  # no broker: publication reported, not fatal
    try:
        yield tmp_path
    finally:
        os.umask(old)


def test_the_sqlite_database_and_its_log_are_owner_only(lab: Path) -> None:
    database = lab / "hub.db"
    assert mode(database) == 0o600
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:  # a write: the -wal and -shm files exist while it is open
        conn.execute(text("UPDATE member SET name = name"))
        assert mode(lab / "hub.db-wal") == 0o600
    engine.dispose()
    # A database another release or a copy left readable by others is tightened when opened.
    os.chmod(database, 0o644)
    make_engine(f"sqlite:///{database}").dispose()
    assert mode(database) == 0o600


def test_exports_are_owner_only_even_over_a_readable_file(lab: Path) -> None:
    today = datetime.now(UTC)  # last month: one that may be closed
    month = f"{today.year - (today.month == 1)}-{(today.month - 2) % 12 + 1:02d}"
    outputs = {
        "member": lab / "hugo.json",
        "usage csv": lab / "usage.csv",
        "usage xlsx": lab / "usage.xlsx",
        "review": lab / "review.pdf",
    }
    # One of them existed, readable by all: rewriting it makes it private.
    outputs["member"].write_text("{}")
    os.chmod(outputs["member"], 0o644)
    window = ["--from", "2026-01-01", "--to", "2027-01-01"]
    commands = {
        "member": ["hub", "member", "export", "hugo@example.org", "--out", str(outputs["member"])],
        "usage csv": ["hub", "export", "usage", *window, "--format", "csv", "--detail", "--out"],
        "usage xlsx": ["hub", "export", "usage", *window, "--format", "xlsx", "--out"],
        "review": ["hub", "export", "review", "--year", "2026", "--out"],
    }
    for name, command in commands.items():
        if command[-1] == "--out":
            command = [*command, str(outputs[name])]
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (name, result.output)
        assert mode(outputs[name]) == 0o600, name
    # The month's statements (CSV and PDF, with payers' names).
    rates = lab / "rates.csv"
    rates.write_text(
        "machine_type,category,effective_from,cents_per_hour\nlaser,individual,2020-01-01,600\n"
    )
    assert runner.invoke(app, ["hub", "billing", "rates", "import", str(rates)]).exit_code == 0
    closed = runner.invoke(
        app, ["hub", "billing", "close", "--month", month, "--out", str(lab / "statements")]
    )
    assert closed.exit_code == 0, closed.output
    written = sorted((lab / "statements").iterdir())
    assert {p.suffix for p in written} == {".csv", ".pdf"}
    assert all(mode(p) == 0o600 for p in written), {p.name: oct(mode(p)) for p in written}


def test_tls_init_tightens_private_keys_others_could_read(lab: Path) -> None:
    directory = lab / "tls"
    command = ["hub", "tls", "init", "--dir", str(directory), "--broker-name", "127.0.0.1"]
    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    keys = sorted(directory.rglob("*.key"))
    assert len(keys) >= 3 and all(mode(k) == 0o600 for k in keys)  # ca, broker, agents
    assert mode(directory / "ca.crt") == 0o644  # certificates are public
    # Keys copied by hand with a loose mode: the CA's is kept (not rewritten), yet tightened.
    for key in keys:
        os.chmod(key, 0o644)
    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert all(mode(k) == 0o600 for k in keys), {k.name: oct(mode(k)) for k in keys}
    assert f"{directory / 'ca.key'}: others could read this private key" in again.output
