"""Durable store-and-forward of events: SQLite (WAL, synchronous=FULL), one sequence per agent.

An event is written here before anything else happens to it, published from here, and marked
sent only when the broker acknowledges it. A crash at any point loses nothing: unsent rows are
replayed in `seq` order after restart.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol.envelope import Envelope, EventType, encode_envelope, new_envelope, utc_iso

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS event (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    ts TEXT NOT NULL,
    payload BLOB NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS event_unsent ON event (seq) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OpenSession:
    session_id: str
    member: str
    badge: str
    started_at: datetime


class Journal:
    """Used from the agent's event-loop thread; a lock guards the rare other caller."""

    def __init__(
        self, path: Path, machine: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.machine = machine
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        top = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM event").fetchone()[0]
        self._next_seq = max(int(row[0]) if row else 1, top + 1)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, type: EventType, data: dict[str, Any]) -> Envelope:
        """Give the event its sequence number and make it durable before returning it."""
        with self._lock:
            env = new_envelope(
                machine=self.machine, type=type, seq=self._next_seq, data=data, now=self._clock
            )
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO event (seq, id, type, ts, payload) VALUES (?, ?, ?, ?, ?)",
                    (env.seq, str(env.id), env.type.value, utc_iso(env.ts), encode_envelope(env)),
                )
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (str(env.seq + 1),),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._next_seq += 1
            return env

    def mark_sent(self, seq: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE event SET sent_at=? WHERE seq=? AND sent_at IS NULL",
                (utc_iso(self._clock()), seq),
            )

    def unsent(self, limit: int = 1000, after_seq: int = 0) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload FROM event WHERE sent_at IS NULL AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    def since(self, seq: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        """Events from `seq` on, sent or not (the hub asks again for what it missed)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload FROM event WHERE seq >= ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    def backlog(self) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM event WHERE sent_at IS NULL").fetchone()[0]
            )

    def prune(self, keep: int = 10_000) -> int:
        """Forget sent events beyond the newest `keep`; the sequence is kept in meta."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM event WHERE sent_at IS NOT NULL AND seq <= "
                "(SELECT COALESCE(MAX(seq), 0) FROM event) - ?",
                (keep,),
            )
            return int(cur.rowcount)

    def open_session(self) -> OpenSession | None:
        """The session started last and never ended (the agent died during it), if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT payload FROM event WHERE type=? ORDER BY seq DESC LIMIT 1",
                (EventType.SESSION_STARTED.value,),
            ).fetchone()
            if row is None:
                return None
            started = json.loads(row[0])
            sid = started["data"]["session_id"]
            ended = self._db.execute(
                "SELECT 1 FROM event WHERE type=? AND json_extract(payload, '$.data.session_id')=?",
                (EventType.SESSION_ENDED.value, sid),
            ).fetchone()
        if ended is not None:
            return None
        return OpenSession(
            session_id=sid,
            member=started["data"]["member"],
            badge=started["data"]["badge"],
            started_at=datetime.fromisoformat(started["ts"].replace("Z", "+00:00")),
        )

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None
