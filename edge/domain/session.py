"""The session state machine: who holds the machine, when power is cut. Pure, injected clock.

Inputs are method calls with the current time; outputs are lists of actions the agent carries
out in order (relay, beeps, events). No IO and no clock reads happen here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from edge.domain.access import Decision
from edge.domain.energy import EnergyMeter
from protocol.vocab import DenyReason, EventType, utc_iso

Mode = Literal["normal", "supervised", "maintenance"]
BeepKind = Literal["grant", "deny", "warning", "end"]


@dataclass(frozen=True, slots=True)
class SessionRules:
    idle_timeout_s: float = 900
    warning_s: float = 60
    card_present: bool = False
    cut_while_busy: bool = False
    spool: Literal["off", "optional", "required"] = "off"
    # A walk-in session is warned this long before the booking that follows it starts.
    booking_warning_s: float = 600


@dataclass(frozen=True, slots=True)
class ActiveSession:
    session_id: str
    member: str
    badge: str
    level: str
    started_at: datetime
    last_activity: datetime
    mode: Mode = "normal"
    supervisor: str | None = None
    warned: bool = False
    busy_s: float = 0.0
    # The agent's energy total when the session started (None: no plug reading yet; then the
    # first reading starts it).
    energy_start_kwh: float | None = None
    # The spool tapped after the badge (its tag), and whether the power waits for one.
    spool: str | None = None
    awaiting_spool: bool = False
    # Bookings (edge/domain/access.py Decision): the session gives way at `until` (someone
    # else's booking starts; warned before), the booker's slot ends at `slot_end`; a session
    # still running past either is an overrun, never cut for it.
    until: datetime | None = None
    slot_end: datetime | None = None
    until_warned: bool = False


@dataclass(frozen=True, slots=True)
class CloseRelay:
    pass


@dataclass(frozen=True, slots=True)
class OpenRelay:
    pass


@dataclass(frozen=True, slots=True)
class Beep:
    kind: BeepKind


@dataclass(frozen=True, slots=True)
class Emit:
    type: EventType
    data: dict[str, Any]


Action = CloseRelay | OpenRelay | Beep | Emit
# The access decision for a badge, given (supervisor_present, machine_running).
DecideFn = Callable[[bool, bool], Decision]


class SessionMachine:
    def __init__(self, rules: SessionRules, new_session_id: Callable[[], str]) -> None:
        self.rules = rules
        self._new_id = new_session_id
        self.session: ActiveSession | None = None
        self.busy_since: datetime | None = None
        # The session open when the machine became busy: a busy period is billed to whoever
        # started it, so a session opened while another's print runs on does not count it.
        self.busy_owner: str | None = None
        # A plug's energy counter (edge.domain.energy), read by `energy_read`; what the open
        # session, busy period and run-on started from (None: not metered).
        self.meter = EnergyMeter()
        self.busy_energy_start: float | None = None
        self.run_on_energy_start: float | None = None
        self.relay_closed = False
        # A session ended while the machine worked: power stays on until it goes idle.
        self.hold_until_idle = False
        self.locked = False

    @property
    def busy(self) -> bool:
        return self.busy_since is not None

    # -- badges ---------------------------------------------------------------------------
    def badge(
        self,
        badge: str,
        now: datetime,
        decide: DecideFn,
        *,
        present: bool = True,
        spool: bool = False,
    ) -> list[Action]:
        current = self.session
        if spool:
            # A spool's tag is never a badge: it cannot open, end or hand over a session.
            if not present:
                return []
            if current is None or self.rules.spool == "off" or current.mode == "maintenance":
                return self._deny(badge, DenyReason.SPOOL_TAG, None)
            return self._attach_spool(now, badge)
        if not present:
            if current and self.rules.card_present and badge == current.badge:
                return self._end(now, "card-removed")
            return []
        if current is not None and badge == current.badge:
            if current.warned:
                # Re-badge during the warning: the member is still there, extend.
                self.session = replace(current, last_activity=now, warned=False)
                return [Beep("grant")]
            return self._end(now, "badge-out")
        if current is not None:
            if current.level == "trainer" and current.mode == "normal":
                decision = decide(True, False)
                if decision.granted and decision.entry is not None:
                    # Supervised mode: the trainer badged first, the trainee takes over
                    # under the trainer's name; the relay stays closed throughout.
                    trainer = current.member
                    actions = self._end(now, "handover", keep_relay=True)
                    return actions + self._start(now, badge, decision, "supervised", trainer)
                return self._deny(badge, decision.reason or DenyReason.IN_USE, decision)
            return self._deny(badge, DenyReason.IN_USE, None)
        decision = decide(False, self.busy and not self.hold_until_idle)
        if not decision.granted:
            return self._deny(badge, decision.reason or DenyReason.NOT_TRAINED, decision)
        mode: Mode = "maintenance" if decision.maintenance else "normal"
        return self._start(now, badge, decision, mode, None)

    def _start(
        self, now: datetime, badge: str, decision: Decision, mode: Mode, supervisor: str | None
    ) -> list[Action]:
        assert decision.entry is not None
        session = ActiveSession(
            session_id=self._new_id(),
            member=decision.entry.member,
            badge=badge,
            level=decision.entry.level,
            started_at=now,
            last_activity=now,
            mode=mode,
            supervisor=supervisor,
            energy_start_kwh=self._energy_now(),
            until=decision.until,
            slot_end=decision.slot_end,
        )
        if self.rules.spool == "required" and mode != "maintenance" and not self.relay_closed:
            # The power waits for a spool: a print cannot start on material nobody declared.
            session = replace(session, awaiting_spool=True)
        self.session = session
        self.hold_until_idle = False
        actions: list[Action] = []
        if not self.relay_closed and not session.awaiting_spool:
            self.relay_closed = True
            actions.append(CloseRelay())
        actions += [
            Beep("grant"),
            Emit(
                EventType.BADGE_GRANTED,
                {
                    "badge": badge,
                    "member": session.member,
                    "session_id": session.session_id,
                    "level": session.level,
                },
            ),
            Emit(EventType.SESSION_STARTED, _started_data(session)),
        ]
        return actions

    def _attach_spool(self, now: datetime, tag: str) -> list[Action]:
        current = self.session
        assert current is not None
        self.session = replace(
            current, spool=tag, awaiting_spool=False, last_activity=now, warned=False
        )
        actions: list[Action] = []
        if current.awaiting_spool and not self.relay_closed:
            self.relay_closed = True
            actions.append(CloseRelay())
        actions += [
            Beep("grant"),
            Emit(
                EventType.SPOOL_ATTACHED,
                {"session_id": current.session_id, "member": current.member, "spool": tag},
            ),
        ]
        return actions

    def _deny(self, badge: str, reason: DenyReason, decision: Decision | None) -> list[Action]:
        member = decision.member if decision else None
        data: dict[str, Any] = {"badge": badge, "reason": reason.value, "member": member}
        if decision is not None and decision.free_at is not None:
            data["free_at"] = utc_iso(decision.free_at)
        return [Beep("deny"), Emit(EventType.BADGE_DENIED, data)]

    def _end(self, now: datetime, reason: str, *, keep_relay: bool = False) -> list[Action]:
        current = self.session
        if current is None:
            return []
        busy_s = current.busy_s
        if self.busy_since is not None and self._owns_busy(current):
            busy_s += max(0.0, (now - max(self.busy_since, current.started_at)).total_seconds())
        self.session = None
        ended: dict[str, Any] = {
            "session_id": current.session_id,
            "member": current.member,
            "reason": reason,
            "duration_s": max(0.0, (now - current.started_at).total_seconds()),
            "busy_s": busy_s,
        }
        energy = self._energy_since(current.energy_start_kwh)
        if energy is not None:
            ended["energy_kwh"] = energy
        if self.busy and self.busy_owner == current.session_id:
            # Its busy period runs on: what it uses from now is the run-on, the session's too.
            self.run_on_energy_start = self._energy_now()
        limit = min((t for t in (current.until, current.slot_end) if t is not None), default=None)
        if limit is not None and now > limit:
            ended["overrun"] = True  # additive: it outlived its slot (docs/bookings.md)
        actions: list[Action] = [Emit(EventType.SESSION_ENDED, ended)]
        if keep_relay:
            return actions
        actions.append(Beep("end"))
        if self.busy and not self.rules.cut_while_busy:
            self.hold_until_idle = True
        elif self.relay_closed:
            self.relay_closed = False
            actions.append(OpenRelay())
        return actions

    # -- time, machine, hub ------------------------------------------------------------------
    def tick(self, now: datetime) -> list[Action]:
        current = self.session
        if current is None:
            return []
        if current.until is not None:
            if now >= current.until and not self.busy:
                return self._end(now, "booking")
            lead = (current.until - now).total_seconds()
            if not current.until_warned and lead <= self.rules.booking_warning_s:
                self.session = replace(current, until_warned=True)
                return [
                    Beep("warning"),
                    Emit(
                        EventType.SESSION_WARNED,
                        {
                            "session_id": current.session_id,
                            "member": current.member,
                            "until": utc_iso(current.until),
                            "reason": "booking",
                        },
                    ),
                ]
        if self.busy:
            return []
        idle = (now - current.last_activity).total_seconds()
        if idle >= self.rules.idle_timeout_s:
            return self._end(now, "idle-timeout")
        if not current.warned and idle >= self.rules.idle_timeout_s - self.rules.warning_s:
            self.session = replace(current, warned=True)
            return [Beep("warning")]
        return []

    def busy_changed(self, busy: bool, now: datetime, source: str) -> list[Action]:
        if busy == self.busy:
            return []
        current = self.session
        sid = current.session_id if current else None
        if busy:
            self.busy_since = now
            self.busy_owner = sid
            self.busy_energy_start = self._energy_now()
            self.run_on_energy_start = None
            if current:
                self.session = replace(current, last_activity=now, warned=False)
            return [Emit(EventType.MACHINE_BUSY, {"source": source, "session_id": sid})]
        assert self.busy_since is not None
        period = max(0.0, (now - self.busy_since).total_seconds())
        owner = self.busy_owner
        if current is not None:
            counted = (now - max(self.busy_since, current.started_at)).total_seconds()
            if not self._owns_busy(current):
                counted = 0.0
            self.session = replace(
                current, last_activity=now, warned=False, busy_s=current.busy_s + max(0.0, counted)
            )
        self.busy_since = None
        self.busy_owner = None
        idle: dict[str, Any] = {"source": source, "busy_s": period, "session_id": owner}
        energy = self._energy_since(self.busy_energy_start)
        if energy is not None:
            idle["energy_kwh"] = energy
        run_on = self._energy_since(self.run_on_energy_start)
        if run_on is not None:
            idle["run_on_energy_kwh"] = run_on
        self.busy_energy_start = self.run_on_energy_start = None
        actions: list[Action] = [Emit(EventType.MACHINE_IDLE, idle)]
        if self.hold_until_idle and current is None:
            self.hold_until_idle = False
            if self.relay_closed:
                self.relay_closed = False
                actions.append(OpenRelay())
        return actions

    # -- energy ----------------------------------------------------------------------------
    def energy_read(self, reading_kwh: float) -> None:
        """A reading of the plug's energy counter (kWh). The first one starts the count of
        the session and busy period already open (they are metered from then on)."""
        self.meter = self.meter.read(reading_kwh)
        total = self.meter.total_kwh
        if self.session is not None and self.session.energy_start_kwh is None:
            self.session = replace(self.session, energy_start_kwh=total)
        if self.busy and self.busy_energy_start is None:
            self.busy_energy_start = total

    def _energy_now(self) -> float | None:
        return self.meter.total_kwh if self.meter.known else None

    def _energy_since(self, start: float | None) -> float | None:
        if start is None or not self.meter.known:
            return None
        return max(0.0, self.meter.total_kwh - start)

    def _owns_busy(self, session: ActiveSession) -> bool:
        """Whether the running busy period counts for `session`: it started under it, or under
        no session at all (a machine running when the member badged in), from their start."""
        return self.busy_owner is None or self.busy_owner == session.session_id

    def lock(self, now: datetime, reason: str) -> list[Action]:
        if self.locked:
            return []
        self.locked = True
        actions: list[Action] = [Emit(EventType.MACHINE_LOCKED, {"reason": reason})]
        if self.session is not None and self.session.mode != "maintenance":
            actions += self._end(now, "lockout")
        return actions

    def unlock(self, reason: str) -> list[Action]:
        if not self.locked:
            return []
        self.locked = False
        return [Emit(EventType.MACHINE_UNLOCKED, {"reason": reason})]

    def end_session(self, now: datetime, reason: str) -> list[Action]:
        return self._end(now, reason)


def _started_data(session: ActiveSession) -> dict[str, Any]:
    data: dict[str, Any] = {
        "session_id": session.session_id,
        "member": session.member,
        "badge": session.badge,
        "mode": session.mode,
        "supervisor": session.supervisor,
    }
    # Additive, only when a booking limits the session (docs/protocol.md).
    if session.until is not None:
        data["until"] = utc_iso(session.until)
    if session.slot_end is not None:
        data["slot_end"] = utc_iso(session.slot_end)
    return data
