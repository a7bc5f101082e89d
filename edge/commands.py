"""The hub's commands as the agent takes them: signed by the hub for this machine, recent,
and applied once.

QoS 1 may deliver a command twice and an attacker may replay a captured one: the ids of the
commands applied are kept in memory and in the journal, so a restart does not forget them.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from datetime import datetime

from edge.journal import Journal
from protocol.commands import MAX_AGE, verify_command
from protocol.envelope import ProtocolError
from protocol.keys import HubKey
from protocol.messages import Command

log = logging.getLogger(__name__)


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
