"""The access decision: may this badge start this machine now? Pure: plain values in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocol.allowlist import AllowEntry, AllowList
from protocol.envelope import DenyReason


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: DenyReason | None = None
    entry: AllowEntry | None = None
    maintenance: bool = False  # a maintainer's override of a lockout, logged as maintenance

    @property
    def member(self) -> str | None:
        return self.entry.member if self.entry else None


def decide(
    badge: str,
    allowlist: AllowList | None,
    now: datetime,
    *,
    machine_running: bool = False,
    secret_ok: bool | None = None,
    card_refusal: str | None = None,
    supervisor_present: bool = False,
    maintenance_window: bool = False,
    machine_locked: bool = False,
) -> Decision:
    """Grant iff the badge is on a valid list, its holder's training is valid, the machine is
    not locked out (maintainers excepted), no hub-side block applies, and the machine is not
    already running. Everything else is a denial with its reason."""
    if secret_ok is False:
        # Secure mode said why: a clone, a blank card, another site's card...
        reason = DenyReason(card_refusal) if card_refusal else DenyReason.CARD_SECRET_MISMATCH
        return Decision(False, reason)
    if allowlist is None:
        return Decision(False, DenyReason.NO_ALLOW_LIST)
    if allowlist.expires_at <= now:
        return Decision(False, DenyReason.ALLOW_LIST_EXPIRED)
    entry = allowlist.by_badge().get(badge)
    if entry is None:
        return Decision(False, DenyReason.UNKNOWN_BADGE)
    if entry.block is not None:
        return Decision(False, entry.block, entry)
    if entry.training_expires_at is not None and entry.training_expires_at <= now:
        return Decision(False, DenyReason.TRAINING_EXPIRED, entry)
    maintenance = False
    if allowlist.locked or machine_locked:
        # Maintainers may always work on a locked machine; trainers only during a window the
        # hub opened (unlock-for-maintenance). Either way the session is maintenance time.
        trainer_allowed = maintenance_window and entry.level == "trainer"
        if entry.level != "maintainer" and not trainer_allowed:
            return Decision(False, DenyReason.LOCKED_OUT, entry)
        maintenance = True
    if entry.supervised_only and not supervisor_present:
        return Decision(False, DenyReason.SUPERVISION_REQUIRED, entry)
    if machine_running:
        # Anti-restart: closing the relay on a machine that is already drawing power could
        # start a job nobody is watching.
        return Decision(False, DenyReason.MACHINE_ALREADY_RUNNING, entry)
    return Decision(True, None, entry, maintenance=maintenance)
