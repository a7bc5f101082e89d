"""A batch of MQTT messages into rows in one transaction: events once, sessions, dead letters."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import insert, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, col, select

from hub.ingest.apply import apply_machine_use, apply_session, apply_status
from hub.models import (
    AgentSeq,
    DeadLetter,
    Event,
    Machine,
    TelemetrySample,
)
from hub.services.maintenance.records import incident_from_event
from hub.services.notification_triggers import on_event as notify_on_event
from protocol import limits
from protocol.envelope import Envelope, EventType, ProtocolError, decode_envelope
from protocol.messages import Status, Telemetry, decode_message
from protocol.topics import TopicKind, TopicParts, parse_topic

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int | None = None
    qos: int = 0
    connection: int = 0  # which broker connection delivered it (the consumer's count)
    arrived: float = 0.0  # time.monotonic() when the consumer received it (its lag)


@dataclass
class IngestStats:
    """Counters since start, exposed by the API and /metrics."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    statuses: int = 0
    telemetry: int = 0
    batches: int = 0
    gaps_detected: int = 0
    db_retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _dead_by_reason: dict[str, int] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def dead(self, reasons: list[str]) -> None:
        with self._lock:
            for reason in reasons:
                self._dead_by_reason[reason] = self._dead_by_reason.get(reason, 0) + 1

    def dead_letters_by_reason(self) -> dict[str, int]:
        with self._lock:
            return dict(self._dead_by_reason)


# Called in the batch's transaction with the ids of the sessions whose end it stores (the
# prepaid drawdown, hub/billing_store.py); may return what to do once the batch is committed.
SessionsEnded = Callable[[Session, list[str]], Callable[[], None] | None]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@lru_cache(maxsize=4096)
def _parse_topic(name: str) -> TopicParts:
    """Topics repeat (one per machine and kind): parsed once each. Raises ValueError."""
    return parse_topic(name)


_SQLITE_DEFAULT_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def _sqlite_stores_iso(column_type: Any) -> bool:
    impl = getattr(column_type, "impl", column_type)
    storage = impl.dialect_impl(sqlite.dialect())
    return getattr(storage, "_storage_format", None) == _SQLITE_DEFAULT_FORMAT


def sqlite_timestamp(value: datetime) -> str:
    """What SQLAlchemy writes for an aware timestamp on SQLite (UTC, no zone, microseconds),
    made by `isoformat` instead of a %-format of seven attributes."""
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


_EVENT_COLUMNS = ("id", "site", "machine", "seq", "ts", "type", "data", "received_at")


