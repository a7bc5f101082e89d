"""The one small interface every badge reader implements (mfrc522, keyboard wedge, sim)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge.errors import EdgeError, ReaderError

__all__ = ["BadgeRead", "BadgeReader", "EdgeError", "OnBadge", "ReaderError"]


@dataclass(frozen=True, slots=True)
class BadgeRead:
    """A card placed on (present=True) or taken off (present=False) the reader.

    `uid` is the card UID as uppercase hex without BCC (protocol.badges.normalise_uid).
    `secret_ok` is None when the reader does not check a card secret, else whether the
    per-card secret written at enrolment matched (secure mode); `refusal` then says why not
    (a protocol.envelope.DenyReason value). `card` is what an enrolment did to the card:
    "written", "already" (it was a secure card of this site) or "refused".
    """

    uid: str
    present: bool = True
    secret_ok: bool | None = None
    refusal: str | None = None
    card: str | None = None


OnBadge = Callable[[BadgeRead], None]


class BadgeReader(Protocol):
    """Readers run their own polling thread and only *report* reads through `on_badge`,
    which returns within a fraction of a millisecond: the agent decides in the calling thread,
    under its state lock, and switches the relay before returning (journal and broker follow
    on the agent's loop thread)."""

    kind: str

    def start(self, on_badge: OnBadge) -> None: ...

    def stop(self) -> None:
        """Stop polling; safe to call twice; returns within about a poll interval."""
        ...

    @property
    def healthy(self) -> bool:
        """False when the reader has stopped answering (reported in the heartbeat)."""
        ...
