"""Durable store-and-forward of events: SQLite (WAL, synchronous=FULL), one sequence per agent.

An event is written here before anything else happens to it, published from here, and marked
sent only when the broker acknowledges it. A crash at any point loses nothing: unsent rows are
replayed in `seq` order after restart.

When the disk is full (SQLITE_FULL, or a size cap set with `PRAGMA max_page_count`) the
journal makes room in this order: telemetry samples kept while offline, then events already
sent (kept only for a hub that asks again). If that is not enough, new events are held in
memory, still in `seq` order, until they are sent or the disk has room again: the badge
decisions go on and nothing is lost unless the agent also dies before the broker has them.
The condition is an `incident.reported` event (`kind` `journal-full`, then `journal-ok`) and
the `full` property, which the agent puts in its status.
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

from edge.errors import JournalFull as JournalFull  # re-exported: its first home
from protocol.lite import Event, ValidationError, encode_event, fit_data, new_event
from protocol.vocab import EventType, utc_iso

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
CREATE TABLE IF NOT EXISTS telemetry (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS command (id TEXT PRIMARY KEY, ts TEXT NOT NULL);
"""

# Samples kept while the broker is away; older ones give way to newer ones.
TELEMETRY_KEEP = 5_000
# Events held in memory while the disk is full: about 4 MB. Beyond it an event is refused
# (JournalFull), which the agent logs; its decision has already been carried out.
MEMORY_KEEP = 10_000


