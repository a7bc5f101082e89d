"""The hub's commands as the agent takes them: signed by the hub for this machine, recent,
and applied once.

QoS 1 may deliver a command twice and an attacker may replay a captured one: the ids of the
commands applied are kept in memory and in the journal, so a restart does not forget them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge.journal import Journal
from protocol.keys import HubKey
from protocol.lite import MAX_AGE, Command, verify_command
from protocol.vocab import ProtocolError

log = logging.getLogger(__name__)

MAINTENANCE_WINDOW_S = 600
ENROL_WINDOW_S = 60
ENROL_WINDOW_MAX_S = 300.0


class CommandGate:
    def __init__(self, public_key: HubKey, machine: str) -> None:
        self._public_key = public_key
        self._machine = machine
        self._seen: deque[uuid.UUID] = deque(maxlen=1000)

    def admit(self, payload: bytes, journal: Journal, now: datetime) -> Command | None:
        """The command to apply, or None (said in the log) for one to refuse."""
        try:
            cmd = verify_command(payload, self._public_key, machine=self._machine, now=now)
        except ProtocolError as exc:
            log.warning("command refused (%s): %s", exc.reason, exc.detail)
            return None
        if cmd.id in self._seen or journal.command_applied(str(cmd.id)):
            log.warning("command %s refused: already applied (a replay)", cmd.id)
            return None
        self._seen.append(cmd.id)
        # Written before the command acts: a crash in between cannot let it be applied twice.
        if not journal.remember_command(str(cmd.id), cmd.ts, forget_before=now - 2 * MAX_AGE):
            log.warning("command %s: disk full, remembered for this run only", cmd.id)
        return cmd


class Windows:
    """The two windows a hub command opens, on the monotonic clock: maintenance (a trainer's
    badge may open the locked machine, once) and enrolment (the next card read goes to the
    hub, undecided). Read and changed under the agent's state lock."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._maintenance_until = 0.0
        # (request id, deadline): the hub asked for the next card read, to enrol it.
        self._enrolment: tuple[str, float] | None = None

    def open_maintenance(self, args: dict[str, Any]) -> float:
        window = float(args.get("window_s", MAINTENANCE_WINDOW_S))
        self._maintenance_until = self._monotonic() + window
        return window

    @property
    def maintenance(self) -> bool:
        return self._monotonic() < self._maintenance_until

    def close_maintenance(self) -> None:
        self._maintenance_until = 0.0

    def open_enrolment(self, args: dict[str, Any]) -> float:
        window = min(ENROL_WINDOW_MAX_S, float(args.get("window_s", ENROL_WINDOW_S)))
        self._enrolment = (str(args.get("request_id", "")), self._monotonic() + window)
        return window

    @property
    def enrolling(self) -> bool:
        if self._enrolment is not None and self._monotonic() >= self._enrolment[1]:
            self._enrolment = None
        return self._enrolment is not None

    def take_enrolment(self) -> str:
        """The enrolment's request id; the window closes (one card per request)."""
        assert self._enrolment is not None
        request_id = self._enrolment[0]
        self._enrolment = None
        return request_id