class EventInsert:
    """The batch's events in one statement that skips known ids and returns the new ones.

    Written on the driver's connection with the column types' own bind conversions, so the
    stored values are exactly what the ORM stores, without SQLAlchemy's per-row bookkeeping
    (that bookkeeping was a third of the ingest's time). SQLite: one multi-row VALUES per
    chunk, `ON CONFLICT DO NOTHING RETURNING id`. PostgreSQL: one `INSERT ... SELECT FROM
    unnest(arrays)` per batch, the same clause. Either way a concurrent worker's copy of the
    same envelope is skipped by the primary key, never applied twice.
    """

    SQLITE_CHUNK = 500  # 8 columns: 4,000 variables, well under SQLite's 32,766

    def __init__(self, engine: Engine) -> None:
        table = Event.__table__  # type: ignore[attr-defined]
        self.dialect = engine.dialect.name
        convert = {
            name: table.c[name].type._cached_bind_processor(engine.dialect)
            for name in ("id", "ts", "received_at")
        }
        self._id = convert["id"] or (lambda value: value)
        self._ts = convert["ts"] or (lambda value: value)
        if self.dialect == "sqlite" and _sqlite_stores_iso(table.c.ts.type):
            self._ts = sqlite_timestamp  # the same text, from C (a third of the row's cost)
        self._received = convert["received_at"] or (lambda value: value)
        self._json = engine.dialect._json_serializer or json.dumps
        columns = ", ".join(_EVENT_COLUMNS)
        if self.dialect == "postgresql":
            # Arrays sent in binary (%b): psycopg's text form escapes each element in Python.
            casts = ("uuid", "text", "text", "int8", "timestamptz", "text", "text", "timestamptz")
            arrays = ", ".join(f"%b::{cast}[]" for cast in casts)
            self._pg_sql = (
                f"INSERT INTO event ({columns}) SELECT i, s, m, q, t, k, d::json, r "
                f"FROM unnest({arrays}) AS batch(i, s, m, q, t, k, d, r) "
                "ON CONFLICT (id) DO NOTHING RETURNING id"
            )
        self._sqlite_head = f"INSERT INTO event ({columns}) VALUES "
        self._sqlite_sql: dict[int, str] = {}

    def __call__(
        self, conn: Connection, events: Sequence[tuple[str, Envelope]], received_at: datetime
    ) -> set[uuid.UUID]:
        """Insert, and return the ids that were new."""
        if not events:
            return set()
        ids = [env.id for _, env in events]
        stored = [self._id(i) for i in ids]
        by_stored = dict(zip(stored, ids, strict=True))
        sites = [site for site, _ in events]
        machines = [env.machine for _, env in events]
        seqs = [env.seq for _, env in events]
        stamps = [self._ts(env.ts) for _, env in events]
        types = [env.type.value for _, env in events]
        dumps = self._json
        data = [dumps(env.data) for _, env in events]
        received = self._received(received_at)
        new: set[uuid.UUID] = set()
        if self.dialect == "postgresql":
            params = (stored, sites, machines, seqs, stamps, types, data, [received] * len(ids))
            for (value,) in conn.exec_driver_sql(self._pg_sql, params):
                new.add(value if isinstance(value, uuid.UUID) else by_stored[value])
            return new
        rows = list(zip(stored, sites, machines, seqs, stamps, types, data, strict=True))
        for start in range(0, len(rows), self.SQLITE_CHUNK):
            chunk = rows[start : start + self.SQLITE_CHUNK]
            params_flat: list[Any] = []
            for row in chunk:
                params_flat.extend(row)
                params_flat.append(received)
            for (value,) in conn.exec_driver_sql(
                self._sqlite_statement(len(chunk)), tuple(params_flat)
            ):
                new.add(by_stored[value])
        return new

    def _sqlite_statement(self, rows: int) -> str:
        sql = self._sqlite_sql.get(rows)
        if sql is None:
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
            sql = f"{self._sqlite_head}{values} ON CONFLICT (id) DO NOTHING RETURNING id"
            self._sqlite_sql[rows] = sql
        return sql


@dataclass(slots=True)
class _Unit:
    """One message of a batch, validated: what it will store, or why it is a dead letter."""

    item: Incoming
    kind: TopicKind | None = None
    site: str = ""
    machine: str = ""
    envelope: Envelope | None = None
    status: Status | None = None  # None on the status topic: an empty retained message
    sample: Telemetry | None = None
    dead: dict[str, Any] | None = None


@dataclass(slots=True)
class _Stored:
    new_ids: int = 0
    duplicates: int = 0
    gaps: int = 0
    statuses: int = 0
    dead_reasons: list[str] = field(default_factory=list)


