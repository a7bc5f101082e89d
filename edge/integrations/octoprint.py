"""Watch a 3D printer through OctoPrint: jobs, temperatures, progress, and the no-session policy.

The watcher polls OctoPrint's REST API (through octorest, with timeouts it does not set itself)
on its own thread and hands what it sees to the agent through two callbacks that only enqueue:
`emit_event(EventType, data)` for durable events (journaled, QoS 1) and `emit_telemetry(values)`
for samples (QoS 0). What happens between two polls is decided by the pure `step()` function,
so the rules are tested without OctoPrint.

Reporting choices (documented here because the hub reads them):
- A job is `job.started` when OctoPrint starts printing, and ends as `job.finished` (completion
  reached 100 %) or `job.failed`; `reason` says why it ended (`completed`, `cancelled`,
  `error`, `no-session`, `printer-offline`) and `error` the printer's words. A job that ends
  because the printer went offline (OctoPrint lost its serial link, or OctoPrint itself was
  unreachable and came back without the job) is `printer-offline`, never `cancelled`: nobody
  cancelled it, and the lab decides how such a job is billed (docs/billing.md).
  `printing_seen_s` is the time from its start to the last poll that saw it printing (or
  paused), what a lab billing "until it went offline" charges. It keeps the session and member
  that were open when it started, for the whole job, even if that session ends: the busy time
  is billed to whoever started it.
- A job started with no open session is paused or cancelled (`no_session_policy`) and reported
  as `incident.reported` with `kind="no-session"`; a cancelled one then ends as `job.failed`
  with `error="no-session"`. A paused one resumed while a session is open belongs to that
  session from then on; resumed with none, it is paused again.
- OctoPrint not answering is an `incident.reported` with `kind="printer-offline"` and telemetry
  `printer_online=False`; answering again is `kind="printer-online"` and `printer_online=True`.
- `machine.busy` / `machine.idle` (source "octoprint") bracket each job.
- `holds_power()` is True while a job is open (including while OctoPrint is unreachable
  mid-job: the printer may still be printing), so the agent must not cut the relay.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import requests

from edge.config import OctoPrintOptions
from edge.domain.filament import used_length_mm
from protocol.vocab import EventType

log = logging.getLogger(__name__)

SOURCE = "octoprint"
NO_SESSION = "no-session"
PRINTER_OFFLINE = "printer-offline"


class SessionLike(Protocol):
    @property
    def session_id(self) -> str: ...

    @property
    def member(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    member: str


# -- what one poll saw ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Poll:
    """One poll of OctoPrint, reduced to what the rules need. `online=False`: it did not answer."""

    online: bool
    state: str = "Offline"
    printing: bool = False
    paused: bool = False
    error: str | None = None
    file: str = ""
    completion: float | None = None
    print_time_left_s: float | None = None
    # The job's analysed filament length, mm, all extruders together (None: not analysed).
    filament_mm: float | None = None
    temperatures: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    reason: str = ""
    # False: OctoPrint answers but has no printer on its serial link ("Offline", "Closed").
    connected: bool = True

    @property
    def job_active(self) -> bool:
        return self.online and (self.printing or self.paused)


def parse_poll(job: dict[str, Any], printer: dict[str, Any] | None) -> Poll:
    """Build a Poll from /api/job and /api/printer (None when the printer is disconnected)."""
    state_text = str(job.get("state") or "Unknown")
    flags: dict[str, Any] = {}
    error = job.get("error") or None
    temps: dict[str, tuple[float | None, float | None]] = {}
    if printer:
        pstate = printer.get("state") or {}
        flags = pstate.get("flags") or {}
        error = error or pstate.get("error") or None
        for name, values in (printer.get("temperature") or {}).items():
            if isinstance(values, dict) and (name in ("bed", "chamber") or name.startswith("tool")):
                temps[name] = (_num(values.get("actual")), _num(values.get("target")))
    lowered = state_text.lower()
    printing = bool(flags.get("printing")) or lowered.startswith(("printing", "cancelling"))
    paused = bool(flags.get("paused") or flags.get("pausing")) or lowered.startswith("paus")
    if flags.get("error") or lowered.startswith("error"):
        error = error or state_text
    file_info = (job.get("job") or {}).get("file") or {}
    filament = (job.get("job") or {}).get("filament") or {}
    lengths = (
        [_num(tool.get("length")) for tool in filament.values() if isinstance(tool, dict)]
        if isinstance(filament, dict)
        else []
    )
    known = [length for length in lengths if length is not None and length >= 0]
    progress = job.get("progress") or {}
    # Told by the state, not by a missing /api/printer: OctoPrint answers 409 there in an
    # error state too, and a thermal runaway is an error, not a printer gone offline.
    connected = not lowered.startswith(("offline", "closed"))
    return Poll(
        online=True,
        state=state_text,
        printing=printing,
        paused=paused,
        error=str(error) if error else None,
        file=str(file_info.get("name") or file_info.get("path") or ""),
        completion=_num(progress.get("completion")),
        print_time_left_s=_num(progress.get("printTimeLeft")),
        temperatures=temps,
        connected=connected,
        filament_mm=sum(known) if known else None,
    )


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# -- the rules -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    file: str
    started_at: datetime
    session_id: str | None
    member: str | None
    # The no-session policy applied: "pause" asked, "paused" seen paused, "cancel" asked.
    enforced: Literal["pause", "paused", "cancel"] | None = None
    # The last poll that saw it printing or paused (its start until a poll sees it again).
    seen_at: datetime | None = None
    # OctoPrint's analysis of its file (mm of filament), once a poll has shown it.
    filament_mm: float | None = None


@dataclass(frozen=True, slots=True)
class WatchState:
    online: bool | None = None  # None: never polled yet
    job: Job | None = None
    last_completion: float | None = None


@dataclass(frozen=True, slots=True)
class Emit:
    type: EventType
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Enforce:
    """Pause or cancel the running print (the no-session policy)."""

    action: Literal["pause", "cancel"]


Action = Emit | Enforce


def step(
    prev: WatchState,
    poll: Poll,
    session: SessionLike | None,
    now: datetime,
    *,
    policy: Literal["pause", "cancel"],
    new_job_id: Callable[[], str],
) -> tuple[WatchState, list[Action]]:
    """From the previous state and this poll, the next state and what to emit or do."""
    actions: list[Action] = []
    if not poll.online:
        if prev.online is not False:
            actions.append(_incident("printer-offline", f"OctoPrint not answering: {poll.reason}"))
        # The job stays open: the printer may still be printing without OctoPrint answering.
        return replace(prev, online=False), actions

    if prev.online is False:
        actions.append(_incident("printer-online", "OctoPrint answering again"))
    job = prev.job

    if job is not None and not poll.job_active:
        # Back from unreachable without the job, or the printer off OctoPrint's serial link:
        # the printer went offline under the job.
        offline = prev.online is False or not poll.connected
        actions.extend(_end_job(job, poll, prev.last_completion, now, offline=offline))
        job = None
    elif job is not None and poll.file and job.file and poll.file != job.file:
        # A new job started between two polls: close the old one as OctoPrint last showed it.
        actions.extend(_end_job(job, poll, prev.last_completion, now, ended_between_polls=True))
        job = None

    if job is None and poll.job_active:
        job = Job(
            job_id=new_job_id(),
            file=poll.file,
            started_at=now,
            session_id=session.session_id if session else None,
            member=session.member if session else None,
        )
        actions.append(
            Emit(
                EventType.JOB_STARTED,
                {
                    "job_id": job.job_id,
                    "file": job.file,
                    "session_id": job.session_id,
                    "member": job.member,
                },
            )
        )
        actions.append(
            Emit(EventType.MACHINE_BUSY, {"source": SOURCE, "session_id": job.session_id})
        )

    if job is not None and job.enforced == "pause" and poll.paused:
        job = replace(job, enforced="paused")
    if job is not None and job.session_id is None and poll.printing and not poll.paused:
        if session is not None and job.enforced == "paused":
            # Resumed by a member who badged in: the rest of the job is theirs.
            job = replace(job, session_id=session.session_id, member=session.member, enforced=None)
        elif session is None and job.enforced in (None, "paused"):
            # Enforced once per time it is seen printing: not again while OctoPrint acts.
            job = replace(job, enforced=policy)
            actions.append(Enforce(policy))
            actions.append(
                Emit(
                    EventType.INCIDENT_REPORTED,
                    {
                        "source": SOURCE,
                        "kind": NO_SESSION,
                        "action": policy,
                        "job_id": job.job_id,
                        "file": job.file,
                        "note": f"print started with no badge session: {policy}d",
                    },
                )
            )

    if job is not None and poll.job_active:
        job = replace(job, seen_at=now, filament_mm=poll.filament_mm or job.filament_mm)
    completion = poll.completion if poll.job_active else None
    return WatchState(online=True, job=job, last_completion=completion), actions


def _end_job(
    job: Job,
    poll: Poll,
    last_completion: float | None,
    now: datetime,
    *,
    ended_between_polls: bool = False,
    offline: bool = False,
) -> list[Action]:
    duration = max(0.0, (now - job.started_at).total_seconds())
    seen = max(0.0, ((job.seen_at or job.started_at) - job.started_at).total_seconds())
    completion = last_completion if ended_between_polls else poll.completion
    done = completion is not None and completion >= 99.99 and not poll.error
    error: str | None = None
    reason = "completed"
    if done:
        pass
    elif offline:
        reason = PRINTER_OFFLINE
        error = poll.error or PRINTER_OFFLINE
    elif poll.error:
        reason, error = "error", poll.error
    else:
        reason = error = NO_SESSION if job.enforced == "cancel" else "cancelled"
    data: dict[str, Any] = {
        "job_id": job.job_id,
        "file": job.file,
        "duration_s": duration,
        "session_id": job.session_id,
        "member": job.member,
        "error": error,
        "completion": completion,
        "reason": reason,
        "printing_seen_s": min(seen, duration),
    }
    if job.filament_mm is not None:
        data["filament_mm"] = used_length_mm(job.filament_mm, completion, done)
    return [
        Emit(EventType.JOB_FINISHED if done else EventType.JOB_FAILED, data),
        Emit(
            EventType.MACHINE_IDLE,
            {"source": SOURCE, "busy_s": duration, "session_id": job.session_id},
        ),
    ]


def _incident(kind: str, note: str) -> Emit:
    return Emit(EventType.INCIDENT_REPORTED, {"source": SOURCE, "kind": kind, "note": note})


def telemetry_values(poll: Poll, job: Job | None) -> dict[str, Any]:
    values: dict[str, Any] = {"printer_online": poll.online, "state": poll.state}
    if not poll.online:
        return values
    for name, (actual, target) in poll.temperatures.items():
        values[f"{name}_actual"] = actual
        values[f"{name}_target"] = target
    values["progress"] = poll.completion if poll.job_active else None
    values["print_time_left_s"] = poll.print_time_left_s if poll.job_active else None
    values["file"] = poll.file or None
    values["error"] = poll.error
    values["job_id"] = job.job_id if job else None
    return values


# -- OctoPrint through octorest ------------------------------------------------------------


class _TimeoutSession(requests.Session):
    """octorest sets no timeout on any request; this session gives each one a bound."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout_s)
        return super().request(method, url, *args, **kwargs)


