"""A batch of MQTT messages into rows in one transaction: events once, sessions, dead letters."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.maintenance_store import incident_from_event
from hub.models import (
    AgentSeq,
    BusyPeriod,
    DeadLetter,
    Event,
    Machine,
    MachineSession,
    PrintJob,
    TelemetrySample,
)
from protocol.envelope import Envelope, EventType, ProtocolError, decode_envelope
from protocol.messages import Status, Telemetry, decode_message
from protocol.topics import TopicKind, parse_topic

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int | None = None
    qos: int = 0


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

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)


# Called in the batch's transaction with the ids of the sessions whose end it stores (the
# prepaid drawdown, hub/billing_store.py); may return what to do once the batch is committed.
SessionsEnded = Callable[[Session, list[str]], Callable[[], None] | None]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
        dialect = engine.dialect.name
        insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
        table = Event.__table__  # type: ignore[attr-defined]
        self._insert_events = (
            insert_fn(table).on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id)
        )

    def write_batch(self, items: list[Incoming]) -> None:
        """Store what can be stored and dead-letter the rest, all in one transaction.

        Raises only on database failure, in which case nothing of the batch is kept and the
        caller must not acknowledge it.
        """
        events: dict[uuid.UUID, tuple[str, Envelope]] = {}
        dead: list[dict[str, Any]] = []
        statuses: list[tuple[str, Status | None]] = []
        telemetry = 0
        latest_telemetry: dict[str, Telemetry] = {}
        samples: list[dict[str, Any]] = []
        in_batch_duplicates = 0
        now = datetime.now(UTC)
        for item in items:
            try:
                parts = parse_topic(item.topic)
            except ValueError as exc:
                dead.append(_dead(item, "bad_topic", str(exc), now))
                continue
            if parts.kind is TopicKind.EVENT:
                try:
                    env = decode_envelope(item.payload)
                except ProtocolError as exc:
                    dead.append(_dead(item, exc.reason, exc.detail, now))
                    continue
                if env.machine != parts.machine:
                    # A machine may only speak for itself (the broker ACL enforces the topic).
                    dead.append(
                        _dead(
                            item,
                            "machine_mismatch",
                            f"envelope machine {env.machine!r} published on the topic "
                            f"of {parts.machine!r}",
                            now,
                        )
                    )
                    continue
                if env.id in events:
                    in_batch_duplicates += 1
                    continue
                events[env.id] = (parts.site, env)
            elif parts.kind is TopicKind.STATUS:
                try:
                    statuses.append((parts.machine, decode_message(Status, item.payload)))
                except ProtocolError as exc:
                    if item.payload:
                        dead.append(_dead(item, exc.reason, exc.detail, now))
                    else:  # an empty retained message clears the status
                        statuses.append((parts.machine, None))
            elif parts.kind is TopicKind.TELEMETRY:
                telemetry += 1
                try:
                    sample = decode_message(Telemetry, item.payload)
                except ProtocolError as exc:
                    dead.append(_dead(item, exc.reason, exc.detail, now))
                    continue
                latest_telemetry[parts.machine] = sample
                samples.append(
                    {
                        "machine": parts.machine,
                        "ts": sample.ts,
                        "resolution_s": 0,
                        "values": sample.values,
                    }
                )
        new_ids: set[uuid.UUID] = set()
        gaps = 0
        after_commit: Callable[[], None] | None = None
        with Session(self.engine) as session, session.begin():
            if events:
                rows = [
                    {
                        "id": env.id,
                        "site": site,
                        "machine": env.machine,
                        "seq": env.seq,
                        "ts": env.ts,
                        "type": env.type.value,
                        "data": env.data,
                        "received_at": now,
                    }
                    for site, env in events.values()
                ]
                # executemany form: compiled once and cached, sent in multi-row batches by
                # SQLAlchemy's insertmanyvalues; conflicting ids are skipped, not returned.
                result = session.execute(self._insert_events, rows)
                new_ids = {row[0] for row in result}
                fresh = sorted((events[i] for i in new_ids), key=lambda e: (e[1].machine, e[1].seq))
                for site, env in fresh:
                    _apply_session(session, site, env)
                    _apply_machine_use(session, site, env)
                    if env.type is EventType.INCIDENT_REPORTED:
                        incident_from_event(session, site, env)  # a maintenance ticket
                gaps = _track_sequences(session, fresh)
                if self.on_sessions_ended is not None:
                    ended = [
                        e.data["session_id"] for _, e in fresh if e.type is EventType.SESSION_ENDED
                    ]
                    if ended:
                        after_commit = self.on_sessions_ended(session, ended)
            if dead:
                session.execute(insert(DeadLetter.__table__), dead)  # type: ignore[attr-defined]
            for machine, status in statuses:
                _apply_status(session, machine, status, now)
            if samples:
                session.execute(insert(TelemetrySample.__table__), samples)  # type: ignore[attr-defined]
            for machine, sample in latest_telemetry.items():
                session.execute(
                    update(Machine)
                    .where(Machine.code == machine)
                    .values(  # type: ignore[arg-type]
                        last_telemetry={"ts": sample.model_dump(mode="json")["ts"], **sample.values}
                    )
                )
        if after_commit is not None:
            after_commit()
        self.stats.add(
            received=len(items),
            stored=len(new_ids),
            duplicates=len(events) - len(new_ids) + in_batch_duplicates,
            dead_letters=len(dead),
            statuses=len(statuses),
            telemetry=telemetry,
            batches=1,
            gaps_detected=gaps,
        )


def _dead(item: Incoming, reason: str, detail: str, now: datetime) -> dict[str, Any]:
    return {
        "topic": item.topic[:512],
        "payload": item.payload,
        "reason": reason[:40],
        "detail": detail[:2000],
        "received_at": now,
    }


def _apply_session(session: Session, site: str, env: Envelope) -> None:
    data = env.data
    if env.type is EventType.SESSION_STARTED:
        row = session.get(MachineSession, data["session_id"])
        if row is None:
            row = MachineSession(
                id=data["session_id"], site=site, machine=env.machine, member_ref=data["member"]
            )
        row.badge = data.get("badge", "")
        row.mode = data.get("mode") or "normal"
        row.supervisor_ref = data.get("supervisor")
        row.started_at = env.ts
        session.add(row)
    elif env.type is EventType.SESSION_ENDED:
        row = session.get(MachineSession, data["session_id"])
        duration = float(data.get("duration_s", 0))
        if row is None:
            # The end arrived first (replay order across a reconnect): keep what we know.
            row = MachineSession(
                id=data["session_id"],
                site=site,
                machine=env.machine,
                member_ref=data["member"],
                started_at=env.ts - timedelta(seconds=duration),
            )
        row.ended_at = env.ts
        row.end_reason = data.get("reason")
        row.duration_s = duration
        row.busy_s = float(data.get("busy_s", 0) or 0)
        session.add(row)


def _member_of(session: Session, session_id: str | None) -> str | None:
    if not session_id:
        return None
    row = session.get(MachineSession, session_id)
    return row.member_ref if row else None


def _apply_machine_use(session: Session, site: str, env: Envelope) -> None:
    """Busy periods and jobs, billed to the member of the session open when they began."""
    data = env.data
    if env.type is EventType.MACHINE_BUSY:
        session.add(
            BusyPeriod(
                site=site,
                machine=env.machine,
                source=data["source"],
                session_id=data.get("session_id"),
                member_ref=_member_of(session, data.get("session_id")),
                started_at=env.ts,
            )
        )
    elif env.type is EventType.MACHINE_IDLE:
        busy_s = float(data["busy_s"])
        session.flush()
        open_period = session.exec(
            select(BusyPeriod)
            .where(BusyPeriod.machine == env.machine, BusyPeriod.ended_at.is_(None))  # type: ignore[union-attr]
            .order_by(BusyPeriod.started_at.desc())
        ).first()  # type: ignore[attr-defined]
        if open_period is None:  # the start was lost or is still on its way: keep what we know
            open_period = BusyPeriod(
                site=site,
                machine=env.machine,
                source=data["source"],
                session_id=data.get("session_id"),
                member_ref=_member_of(session, data.get("session_id")),
                started_at=env.ts - timedelta(seconds=busy_s),
            )
        open_period.ended_at = env.ts
        open_period.busy_s = busy_s
        session.add(open_period)
    elif env.type in (EventType.JOB_STARTED, EventType.JOB_FINISHED, EventType.JOB_FAILED):
        key = f"{env.machine}:{data['job_id']}"[:128]
        job = session.get(PrintJob, key) or PrintJob(
            id=key, site=site, machine=env.machine, job_id=str(data["job_id"])[:100]
        )
        job.session_id = data.get("session_id") or job.session_id
        job.member_ref = data.get("member") or job.member_ref or _member_of(session, job.session_id)
        if env.type is EventType.JOB_STARTED:
            job.file = str(data.get("file", ""))[:255]
            job.started_at = env.ts
        else:
            job.ended_at = env.ts
            job.duration_s = float(data["duration_s"])
            job.state = "finished" if env.type is EventType.JOB_FINISHED else "failed"
            job.error = str(data["error"])[:500] if data.get("error") else None
            if job.started_at is None:
                job.started_at = env.ts - timedelta(seconds=job.duration_s)
        session.add(job)


def _track_sequences(session: Session, fresh: list[tuple[str, Envelope]]) -> int:
    """Update each agent's highest seq and count; returns how many new gaps appeared."""
    per_agent: dict[tuple[str, str], list[Envelope]] = {}
    for site, env in fresh:
        per_agent.setdefault((site, env.machine), []).append(env)
    if not per_agent:
        return 0
    machines = {machine for _, machine in per_agent}
    rows = {
        (row.site, row.machine): row
        for row in session.exec(
            select(AgentSeq).where(AgentSeq.machine.in_(machines))  # type: ignore[attr-defined]
        )
    }
    new_gaps = 0
    for (site, machine), envs in per_agent.items():
        row = rows.get((site, machine)) or AgentSeq(site=site, machine=machine)
        before = row.missing
        row.max_seq = max(row.max_seq, max(e.seq for e in envs))
        row.seen += len(envs)
        row.last_event_at = max(e.ts for e in envs)
        if row.missing > before:
            new_gaps += row.missing - before
            log.debug(
                "agent %s/%s: %d event(s) not seen yet below seq %d",
                site,
                machine,
                row.missing,
                row.max_seq,
            )
        session.add(row)
    return new_gaps


def _apply_status(session: Session, machine: str, status: Status | None, now: datetime) -> None:
    values: dict[str, Any]
    if status is None:
        values = {"online": False, "last_status": None}
    else:
        values = {
            "online": status.state == "online",
            "last_status": status.model_dump(mode="json", exclude_none=True),
            "last_seen": now,
        }
    session.execute(update(Machine).where(Machine.code == machine).values(**values))  # type: ignore[arg-type]