class IngestWriter:
    def __init__(
        self,
        engine: Engine,
        stats: IngestStats | None = None,
        on_sessions_ended: SessionsEnded | None = None,
    ) -> None:
        self.engine = engine
        self.stats = stats or IngestStats()
        self.on_sessions_ended = on_sessions_ended
        self._insert_events = EventInsert(engine)
        self._sequences = SequenceTracker(engine.dialect.name)

    def write_batch(self, items: list[Incoming]) -> None:
        """Store what can be stored and dead-letter the rest.

        One transaction when all goes well. When the database refuses the batch for something
        one message holds (a value it cannot store, a constraint) or storing one raises, the
        batch is split in halves until that message is alone: it becomes a dead letter with
        the database's reason, and every other message is stored. Raises only when the
        database is away (`database_unavailable`): then nothing of the batch is kept and the
        caller must not acknowledge it.
        """
        now = datetime.now(UTC)
        units, in_batch_duplicates, telemetry = self._validate(items, now)
        done = _Stored()
        self._store(units, now, done)
        self.stats.add(
            received=len(items),
            stored=done.new_ids,
            duplicates=done.duplicates + in_batch_duplicates,
            dead_letters=len(done.dead_reasons),
            statuses=done.statuses,
            telemetry=telemetry,
            batches=1,
            gaps_detected=done.gaps,
        )
        self.stats.dead(done.dead_reasons)

    def _validate(self, items: list[Incoming], now: datetime) -> tuple[list[_Unit], int, int]:
        units: list[_Unit] = []
        seen: set[uuid.UUID] = set()
        in_batch_duplicates = telemetry = 0
        for item in items:
            try:
                parts = _parse_topic(item.topic)
            except ValueError as exc:
                units.append(_Unit(item, dead=_dead(item, "bad_topic", str(exc), now)))
                continue
            unit = _Unit(item, parts.kind, parts.site, parts.machine)
            try:
                if parts.kind is TopicKind.EVENT:
                    env = decode_envelope(item.payload)
                    if env.machine != parts.machine:
                        # A machine may only speak for itself (the broker ACL enforces the topic).
                        raise ProtocolError(
                            "machine_mismatch",
                            f"envelope machine {env.machine!r} published on the topic "
                            f"of {parts.machine!r}",
                        )
                    if env.id in seen:
                        in_batch_duplicates += 1
                        continue
                    seen.add(env.id)
                    unit.envelope = env
                elif parts.kind is TopicKind.STATUS:
                    if item.payload:  # an empty retained message clears the status
                        unit.status = decode_message(Status, item.payload)
                elif parts.kind is TopicKind.TELEMETRY:
                    telemetry += 1
                    unit.sample = decode_message(Telemetry, item.payload)
                else:
                    continue  # the hub's own topics (acl, cmd) are not subscribed to
            except ProtocolError as exc:
                unit.dead = _dead(item, exc.reason, exc.detail, now)
            units.append(unit)
        return units, in_batch_duplicates, telemetry

    def _store(self, units: list[_Unit], now: datetime, done: _Stored) -> None:
        """Store `units` in one transaction, or split them until the culprit is alone."""
        if not units:
            return
        try:
            self._transaction(units, now, done)
            return
        except Exception as exc:
            if database_unavailable(self.engine, exc):
                raise
            if len(units) > 1:
                log.info("a batch of %d was refused (%s): splitting it", len(units), _why(exc))
                middle = len(units) // 2
                self._store(units[:middle], now, done)
                self._store(units[middle:], now, done)
                return
            unit = units[0]
            if unit.dead is None:
                log.warning("a message on %s was refused: %s", unit.item.topic, _why(exc))
                self._store([_Unit(unit.item, dead=_refused(unit.item, exc, now))], now, done)
                return
            # The dead letter itself was refused: keep what identifies it (size and hash).
            log.error("dead letter refused (%s); keeping its size and hash only", _why(exc))
            stripped = unit.dead | {"payload": b"", "detail": _clean(_why(exc))}
            self._transaction([_Unit(unit.item, dead=stripped)], now, done)

    def _transaction(self, units: list[_Unit], now: datetime, done: _Stored) -> None:
        events = [(u.site, u.envelope) for u in units if u.envelope is not None]
        dead = [u.dead for u in units if u.dead is not None]
        statuses = [
            (u.machine, u.status) for u in units if u.kind is TopicKind.STATUS and not u.dead
        ]
        samples = [(u.machine, u.sample) for u in units if u.sample is not None]
        new_ids: set[uuid.UUID] = set()
        gaps = 0
        after_commit: Callable[[], None] | None = None
        with Session(self.engine) as session, session.begin():
            if events:
                conn = session.connection()
                new_ids = self._insert_events(conn, events, now)
                fresh = sorted(
                    (e for e in events if e[1].id in new_ids),
                    key=lambda e: (e[1].machine, e[1].seq),
                )
                for site, env in fresh:
                    if env.type in _BOOKKEEPING:
                        apply_session(session, site, env)
                        apply_machine_use(session, site, env)
                        if env.type is EventType.INCIDENT_REPORTED:
                            incident_from_event(session, site, env)  # a maintenance ticket
                        # Who is told about it: written with the event (the outbox).
                        notify_on_event(
                            session,
                            event_id=str(env.id),
                            event_type=env.type.value,
                            machine=env.machine,
                            data=env.data,
                            now=now,
                        )
                gaps = self._sequences(conn, fresh)
                if self.on_sessions_ended is not None:
                    ended = [
                        e.data["session_id"] for _, e in fresh if e.type is EventType.SESSION_ENDED
                    ]
                    if ended:
                        after_commit = self.on_sessions_ended(session, ended)
            if dead:
                session.execute(insert(DeadLetter.__table__), dead)  # type: ignore[attr-defined]
            for machine, status in statuses:
                apply_status(session, machine, status, now)
            if samples:
                session.execute(
                    insert(TelemetrySample.__table__),  # type: ignore[attr-defined]
                    [
                        {
                            "machine": machine,
                            "ts": sample.ts,
                            "resolution_s": 0,
                            "values": sample.values,
                        }
                        for machine, sample in samples
                    ],
                )
            latest = {machine: sample for machine, sample in samples}
            for machine, sample in latest.items():
                session.execute(
                    update(Machine)
                    .where(col(Machine.code) == machine)
                    .values(
                        last_telemetry={"ts": sample.model_dump(mode="json")["ts"], **sample.values}
                    )
                )
        done.new_ids += len(new_ids)
        done.duplicates += len(events) - len(new_ids)
        done.gaps += gaps
        done.statuses += len(statuses)
        done.dead_reasons.extend(row["reason"] for row in dead)
        if after_commit is not None:
            # Committed already: a failure here (re-publishing the lists) is not the batch's,
            # and splitting it would store its dead letters twice.
            try:
                after_commit()
            except Exception:
                log.exception("after storing a batch of %d message(s)", len(units))


