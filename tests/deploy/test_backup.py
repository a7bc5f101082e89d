"""deploy/backup/atelier-backup: a populated hub database and its key are backed up and restored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import throwaway_postgres_database

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "backup" / "atelier-backup"
KEY = "hub_ed25519.pem"


def run_backup(args: list[str], *, url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    if not url.startswith("sqlite") and shutil.which("pg_dump") is None:
        pytest.skip("pg_dump/pg_restore are needed: apt-get install postgresql-client")
    env = {**os.environ, "ATELIER_DATABASE_URL": url, "ATELIER_DATA_DIR": str(data_dir)}
    env.pop("ATELIER_CONFIG", None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def populate(url: str, data_dir: Path) -> None:
    from sqlmodel import Session

    from hub.core.db import make_engine, migrate
    from hub.core.security import load_or_create_signing_key
    from hub.demo.seed import seed_demo

    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="demo-lab")
        session.commit()
    engine.dispose()
    load_or_create_signing_key(data_dir)


def all_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        tables = sa.inspect(engine).get_table_names()
        with engine.connect() as conn:
            return {
                name: sorted(
                    (tuple(row) for row in conn.execute(sa.text(f'SELECT * FROM "{name}"'))),
                    key=repr,
                )
                for name in tables
            }
    finally:
        engine.dispose()


@contextmanager
def empty_database_like(url: str, tmp_path: Path) -> Iterator[str]:
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'atelier.db'}"
    else:
        with throwaway_postgres_database() as fresh:
            yield fresh


def test_backup_then_restore_gives_back_every_row_and_the_key(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    populate(database_url, data_dir)
    before = all_rows(database_url)
    assert len(before["member"]) > 0 and len(before["badge"]) > 0

    dest = tmp_path / "backups"
    result = run_backup(["backup", "--dest", str(dest)], url=database_url, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    (made,) = [p for p in dest.iterdir() if p.name.startswith("atelier-")]
    assert (made / "keys" / KEY).read_bytes() == (data_dir / KEY).read_bytes()

    restored_dir = tmp_path / "restored-data"
    with empty_database_like(database_url, tmp_path) as target:
        result = run_backup(["restore", str(made)], url=target, data_dir=restored_dir)
        assert result.returncode == 0, result.stderr
        assert all_rows(target) == before
        # Restoring again over live data (a second attempt) gives the same rows, not doubles.
        result = run_backup(["restore", str(made)], url=target, data_dir=restored_dir)
        assert result.returncode == 0, result.stderr
        assert all_rows(target) == before
    assert (restored_dir / KEY).read_bytes() == (data_dir / KEY).read_bytes()
    assert (restored_dir / KEY).stat().st_mode & 0o777 == 0o600


def test_rotation_keeps_the_newest_backups(sqlite_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    populate(sqlite_url, data_dir)
    dest = tmp_path / "backups"
    made = []
    for _ in range(3):
        result = run_backup(
            ["backup", "--dest", str(dest), "--keep", "2"], url=sqlite_url, data_dir=data_dir
        )
        assert result.returncode == 0, result.stderr
        made.append(sorted(p.name for p in dest.iterdir()))
    assert sorted(p.name for p in dest.iterdir()) == made[-1]
    assert len(made[-1]) == 2
    assert made[0][0] not in made[-1]


def test_a_missing_database_is_reported_not_a_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nothing.db'}"
    result = run_backup(["backup", "--dest", str(tmp_path / "b")], url=url, data_dir=tmp_path)
    assert result.returncode == 2
    assert "does not exist (database_url)" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "b").iterdir()) == []
