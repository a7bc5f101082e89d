"""The access decision: may this badge start this machine now? Pure: plain values in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocol.lite import AllowEntry, AllowList, BookedSlot
from protocol.vocab import DenyReason

# Who a booking does not hold: a trainer starts the supervision of the booker, a maintainer
# may always work on the machine.
NOT_HELD_BY_BOOKINGS = frozenset({"trainer", "maintainer"})


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: DenyReason | None = None
    entry: AllowEntry | None = None
    maintenance: bool = False  # a maintainer's override of a lockout, logged as maintenance
    # Bookings (docs/bookings.md): a walk-in is granted until someone else's booking starts;
    # the booker's own slot ends at slot_end (a session past it is an overrun); a denial
    # `booked` says when the machine is free.
    until: datetime | None = None
    slot_end: datetime | None = None
    free_at: datetime | None = None

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
    until = slot_end = None
    if allowlist.bookings and not maintenance:
        held, until, slot_end = booking_hold(allowlist.slots(), entry, now)
        if held is not None:
            return Decision(False, DenyReason.BOOKED, entry, free_at=held)
    if entry.supervised_only and not supervisor_present:
        return Decision(False, DenyReason.SUPERVISION_REQUIRED, entry)
    if machine_running:
        # Anti-restart: closing the relay on a machine that is already drawing power could
        # start a job nobody is watching.
        return Decision(False, DenyReason.MACHINE_ALREADY_RUNNING, entry)
    return Decision(True, None, entry, maintenance=maintenance, until=until, slot_end=slot_end)


def booking_hold(
    slots: tuple[BookedSlot, ...], entry: AllowEntry, now: datetime
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """What the bookings (sorted by start) say of this badge now: (free_at, until, slot_end).

    free_at: someone else's booking (or a block) holds the machine, free from then on (the
    end of the run of back-to-back slots); the badge is refused. until: the start of the next
    booking that is not this member's (a walk-in may work until then). slot_end: the end of
    this member's own run of slots that holds the machine now."""
    mine = entry.member
    free_at: datetime | None = None
    slot_end: datetime | None = None
    until: datetime | None = None
    not_held = entry.level in NOT_HELD_BY_BOOKINGS
    for slot in slots:
        if slot.ends_at <= now:
            continue
        if free_at is not None:  # the run of slots holding the machine goes on?
            if slot.starts_at > free_at:
                break
            free_at = max(free_at, slot.ends_at)
            continue
        if slot.member is not None and slot.member == mine:
            if slot.starts_at <= (slot_end or now):
                slot_end = max(slot_end or slot.ends_at, slot.ends_at)
            continue
        if not_held:
            continue
        if slot.starts_at <= now:
            free_at = slot.ends_at
            continue
        until = slot.starts_at
        break
    if free_at is not None:
        return free_at, None, None
    return None, until, slot_end
