"""The database engine (SQLite with WAL, or PostgreSQL) and Alembic migrations."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.engine import CursorResult, Engine, Result, make_url
from sqlmodel import create_engine

from hub.core.files import private_file, tighten

log = logging.getLogger(__name__)
CHECKPOINT_WAIT_MS = 2000
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Members' names, emails and card UIDs: created owner-only (SQLite gives the -wal
            # and -shm files the database file's mode); one others may read is tightened.
            if not path.exists():
                private_file(path)
            else:
                tighten(path)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns. The ingest acknowledges messages to
            # the broker once their batch has committed, and the broker then forgets them;
            # with NORMAL a power cut could still roll that commit back (one fsync per
            # commit: per ingest batch, not per message).
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # What is deleted or overwritten is zeroed on disk, not left in free pages: an
            # erased member's name must not survive in the file (hub/services/member_data.py).
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def forget_erased(engine: Engine) -> bool:
    """After an erasure has committed: copy SQLite's write-ahead log into the database and
    empty it, so the old pages (with the erased name and UIDs) are gone from the -wal file too.

    False when a reader kept the log from being emptied (the next checkpoint will); PostgreSQL
    keeps old row versions until VACUUM, see docs/security.md."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as conn:
        # Wait a little for readers to finish, not the 30 s a writer waits: the erasure has
        # committed already, and the next checkpoint finishes the job.
        conn.exec_driver_sql(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
        try:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        finally:
            conn.exec_driver_sql("PRAGMA busy_timeout=30000")
    if busy:
        log.warning(
            "the write-ahead log could not be emptied after an erasure (a reader held it); "
            "the next checkpoint will, or run: sqlite3 DB 'PRAGMA wal_checkpoint(TRUNCATE)'"
        )
    return not busy


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE changed (`Session.execute` gives a CursorResult for them)."""
    return int(cast("CursorResult[Any]", result).rowcount or 0)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), "heads")
