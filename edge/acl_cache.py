"""The allow-list cache: the last list the hub signed and this agent took, kept for offline use.

The file holds the list exactly as signed, so a restart checks the signature again before
trusting it; its expiry is applied at each decision, not here. An offered list is taken only
if it is signed by the hub's key, newer than the one in force and for this machine.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from protocol.keys import HubKey
from protocol.lite import AllowList, ListRefused, verify_allowlist
from protocol.vocab import ProtocolError

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An offered list not taken: a stable reason code, words for the log, and the version it
    carried when its signature could be read (the hub shows it beside the one in force)."""

    reason: str
    detail: str
    offered: int | None


class AllowListCache:
    def __init__(self, path: Path, public_key: HubKey, machine: str) -> None:
        self.path = path
        self._public_key = public_key
        self._machine = machine

    def load(self) -> AllowList | None:
        """The list kept by the previous run, if its signature still holds."""
        if not self.path.exists():
            return None
        try:
            # Signature checked here; expiry is applied at each decision.
            return verify_allowlist(self.path.read_bytes(), self._public_key, now=_EPOCH)
        except ProtocolError as exc:
            log.warning("cached allow-list ignored (%s): %s", exc.reason, exc.detail)
            return None

    def offer(
        self, payload: bytes, *, now: datetime, current: AllowList | None
    ) -> AllowList | Refusal | None:
        """The list to take, the reason not to, or None for the list in force delivered again
        (it is retained: the broker sends it on each reconnect)."""
        version = current.version if current else None
        try:
            new = verify_allowlist(payload, self._public_key, now=now, current_version=version)
        except ProtocolError as exc:
            offered = exc.offered if isinstance(exc, ListRefused) else None
            if exc.reason == "stale" and offered == version:
                return None
            return Refusal(exc.reason, exc.detail, offered)
        if new.machine != self._machine:
            return Refusal(
                "wrong_machine",
                f"the list is for machine {new.machine}, this is {self._machine}",
                new.version,
            )
        return new

    def save(self, payload: bytes) -> None:
        """Written whole and synced before it replaces the old file: a power cut leaves one
        list or the other, never half of one."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(payload)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(self.path)