class OctoPrintClient:
    """The few OctoPrint calls the agent and its tests make, each bounded in time."""

    def __init__(self, url: str, api_key: str, *, timeout_s: float = 5.0) -> None:
        from octorest import OctoRest

        session = _TimeoutSession(timeout_s)
        # Set the key on the session ourselves: octorest's load_api_key() calls OctoPrint at
        # once, and an agent must start even when OctoPrint is down.
        session.headers.update({"X-Api-Key": api_key})
        self._rest = OctoRest(url=url, session=session)

    def version(self) -> dict[str, Any]:
        return dict(self._rest.get_version())

    def poll(self) -> Poll:
        try:
            job = self._rest.job_info()
        except (requests.RequestException, RuntimeError, ValueError) as exc:
            return Poll(online=False, reason=_short(exc))
        try:
            printer = self._rest.printer()
        except RuntimeError as exc:
            if "(409)" not in str(exc):  # 409: printer not connected, OctoPrint itself is fine
                return Poll(online=False, reason=_short(exc))
            printer = None
        except (requests.RequestException, ValueError) as exc:
            return Poll(online=False, reason=_short(exc))
        return parse_poll(job, printer)

    def pause(self) -> None:
        self._rest.pause()

    def cancel(self) -> None:
        self._rest.cancel()

    def connect(self) -> None:
        self._rest.connect()

    def upload_and_print(self, path: Path) -> None:
        # octorest's upload(select=True, print=True) sends its flags as JSON next to the file,
        # which requests drops for multipart bodies: upload, then select, then start.
        self._rest.upload(str(path))
        self._rest.select(path.name)
        self._rest.start()


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


