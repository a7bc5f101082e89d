"""The agent: the session state machine, guarded by one lock, fed by every input in order.

A card read is decided in the thread that read it: the reader's thread takes the state lock,
asks the pure domain (access decision, session state machine) and switches the relay at
once, so a tap never waits for another thread to wake up. Everything else (paho, gpiozero,
integrations, timers) goes through a queue to one event-loop thread, which applies it under
the same lock. The events the state machine emits are stamped and put in order on an outbox
while the lock is held; the loop thread then writes them to the journal and hands them to
the broker, outside the lock, so neither a disk write nor the network delays a decision.
Those parts live beside it: inputs.py, sources.py, forwarder.py, actuators.py, acl_cache.py.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge import __version__
from edge.acl_cache import AllowListCache, Refusal
from edge.actuators import Actuators
from edge.clock import SteadyClock
from edge.commands import CommandGate, Windows
from edge.config import AgentConfig
from edge.domain.access import Decision, decide
from edge.domain.interlocks import gate
from edge.domain.session import (
    Action,
    Emit,
    SessionMachine,
    SessionRules,
)
from edge.forwarder import JOURNAL_KEEP_SENT, Forwarder
from edge.hardware.interlocks import SafetyBoard
from edge.hardware.outputs import Devices, build_devices
from edge.hardware.readers import BadgeRead, BadgeReader
from edge.inputs import (
    LINK,
    Acked,
    BusyChanged,
    Connected,
    Decided,
    Disconnected,
    EnergyRead,
    IncidentPressed,
    Input,
    IntegrationEvent,
    InterlockChanged,
    Message,
    Readings,
    Reply,
    StateAsked,
    Stop,
    Tick,
)
from edge.integrations.busy import AnyBusy
from edge.journal import Journal
from edge.sources import Integrations, broker_link, reader_for, wire_gpio
from edge.status import session_view, status_message, tap_answer
from edge.systemd import Notifier
from edge.transport import MqttTransport
from protocol.badges import normalise_uid
from protocol.limits import fit_json
from protocol.lite import AllowList, CommandName, status, telemetry
from protocol.signed import load_public_key
from protocol.topics import TopicKind, topic
from protocol.vocab import EventType

log = logging.getLogger(__name__)

TICK_S = 0.25


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        pin_factory: Any = None,
        clock: Callable[[], datetime] | None = None,
        reader: BadgeReader | None = None,
    ) -> None:
        self.config = config
        # Durations must not follow a wall clock that jumps (NTP at boot on a Pi without a
        # real-time clock, a fake-hwclock restore): while a session is open the agent's time
        # advances with the monotonic clock from the session's start.
        self._clock = SteadyClock(clock or (lambda: datetime.now(UTC)))
        self._pin_factory = pin_factory
        self._public_key = load_public_key(config.agent.hub_public_key)
        self._queue: queue.Queue[Input] = queue.Queue()
        # The session machine, the relay, the allow-list in use and the clock's hold change
        # only under this lock (reader threads decide; the loop applies everything else).
        self._state_lock = threading.RLock()
        # Events emitted under the lock, in order, with their time; journaled by the loop.
        self.forwarder = Forwarder(
            event_topic=self._topic(TopicKind.EVENT),
            telemetry_topic=self._topic(TopicKind.TELEMETRY),
        )
        self._acl_cache = AllowListCache(
            self.state_dir / "allowlist.json", self._public_key, config.agent.machine
        )
        self._status_due = False
        self._reader = reader
        self.devices: Devices | None = None
        self.safety: SafetyBoard | None = None  # [[interlock]] inputs, [[accessory]] relays
        self.actuators: Actuators | None = None
        self.journal: Journal | None = None
        self.transport: MqttTransport | None = None
        self.allowlist: AllowList | None = None
        self.machine = SessionMachine(
            SessionRules(
                idle_timeout_s=config.session.idle_timeout_s,
                warning_s=config.session.warning_s,
                card_present=config.session.card_present,
                cut_while_busy=config.session.cut_while_busy,
                spool=config.session.spool,
            ),
            new_session_id=lambda: str(uuid.uuid4()),
        )
        self._thread: threading.Thread | None = None
        self._started_mono = time.monotonic()
        self._last_heartbeat = 0.0
        self._last_alive_write = 0.0
        self._last_watchdog = 0.0
        self._last_prune = time.monotonic()
        self._windows = Windows()  # maintenance and enrolment, opened by hub commands
        self.integrations = Integrations(
            config,
            self._queue.put,
            session_provider=lambda: self.machine.session,
            clock=self._clock,
        )
        self._commands = CommandGate(self._public_key, config.agent.machine)
        # The last allow-list refused since one was accepted: (reason code, offered version).
        self._acl_refused: tuple[str, int | None] | None = None
        self._any_busy = AnyBusy()
        self._running = False
        self._stopped = threading.Event()
        self._systemd = Notifier()
        self._lock_from_list = False

    # -- paths and topics -----------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.config.agent.state_dir

    def _topic(self, kind: TopicKind) -> str:
        return topic(self.config.agent.site, self.config.agent.machine, kind)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # The relay is opened before anything else can fail.
        self.devices = build_devices(self.config, self._pin_factory)
        self.devices.open_relay()
        try:
            self.safety = SafetyBoard(
                self.config,
                self.devices.pin_factory,
                on_change=lambda name, ok: self._queue.put(InterlockChanged(name, ok)),
            )
            self.actuators = Actuators(
                self.config,
                self.devices,
                self.safety,
                self.machine,
                emit=self._emit,
                clock=self._clock,
                allowlist=lambda: self.allowlist,
            )
            self._start_rest()
        except BaseException:
            if self.safety is not None:
                self.safety.close()
            self.devices.close()
            raise

    def _start_rest(self) -> None:
        cfg = self.config
        self.journal = Journal(self.state_dir / "journal.sqlite3", cfg.agent.machine, self._clock)
        self.forwarder.journal = self.journal
        self._load_cached_allowlist()
        recovered = self._recover()
        self._emit(
            EventType.AGENT_STARTED, {"version": __version__, "recovered_sessions": recovered}
        )
        self._drain()
        self.transport = broker_link(
            cfg, self._queue.put, plug_topics=self.integrations.plug_topics()
        )
        self.forwarder.transport = self.transport
        assert self.devices is not None
        wire_gpio(self.devices, self._queue.put)
        if self._reader is None:
            self._reader = reader_for(cfg, tap=self.tap, state=self.state)
        self._reader.start(self._on_read)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="agent-loop", daemon=True)
        self._thread.start()
        self.transport.start()
        self.integrations.start()
        self._systemd.notify("READY=1")
        log.info(
            "agent %s started (reader %s, relay pin %s)",
            cfg.agent.machine,
            cfg.reader.type,
            cfg.relay.pin,
        )

    def _busy_changed(self, source: str, busy: bool, now: datetime) -> None:
        # The machine works while any source says so: the last one to stop makes it idle.
        self._apply(self.machine.busy_changed(self._any_busy.update(source, busy), now, source))
        self._publish_status()

    def stop(self) -> None:
        """Stop everything; the relay ends open whatever happened. Safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.integrations.stop()
        if self._running and self._thread is not None:
            self._queue.put(Stop())
            self._thread.join(timeout=10)
        self._running = False
        if self._reader is not None:
            try:
                self._reader.stop()
            except Exception:
                log.exception("reader did not stop cleanly")
        if self.safety is not None:
            self.safety.close()
        if self.devices is not None:
            self.devices.close()
        if self.transport is not None:
            offline = status(machine=self.config.agent.machine, state="offline").encode()
            self.transport.stop(final=(self._topic(TopicKind.STATUS), offline))
        if self.journal is not None:
            self.journal.close()
        self._systemd.notify("STOPPING=1")

    # -- public, thread-safe entry points ------------------------------------------------
    def tap(self, uid: str, *, present: bool = True, timeout: float = 10) -> dict[str, Any]:
        """A read as a reader reports it; the answer comes once its events are journaled."""
        reply: Reply = queue.Queue(maxsize=1)
        self._on_read(BadgeRead(uid=normalise_uid(uid), present=present), reply)
        return reply.get(timeout=timeout)

    def _on_read(self, read: BadgeRead, reply: Reply | None = None) -> None:
        """A card read, in the reader's own thread: decided and the relay switched here.

        Handing the read over to the loop thread was most of the tap-to-relay time (a thread
        wake-up, then the interpreter lock). Under the state lock the decision is a few dict
        lookups and a pin write; the journal and the broker follow on the loop thread."""
        answer: dict[str, Any] | None = None
        with self._state_lock:
            if self._stopped.is_set():
                return  # stopping: the relay stays open and nothing is decided
            now = self._clock()
            if read.present and self._windows.enrolling:
                answer = self._report_read(read.uid, read.card, read.refusal)
            else:
                actions = self.machine.badge(
                    read.uid,
                    now,
                    self._decider(read, now),
                    present=read.present,
                    spool=self.allowlist is not None and self.allowlist.is_spool(read.uid),
                )
                self._apply(actions)
                if any(
                    isinstance(a, Emit)
                    and a.type is EventType.SESSION_STARTED
                    and a.data.get("mode") == "maintenance"
                    for a in actions
                ):
                    self._windows.close_maintenance()  # the window opens the machine once
                if reply is not None:
                    answer = self._tap_reply(actions)
        self._queue.put(Decided(reply, answer))

    def state(self, timeout: float = 10) -> dict[str, Any]:
        reply: Reply = queue.Queue(maxsize=1)
        self._queue.put(StateAsked(reply))
        return reply.get(timeout=timeout)

    def set_busy(self, busy: bool) -> None:
        """For simulated machines and integrations that sense busy without a GPIO input."""
        self._queue.put(BusyChanged(busy))

    # -- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        last_tick = 0.0
        while True:
            item: Input
            try:
                item = self._queue.get(timeout=TICK_S)
            except queue.Empty:
                item = Tick()
            try:
                if isinstance(item, Stop):
                    self._on_stop()
                    return
                self._handle(item)
                mono = time.monotonic()
                if mono - last_tick >= TICK_S:
                    last_tick = mono
                    self._periodic(mono)
                with self._state_lock:
                    self._clock.hold(self.machine.session is not None)
            except Exception:
                log.exception("agent loop failed on %s; going on", type(item).__name__)
            try:
                self._drain()
                if isinstance(item, Decided) and item.reply is not None and item.answer:
                    item.reply.put(item.answer)  # a tap's answer, once its events are journaled
            except Exception:
                log.exception(
                    "agent loop failed journaling after %s; going on", type(item).__name__
                )

    def _handle(self, item: Input) -> None:
        """One queued input. Whatever touches the session machine does so under the state
        lock; journal, broker and file work stays outside it (see the module docstring)."""
        match item:
            case BusyChanged(busy=busy):
                with self._state_lock:
                    self._busy_changed("gpio", busy, self._clock())
            case IntegrationEvent(type=event_type, data=data):
                with self._state_lock:
                    self._integration_event(event_type, data, self._clock())
            case EnergyRead(total_kwh=total):
                with self._state_lock:
                    self.machine.energy_read(total)
            case IncidentPressed():
                with self._state_lock:
                    member = self.machine.session.member if self.machine.session else None
                    self._emit(EventType.INCIDENT_REPORTED, {"source": "button", "member": member})
            case InterlockChanged():
                with self._state_lock:
                    self._check_interlocks(self._clock())
                    self._publish_status()
            case StateAsked(reply=reply):
                reply.put(self._state_dict())
            case Readings(values=values):
                with self._state_lock:
                    now = self._clock()
                # A plug or printer may report what JSON or a database cannot hold (NaN, huge text).
                sample = telemetry(
                    machine=self.config.agent.machine, ts=now, values=fit_json(values)
                )
                self.forwarder.telemetry(sample.encode())
            case Message(topic=topic_name, payload=payload):
                self._on_message(topic_name, payload)
            case Acked(mid=mid):
                self.forwarder.acked(mid)
            case Connected():
                log.info(
                    "connected to the broker %s:%s", self.config.mqtt.host, self.config.mqtt.port
                )
                self._publish_status()
                self.forwarder.connected()
            case Disconnected():
                self.forwarder.disconnected()
            case Decided() | Tick() | Stop():
                pass  # a read decided in its thread, or time passing: the loop's own steps

    def _integration_event(
        self, event_type: EventType, data: dict[str, Any], now: datetime
    ) -> None:
        if event_type in (EventType.MACHINE_BUSY, EventType.MACHINE_IDLE):
            # Busy time is tracked in one place, the session machine, which also keeps the
            # power on while the machine works.
            busy = event_type is EventType.MACHINE_BUSY
            self._busy_changed(str(data.get("source")), busy, now)
        else:
            self._emit(event_type, data)

    def _periodic(self, mono: float) -> None:
        with self._state_lock:
            now = self._clock()
            self._apply(self.machine.tick(now))
            if self.safety is not None:
                self.safety.apply(now)  # accessories' run-on
                self._check_interlocks(now)  # grace periods running out
        if mono - self._last_heartbeat >= self.config.agent.heartbeat_s:
            self._publish_status()
        if mono - self._last_alive_write >= 5 and self.journal is not None:
            self._last_alive_write = mono
            self.journal.set_meta("last_alive", now.isoformat())
        if mono - self._last_prune >= 600 and self.journal is not None:
            # Sent events are kept a while for a hub that asks for them again, then dropped.
            self._last_prune = mono
            self.journal.prune(keep=JOURNAL_KEEP_SENT)
        if mono - self._last_watchdog >= 5:
            self._last_watchdog = mono
            self._systemd.notify("WATCHDOG=1")

    def _on_stop(self) -> None:
        with self._state_lock:
            if self.machine.session is not None:
                self._apply(self.machine.end_session(self._clock(), "shutdown"))
        self._drain()
        self._flush(timeout=2)

    def _flush(self, timeout: float) -> None:
        """Give unacknowledged events a moment to reach the broker before shutdown."""
        deadline = time.monotonic() + timeout
        while self.forwarder.inflight and time.monotonic() < deadline:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, LINK):
                self._handle(item)

    # -- decisions and actions ------------------------------------------------------------
    def _decider(self, read: BadgeRead, now: datetime) -> Callable[[bool, bool], Decision]:
        def decide_now(supervisor_present: bool, machine_running: bool) -> Decision:
            decision = decide(
                read.uid,
                self.allowlist,
                now,
                machine_running=machine_running,
                secret_ok=read.secret_ok,
                card_refusal=read.refusal,
                supervisor_present=supervisor_present,
                maintenance_window=self._windows.maintenance,
                machine_locked=self.machine.locked,
            )
            if self.safety is None:
                return decision
            return gate(decision, self.safety.interlocks, self.safety.ok())

        return decide_now

    def _apply(self, actions: list[Action]) -> None:
        assert self.actuators is not None
        try:
            if self.actuators.run(actions):
                self._publish_status()
        finally:
            # After the actions: a session's last event is still stamped on its own timeline.
            self._clock.hold(self.machine.session is not None)

    def _check_interlocks(self, now: datetime) -> None:
        if self.actuators is not None and self.actuators.check_interlocks(now, self._apply):
            self._publish_status()

    def _report_read(
        self, uid: str, card: str | None = None, refusal: str | None = None
    ) -> dict[str, Any]:
        """The card goes to the hub for enrolment; nothing is decided and the relay stays."""
        assert self.actuators is not None
        request_id = self._windows.take_enrolment()
        self.actuators.beep("end")
        data: dict[str, Any] = {"badge": uid, "request_id": request_id}
        if card is not None:  # a secure reader's enrolment: what it did to the card
            data["card"] = card
            if refusal is not None:
                data["card_refusal"] = refusal
        self._emit(EventType.BADGE_READ, data)
        return {"ok": True, "decision": "read", "reason": None, "badge": uid} | self._relay_state()

    def _tap_reply(self, actions: list[Action]) -> dict[str, Any]:
        return tap_answer(actions) | self._relay_state()

    def _relay_state(self) -> dict[str, Any]:
        assert self.devices is not None
        return {
            "relay": "closed" if self.machine.relay_closed else "open",
            "relay_pin": self.devices.relay_pin_state(),
        }

    def _state_dict(self) -> dict[str, Any]:
        with self._state_lock:
            state = self._machine_state()
            meter = self.machine.meter
            # kWh the plug counted since the agent started (None: no energy reading yet).
            state["energy_kwh"] = meter.total_kwh if meter.known else None
        assert self.journal is not None
        state["backlog"] = self.journal.backlog()  # a query: outside the lock
        state["journal_full"] = self.journal.full
        state["last_seq"] = self.journal.last_seq
        return state

    def _machine_state(self) -> dict[str, Any]:
        return {
            "ok": True,
            "machine": self.config.agent.machine,
            **self._relay_state(),
            "session": session_view(self.machine.session),
            "busy": self.machine.busy,
            "locked": self.machine.locked,
            "acl_version": self.allowlist.version if self.allowlist else None,
            "acl_refused": self._acl_refused[0] if self._acl_refused else None,
            "acl_offered": self._acl_refused[1] if self._acl_refused else None,
            "connected": bool(self.transport and self.transport.connected),
            "enrolling": self._windows.enrolling,
            "interlocks": self.safety.ok() if self.safety else {},
            "accessories": self.safety.accessories_on() if self.safety else {},
        }

    # -- events: journal first, then the broker (edge.forwarder) --------------------------
    def _emit(self, type: EventType, data: dict[str, Any]) -> None:
        """Called under the state lock: the event takes its place and its time now."""
        self.forwarder.emit(type, data, self._clock())

    def _drain(self) -> None:
        """Journal and publish the emitted events, then a status if one is due (after the
        events of the same change). The loop thread's work, or the starting thread's."""
        self.forwarder.drain()
        if self._status_due:
            self._status_due = False
            self._send_status()

    def _publish_status(self) -> None:
        """Ask for a status; the loop sends it after the events of the same change."""
        self._status_due = True

    def _send_status(self) -> None:
        self._last_heartbeat = time.monotonic()
        if self.transport is None or not self.transport.connected:
            return
        state = self._state_dict()
        status = status_message(
            self.config.agent.machine,
            state,
            ts=self._clock(),
            uptime_s=time.monotonic() - self._started_mono,
            reader_ok=bool(self._reader and self._reader.healthy),
        )
        self.transport.publish(self._topic(TopicKind.STATUS), status.encode(), qos=1, retain=True)

    # -- hub messages ---------------------------------------------------------------------
    def _on_message(self, topic_name: str, payload: bytes) -> None:
        if topic_name == self._topic(TopicKind.ACL):
            self._on_allowlist(payload)
        elif topic_name == self._topic(TopicKind.CMD):
            self._on_command(payload)
        else:
            self.integrations.feed(topic_name, payload)

    def _on_allowlist(self, payload: bytes) -> None:
        new = self._acl_cache.offer(payload, now=self._clock(), current=self.allowlist)
        if new is None:
            return  # the list in force, delivered again
        if isinstance(new, Refusal):
            self._refuse_allowlist(new)
            return
        self._acl_cache.save(payload)  # the file first, outside the lock (an fsync)
        with self._state_lock:
            self.allowlist = new
            self._acl_refused = None
            now = self._clock()
            if new.locked and not self.machine.locked:
                self._lock_from_list = True
                self._apply(self.machine.lock(now, new.lock_reason or "locked by the hub"))
            elif not new.locked and self.machine.locked and self._lock_from_list:
                self._lock_from_list = False
                self._apply(self.machine.unlock("unlocked by the hub"))
            self._publish_status()
        log.info("allow-list version %s accepted (%d badges)", new.version, len(new.entries))

    def _refuse_allowlist(self, refusal: Refusal) -> None:
        """One line in the log, and the reason in every status until a list is accepted:
        the hub shows and alerts on an agent that keeps an old list (a restored hub whose
        versions went back, a list signed by another key)."""
        log.warning(
            "allow-list refused (%s): %s; keeping version %s",
            refusal.reason,
            refusal.detail,
            self.allowlist.version if self.allowlist else "none",
        )
        with self._state_lock:
            self._acl_refused = (refusal.reason, refusal.offered)
        self._publish_status()

    def _on_command(self, payload: bytes) -> None:
        now = self._clock()
        assert self.journal is not None
        cmd = self._commands.admit(payload, self.journal, now)
        if cmd is None:
            return
        if cmd.cmd is CommandName.SYNC:
            self.forwarder.sync(cmd.args.get("from_seq"))
        else:
            with self._state_lock:
                self._apply_command(cmd.cmd, cmd.args, now)
        self._publish_status()

    def _apply_command(self, name: CommandName, args: dict[str, Any], now: datetime) -> None:
        reason = str(args.get("reason", "hub command"))
        if name is CommandName.LOCK:
            self._apply(self.machine.lock(now, reason))
        elif name is CommandName.UNLOCK:
            self._apply(self.machine.unlock(reason))
        elif name is CommandName.END_SESSION:
            self._apply(self.machine.end_session(now, "hub-command"))
        elif name is CommandName.UNLOCK_FOR_MAINTENANCE:
            window = self._windows.open_maintenance(args)
            log.info(
                "maintenance window open for %.0f s: a trainer's badge may open the machine", window
            )
        elif name is CommandName.ENROL:
            window = self._windows.open_enrolment(args)
            start_enrolment = getattr(self._reader, "start_enrolment", None)
            if start_enrolment is not None:
                start_enrolment(window)  # a secure reader writes the site's keys on the card
            log.info("enrolment: the next card read in %.0f s is sent to the hub", window)

    def _load_cached_allowlist(self) -> None:
        self.allowlist = self._acl_cache.load()
        if self.allowlist is not None and self.allowlist.locked:
            self._lock_from_list = True
            self.machine.locked = True

    def _recover(self) -> int:
        """Close a session the previous run left open (crash, power cut)."""
        assert self.journal is not None
        closed = self.journal.close_open_session()
        if closed is None:
            return 0
        self.forwarder.pump()
        log.warning(
            "session %s of %s was open at restart; closed with agent-restart",
            closed.session_id,
            closed.member,
        )
        return 1
