"""Bookings: members book, move and cancel their own; staff book for anyone and block slots.

The rules are `hub.domain.bookings`'s; this package fetches what they take (the machine's
rules, its slots, the member's week, the maintenance due) and raises their refusal as a
HubError naming the field: `rules` (the rules per type or machine), `slots` (reading, and
what an allow-list carries), `booking` (book, move, cancel), `release` (the booking watch's
pass: bookings used or released as no-shows and priced, the bookings a lockout covers
cancelled and their owners told), `figures` (iCalendar feeds, statistics). This module is
the package's interface. After a change the caller re-publishes the machine's allow-list,
which carries its bookings.
"""

from __future__ import annotations

from hub.domain.bookings import late_cancellation
from hub.services.bookings.booking import Actor, book, cancel, move
from hub.services.bookings.figures import figures, machine_feed, member_feed
from hub.services.bookings.release import ReleaseResult, release_due
from hub.services.bookings.rules import (
    RULE_FIELDS,
    known_machine_type,
    rule_row,
    rules_for,
    rules_of,
    set_rules,
)
from hub.services.bookings.slots import (
    MAX_LIST_DAYS,
    MAX_LIST_ROWS,
    allowlist_slots,
    get_booking,
    list_bookings,
    live_slots,
    public,
)

__all__ = [
    "MAX_LIST_DAYS",
    "MAX_LIST_ROWS",
    "RULE_FIELDS",
    "Actor",
    "ReleaseResult",
    "allowlist_slots",
    "book",
    "cancel",
    "figures",
    "get_booking",
    "known_machine_type",
    "late_cancellation",
    "list_bookings",
    "live_slots",
    "machine_feed",
    "member_feed",
    "move",
    "public",
    "release_due",
    "rule_row",
    "rules_for",
    "rules_of",
    "set_rules",
]