# -- the watcher thread --------------------------------------------------------------------


class OctoPrintWatcher:
    """Polls one OctoPrint on its own thread; emits through callbacks that only enqueue."""

    def __init__(
        self,
        options: OctoPrintOptions,
        *,
        session_provider: Callable[[], SessionLike | None],
        emit_event: Callable[[EventType, dict[str, Any]], None],
        emit_telemetry: Callable[[dict[str, Any]], None],
        clock: Callable[[], datetime] | None = None,
        client: OctoPrintClient | None = None,
    ) -> None:
        self.options = options
        self._session_provider = session_provider
        self._emit_event = emit_event
        self._emit_telemetry = emit_telemetry
        self._clock = clock or (lambda: datetime.now(UTC))
        self._client = client or OctoPrintClient(
            options.url, options.resolve_api_key(), timeout_s=options.request_timeout_s
        )
        self._state = WatchState()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_telemetry: datetime | None = None
        self._last_sent: tuple[bool, str] | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="octoprint-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def holds_power(self) -> bool:
        with self._lock:
            return self._state.job is not None

    @property
    def online(self) -> bool | None:
        with self._lock:
            return self._state.online

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("octoprint poll failed; trying again next interval")
            self._stop.wait(self.options.poll_interval_s)

    def poll_once(self) -> None:
        poll = self._client.poll()
        session = self._session_provider()
        now = self._clock()
        with self._lock:
            prev = self._state
            state, actions = step(
                prev,
                poll,
                session,
                now,
                policy=self.options.no_session_policy,
                new_job_id=lambda: str(uuid.uuid4()),
            )
            self._state = state
        for action in actions:
            if isinstance(action, Emit):
                self._emit_event(action.type, action.data)
            else:
                self._enforce(action)
        self._maybe_telemetry(poll, state.job, now)

    def _enforce(self, action: Enforce) -> None:
        log.warning("print started with no badge session on %s: %s", self.options.url, action)
        try:
            if action.action == "pause":
                self._client.pause()
            else:
                self._client.cancel()
        except (requests.RequestException, RuntimeError) as exc:
            # Reported already; the next poll sees it still printing and tries again.
            log.error("could not %s the print: %s", action.action, _short(exc))
            with self._lock:
                job = self._state.job
                if job is not None:
                    self._state = replace(self._state, job=replace(job, enforced=None))

    def _maybe_telemetry(self, poll: Poll, job: Job | None, now: datetime) -> None:
        # Bounded rate, except a change of state or reachability, sent at once (at most one
        # sample per poll either way).
        key = (poll.online, poll.state)
        due = (
            self._last_telemetry is None
            or key != self._last_sent
            or (now - self._last_telemetry).total_seconds() >= self.options.telemetry_min_interval_s
        )
        if not due:
            return
        self._last_telemetry = now
        self._last_sent = key
        self._emit_telemetry(telemetry_values(poll, job))