# SQLite reports a busy or full database as OperationalError, as PostgreSQL does a lost
# connection; these are the database's state, not the batch's: retried, never dead-lettered.
_SQLITE_AWAY = ("locked", "busy", "full", "disk i/o", "readonly", "unable to open")
# PostgreSQL SQLSTATE classes of the same kind: connection (08), insufficient resources (53),
# operator intervention (57, a restart), system error (58).
_PG_AWAY = ("08", "53", "57", "58")


def database_unavailable(engine: Engine, exc: BaseException) -> bool:
    """Whether `exc` means the database is away (retry the batch later) rather than refusing
    something in it (split the batch and dead-letter the culprit)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False  # DataError, IntegrityError, ProgrammingError...: the batch's content
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate[:2] in _PG_AWAY:
            return True
    elif engine.dialect.name == "sqlite" and any(
        word in str(exc.orig).lower() for word in _SQLITE_AWAY
    ):
        return True
    # Another OperationalError (a program limit, "string or blob too big") may be the batch's
    # own: it is the database's absence only if the database does not answer now.
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError:
        return True
    return False


def _why(exc: BaseException) -> str:
    """`IntegrityError (UniqueViolation): duplicate key...`: SQLAlchemy's class, the driver's."""
    orig = getattr(exc, "orig", None)
    kind = type(exc).__name__ + (f" ({type(orig).__name__})" if orig is not None else "")
    lines = str(orig if orig is not None else exc).splitlines()
    return f"{kind}: {lines[0] if lines else ''}"


def _refused(item: Incoming, exc: BaseException, now: datetime) -> dict[str, Any]:
    reason = "db_refused" if isinstance(exc, DBAPIError) else "not_storable"
    return _dead(item, reason, f"the database refused it: {_why(exc)}", now)


# The event types that make rows besides the event itself (sessions, busy periods, jobs,
# tickets); the others (badge decisions, agent start, commands...) are only stored.
_BOOKKEEPING = frozenset(
    {
        EventType.SESSION_STARTED,
        EventType.SESSION_ENDED,
        EventType.MACHINE_BUSY,
        EventType.MACHINE_IDLE,
        EventType.JOB_STARTED,
        EventType.JOB_FINISHED,
        EventType.JOB_FAILED,
        EventType.INCIDENT_REPORTED,
        EventType.SPOOL_ATTACHED,
    }
)


def _clean(text: str) -> str:
    """Text any database stores: NUL and lone surrogates written as escapes."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _dead(item: Incoming, reason: str, detail: str, now: datetime) -> dict[str, Any]:
    """A dead letter's row: the reason, the payload's size and sha256, its first
    DEAD_LETTER_PAYLOAD_BYTES (a flood of big refused messages cannot fill the disk)."""
    payload = item.payload
    return {
        "topic": _clean(item.topic)[: limits.DEAD_LETTER_TOPIC_MAX_CHARS],
        "payload": payload[: limits.DEAD_LETTER_PAYLOAD_BYTES],
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "reason": reason[: limits.REASON_MAX_CHARS],
        "detail": _clean(detail)[: limits.DEAD_LETTER_DETAIL_MAX_CHARS],
        "received_at": now,
    }