def _sortable(value: datetime) -> str:
    """UTC with microseconds always written, so that text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


@dataclass(frozen=True, slots=True)
class OpenSession:
    session_id: str
    member: str
    badge: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class _HeldEvent:
    seq: int
    id: str
    type: str
    ts: str
    payload: bytes


class Journal:
    """Used from the agent's event-loop thread; a lock guards the rare other caller."""

    def __init__(
        self,
        path: Path,
        machine: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        memory_keep: int = MEMORY_KEEP,
        telemetry_keep: int = TELEMETRY_KEEP,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.machine = machine
        self._clock = clock
        self._lock = threading.Lock()
        self._memory_keep = memory_keep
        self._telemetry_keep = telemetry_keep
        # Events that found no room on disk, in seq order (see the module docstring).
        self._held: list[_HeldEvent] = []
        self.full = False
        self.shed_telemetry = 0
        self.shed_sent = 0
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # 512 KiB of page cache rather than SQLite's 2 MiB: the journal appends at its end and
        # reads its unsent tail; the OS caches the file anyway, and the agent's RSS budget is
        # 45 MB (docs/performance.md).
        self._db.execute("PRAGMA cache_size=-512")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        top = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM event").fetchone()[0]
        self._next_seq: int = max(int(row[0]) if row else 1, int(top) + 1)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def limit_pages(self, pages: int) -> None:
        """Cap the journal file at `pages` pages, as a full disk would (tests, small cards)."""
        with self._lock:
            self._db.execute(f"PRAGMA max_page_count = {int(pages)}")

    def page_count(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA page_count").fetchone()[0])

    # -- events ---------------------------------------------------------------------------
    def append(self, type: EventType, data: dict[str, Any], *, at: datetime | None = None) -> Event:
        """Give the event its sequence number and make it durable before returning it.

        `at` stamps an event that happened earlier than it is written (a session found open
        after a crash ended when the agent was last alive, not at the restart). On a full disk
        the event is held in memory instead (see the module docstring)."""
        with self._lock:
            return self._append_locked(type, data, at)

    def _append_locked(
        self, type: EventType, data: dict[str, Any], at: datetime | None = None
    ) -> Event:
        now = self._clock if at is None else (lambda: at)
        try:
            env = new_event(machine=self.machine, type=type, seq=self._next_seq, data=data, now=now)
        except ValidationError as exc:
            # Text or numbers from outside (a printer's file name, a plug's reading) past the
            # protocol's limits: the event is kept with them cut to fit, never dropped.
            fitted = fit_data(type, data)
            log.warning("journal: %s data cut to the protocol's limits (%s)", type.value, exc)
            env = new_event(
                machine=self.machine, type=type, seq=self._next_seq, data=fitted, now=now
            )
        row = _HeldEvent(env.seq, str(env.id), env.type.value, utc_iso(env.ts), encode_event(env))
        was_full = self.full
        try:
            # While full, every new event first tries to take the held ones to disk with it.
            self._write_with_room([*self._held, row])
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            self._hold(row)
            self._next_seq += 1
            if not was_full:
                self.full = True
                log.error("journal: the disk is full; %s", self._condition_note())
                # Reported as an event of its own, right after the one that found no room.
                self._append_locked(EventType.INCIDENT_REPORTED, self._report("full"))
            return env
        self._held.clear()
        self._next_seq += 1
        if was_full:
            self.full = False
            log.warning("journal: the disk has room again; %s", self._condition_note())
            self._append_locked(EventType.INCIDENT_REPORTED, self._report("ok"))
        return env

    def _hold(self, row: _HeldEvent) -> None:
        if len(self._held) >= self._memory_keep:
            raise JournalFull(
                f"journal: disk full and {len(self._held)} events already held in memory; "
                f"event seq {row.seq} ({row.type}) not kept"
            )
        self._held.append(row)
        # An in-place update usually fits even on a full disk: a restart then does not give
        # these held events' sequence numbers to new events.
        self._try(
            "INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(row.seq + 1),),
        )

    def _write(self, rows: list[_HeldEvent]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                self._db.execute(
                    "INSERT INTO event (seq, id, type, ts, payload) VALUES (?, ?, ?, ?, ?)",
                    (row.seq, row.id, row.type, row.ts, row.payload),
                )
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(max(r.seq for r in rows) + 1),),
            )
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back by itself (SQLITE_FULL does).
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _write_with_room(self, rows: list[_HeldEvent]) -> None:
        while True:
            try:
                self._write(rows)
                return
            except sqlite3.OperationalError as exc:
                if not _is_full(exc) or not self._make_room():
                    raise

    def _make_room(self) -> bool:
        """Shed what is worth less than a new event; True if anything was freed."""
        freed = self._db.execute("DELETE FROM telemetry").rowcount
        if freed > 0:
            self.shed_telemetry += freed
            log.warning("journal: disk full, %d kept telemetry sample(s) shed", freed)
            return True
        freed = self._db.execute("DELETE FROM event WHERE sent_at IS NOT NULL").rowcount
        if freed > 0:
            self.shed_sent += freed
            log.warning("journal: disk full, %d event(s) already sent forgotten", freed)
            return True
        return False

    def _report(self, state: str) -> dict[str, Any]:
        return {
            "source": "journal",
            "kind": f"journal-{state}",
            "note": self._condition_note(),
        }

    def _condition_note(self) -> str:
        return (
            f"{len(self._held)} event(s) held in memory, {self.shed_telemetry} telemetry "
            f"sample(s) and {self.shed_sent} sent event(s) shed"
        )

    def _try(self, sql: str, params: tuple[Any, ...]) -> bool:
        """A write that may fail on a full disk without harm (it is done again later)."""
        try:
            self._db.execute(sql, params)
            return True
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            return False

    def mark_sent(self, seq: int) -> None:
        with self._lock:
            if self._held and seq >= self._held[0].seq:
                # The broker has it: it need not reach the disk any more.
                self._held = [h for h in self._held if h.seq != seq]
                return
            sql = "UPDATE event SET sent_at=? WHERE seq=? AND sent_at IS NULL"
            params = (utc_iso(self._clock()), seq)
            if not self._try(sql, params) and self._make_room():
                # Unmarked, the row is only published once more: the hub stores it once.
                self._try(sql, params)

    def unsent(self, limit: int = 1000, after_seq: int = 0) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload FROM event WHERE sent_at IS NULL AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
            held = [(h.seq, h.payload) for h in self._held if h.seq > after_seq][:limit]
        out = [(int(s), bytes(p)) for s, p in rows]
        if held:
            out = sorted(out + held)[:limit]
        return out

    def since(self, seq: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        """Events from `seq` on, sent or not (the hub asks again for what it missed)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload FROM event WHERE seq >= ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
            held = [(h.seq, h.payload) for h in self._held if h.seq >= seq][:limit]
        out = [(int(s), bytes(p)) for s, p in rows]
        if held:
            out = sorted(out + held)[:limit]
        return out

    def backlog(self) -> int:
        with self._lock:
            on_disk = self._db.execute("SELECT COUNT(*) FROM event WHERE sent_at IS NULL")
            return int(on_disk.fetchone()[0]) + len(self._held)

    @property
    def held(self) -> int:
        """Events waiting in memory for room on the disk (or for the broker)."""
        return len(self._held)

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (0 before the first)."""
        return self._next_seq - 1

    def prune(self, keep: int = 10_000) -> int:
        """Forget sent events beyond the newest `keep`; the sequence is kept in meta."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM event WHERE sent_at IS NOT NULL AND seq <= "
                "(SELECT COALESCE(MAX(seq), 0) FROM event) - ?",
                (keep,),
            )
            return int(cur.rowcount)

    # -- telemetry kept while offline -----------------------------------------------------
    def keep_telemetry(self, payload: bytes) -> bool:
        """Keep a sample for later; False (and shed) when the disk has no room for it."""
        with self._lock:
            if self.full:
                self.shed_telemetry += 1
                return False
            if not self._try("INSERT INTO telemetry (payload) VALUES (?)", (payload,)):
                self.shed_telemetry += 1
                return False
            self._try(
                "DELETE FROM telemetry WHERE id <= (SELECT MAX(id) FROM telemetry) - ?",
                (self._telemetry_keep,),
            )
            return True

    def kept_telemetry(self, limit: int = 500) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, payload FROM telemetry ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(int(i), bytes(p)) for i, p in rows]

    def forget_telemetry(self, upto_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM telemetry WHERE id <= ?", (upto_id,))

    # -- hub commands already applied -------------------------------------------------------
    def command_applied(self, command_id: str) -> bool:
        """True when a command with this id was applied before, in this run or an earlier one."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM command WHERE id=?", (command_id,)).fetchone()
        return row is not None

    def remember_command(self, command_id: str, ts: datetime, *, forget_before: datetime) -> bool:
        """Record a command as applied, before it is applied, and forget those issued before
        `forget_before` (the agent refuses them by age anyway). False when the disk had no
        room: the caller still knows the id for this run."""
        with self._lock:
            self._try("DELETE FROM command WHERE ts < ?", (_sortable(forget_before),))
            return self._try(
                "INSERT OR IGNORE INTO command (id, ts) VALUES (?, ?)", (command_id, _sortable(ts))
            )

    # -- sessions and settings ------------------------------------------------------------
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

    def close_open_session(self) -> OpenSession | None:
        """End the session the previous run left open (crash, power cut), if any, with
        `agent-restart`; the session it ended, or None."""
        open_session = self.open_session()
        if open_session is None:
            return None
        last_alive_raw = self.get_meta("last_alive")
        ended = self._clock()
        if last_alive_raw:
            ended = max(open_session.started_at, datetime.fromisoformat(last_alive_raw))
        # Stamped when it ended (the agent's last sign of life), not at the restart: the hub
        # bills from start to end, and the member must not pay for the downtime.
        self.append(
            EventType.SESSION_ENDED,
            {
                "session_id": open_session.session_id,
                "member": open_session.member,
                "reason": "agent-restart",
                "duration_s": max(0.0, (ended - open_session.started_at).total_seconds()),
            },
            at=ended,
        )
        return open_session

    def set_meta(self, key: str, value: str) -> bool:
        """False when the disk had no room (the agent's periodic writes must not fail)."""
        with self._lock:
            return self._try(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None