class SequenceTracker:
    """Each agent's highest seq and count of events seen, for gap detection and repair.

    One upsert per batch whatever the number of agents in it; the count is added and the
    highest seq kept by the database itself, so ingest workers writing at the same time
    cannot lose each other's updates."""

    def __init__(self, dialect: str) -> None:
        greatest = "GREATEST" if dialect == "postgresql" else "max"
        mark = "%s" if dialect == "postgresql" else "?"
        self._row = f"({mark}, {mark}, {mark}, {mark}, {mark})"
        self._head = "INSERT INTO agent_seq (site, machine, max_seq, seen, last_event_at) VALUES "
        self._tail = (
            " ON CONFLICT (site, machine) DO UPDATE SET"
            f" max_seq = {greatest}(agent_seq.max_seq, excluded.max_seq),"
            " seen = agent_seq.seen + excluded.seen,"
            f" last_event_at = {greatest}("
            "COALESCE(agent_seq.last_event_at, excluded.last_event_at), excluded.last_event_at)"
        )
        self._stamp = AgentSeq.__table__.c.last_event_at.type  # type: ignore[attr-defined]

    def __call__(self, conn: Connection, fresh: list[tuple[str, Envelope]]) -> int:
        """Record the batch's new events; returns how many new gaps appeared."""
        per_agent: dict[tuple[str, str], tuple[int, int, datetime]] = {}
        for site, env in fresh:
            key = (site, env.machine)
            top, count, last = per_agent.get(key, (0, 0, env.ts))
            per_agent[key] = (max(top, env.seq), count + 1, max(last, env.ts))
        if not per_agent:
            return 0
        table = AgentSeq.__table__  # type: ignore[attr-defined]
        before = {
            (site, machine): (max_seq, seen)
            for site, machine, max_seq, seen in conn.execute(
                select(table.c.site, table.c.machine, table.c.max_seq, table.c.seen).where(
                    table.c.machine.in_({machine for _, machine in per_agent})
                )
            )
        }
        stamp = self._stamp._cached_bind_processor(conn.dialect) or (lambda value: value)
        params: list[Any] = []
        new_gaps = 0
        for (site, machine), (top, count, last) in sorted(per_agent.items()):
            params.extend((site, machine, top, count, stamp(last)))
            # The gap as this batch sees it (a concurrent worker's events may fill it).
            old_top, old_seen = before.get((site, machine), (0, 0))
            missing_before = max(0, old_top - old_seen)
            missing_after = max(0, max(old_top, top) - (old_seen + count))
            if missing_after > missing_before:
                new_gaps += missing_after - missing_before
                log.debug(
                    "agent %s/%s: %d event(s) not seen yet below seq %d",
                    site,
                    machine,
                    missing_after,
                    max(old_top, top),
                )
        sql = self._head + ", ".join([self._row] * len(per_agent)) + self._tail
        conn.exec_driver_sql(sql, tuple(params))
        return new_gaps
