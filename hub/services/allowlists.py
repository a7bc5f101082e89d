"""Each machine's allow-list: who may badge on it, built from the database for signing.

The access blocks are `hub.domain.access`'s rules; this module only fetches the values they
take. Publishing the lists (a broker connection and a schedule) is a worker: hub/allowlist.py
and hub/allowlist_watch.py, which the runtime starts.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import column, text
from sqlmodel import Session

from hub.domain.access import (
    Account,
    Holding,
    aware,
    best_holding,
    counts_for_accessory,
    entry_block,
)
from hub.domain.billing import PrepaidPlan
from hub.models import Machine, MachineType, MemberStatus, TrainingLevel, UTCDateTime
from hub.services.bookings import allowlist_slots
from hub.services.materials import spool_tags
from protocol.allowlist import AllowList
from protocol.envelope import utc_iso

log = logging.getLogger(__name__)


def allowlist_body(
    session: Session, machine: Machine, *, now: datetime, ttl: timedelta, bump_version: bool = True
) -> dict[str, Any]:
    """The list as JSON-ready values, exactly what `AllowList.model_dump(mode="json")` gives:
    every active badge of every current member, with the holder's training for the machine's
    type; members without a valid one are listed with a `block` so the machine can say why.

    One query of exactly the columns needed, and plain dictionaries rather than model objects:
    the list is rebuilt whenever something changes, for thousands of members.
    """
    mtype = session.get(MachineType, machine.machine_type_id)
    assert mtype is not None
    # Raw rows (SQLAlchemy stores enums by name): only the timestamp is converted by
    # SQLAlchemy, which is what keeps 5,000 members well under 50 ms on PostgreSQL too.
    rows = session.execute(
        text(
            "SELECT b.uid, m.ref, m.status, t.level, t.expires_at, t.supervised_only "
            "FROM badge b JOIN member m ON m.id = b.member_id "
            "LEFT JOIN training t ON t.member_id = m.id AND t.machine_type_id = :machine_type "
            "WHERE b.revoked_at IS NULL AND m.status != :left ORDER BY b.uid"
        ).columns(
            column("uid"),
            column("ref"),
            column("status"),
            column("level"),
            column("expires_at", UTCDateTime()),
            column("supervised_only"),
        ),
        {"machine_type": machine.machine_type_id, "left": MemberStatus.LEFT.name},
    ).all()
    # The accounts members' sessions draw from: their own, or their payer's when a company or
    # school pays for them, as the drawdown does. Only prepaid-only ones (a few at most, so a
    # second small query rather than a join over every badge): `may_start` refuses no other,
    # which tests/integration/test_allowlist_blocks.py checks against every account.
    accounts = {
        ref: Account(balance, PrepaidPlan(prepaid_only=True))
        for ref, balance in session.execute(
            text(
                "SELECT m.ref, a.balance_cents FROM member m "
                "JOIN billing_account a ON a.member_id = COALESCE(m.payer_id, m.id) "
                "WHERE a.prepaid_only"
            )
        ).all()
    }
    # Each member's valid trainings on the other machine types, for the accessories that need
    # their own (edge/domain/interlocks.py).
    trainings: dict[str, dict[str, str | None]] = {}
    for ref, code, expires, supervised in session.execute(
        text(
            "SELECT m.ref, mt.code, t.expires_at, t.supervised_only FROM training t "
            "JOIN member m ON m.id = t.member_id JOIN machine_type mt ON mt.id = t.machine_type_id "
            "WHERE t.machine_type_id != :machine_type AND m.status != :left ORDER BY m.ref, mt.code"
        ).columns(
            column("ref"),
            column("code"),
            column("expires_at", UTCDateTime()),
            column("supervised_only"),
        ),
        {"machine_type": machine.machine_type_id, "left": MemberStatus.LEFT.name},
    ).all():
        if counts_for_accessory(expires_at=expires, supervised_only=bool(supervised), now=now):
            trainings.setdefault(ref, {})[code] = utc_iso(aware(expires)) if expires else None
    levels = {level.name: level.value for level in TrainingLevel}
    badges: dict[str, tuple[str, str, list[Holding]]] = {}
    for uid, ref, status, level, expires, supervised in rows:
        holdings = badges.setdefault(uid, (ref, status, []))[2]
        if level is not None:
            holdings.append(Holding(levels[level], expires, bool(supervised)))
    active = MemberStatus.ACTIVE.name
    entries = []
    for uid, (ref, status, holdings) in badges.items():
        holding = best_holding(holdings)
        block = entry_block(
            member_active=status == active, holding=holding, account=accounts.get(ref)
        )
        entry: dict[str, Any] = {
            "badge": uid,
            "member": ref,
            "level": holding.level if holding else "user",
            "supervised_only": holding.supervised_only if holding else False,
            "training_expires_at": utc_iso(aware(holding.expires_at))
            if holding and holding.expires_at
            else None,
            "block": block.value if block else None,
        }
        held = trainings.get(ref)
        if held:  # the key only where there is something (as the model dumps it)
            entry["trainings"] = held
        entries.append(entry)
    if bump_version:
        floor = version_floor(now, reported=_reported_version(machine), machine=machine.code)
        # One atomic UPDATE: on PostgreSQL it holds the machine's row lock until commit, so
        # the hub and a CLI command publishing at once can never sign two lists with the
        # same version (SQLite serialises writers anyway). The stored counter keeps two lists
        # of the same millisecond apart; the floor keeps a restored counter from going back.
        machine.acl_version = session.execute(
            text(
                "UPDATE machine SET acl_version = CASE WHEN acl_version >= :floor "
                "THEN acl_version + 1 ELSE :floor END WHERE id = :id RETURNING acl_version"
            ),
            {"id": machine.id, "floor": floor},
        ).scalar_one()
    body: dict[str, Any] = {
        "v": 1,
        "site": machine.site,
        "machine": machine.code,
        "machine_type": mtype.code,
        "version": max(1, machine.acl_version),
        "issued_at": utc_iso(now),
        "expires_at": utc_iso(now + ttl),
        "locked": machine.locked,
        "lock_reason": machine.lock_reason,
        "entries": entries,
        **({"spools": tags} if (tags := spool_tags(session)) else {}),
    }
    # The machine's bookings for the list's validity, so the machine holds them offline too
    # (edge/domain/access.py); the key only when there are some, as the model dumps it.
    assert machine.id is not None
    slots = allowlist_slots(session, machine_id=machine.id, since=now, until=now + ttl)
    if slots:
        body["bookings"] = slots
    return body


# How far ahead of this hub's clock an agent's reported version may be and still count (a
# hub whose clock ran ahead, then was restored from a backup). Beyond it the number cannot be
# one this hub signed: a rogue agent account must not push its machine's versions to the top
# of the range, where the next list could not be numbered.
MAX_REPORTED_AHEAD = timedelta(days=30)


def version_floor(now: datetime, *, reported: int | None = None, machine: str = "") -> int:
    """The lowest version a list issued at `now` may carry: its issue time in milliseconds
    since the epoch, and above the version the machine's agent last reported holding.

    Versions therefore never go backwards across a database restored from a backup, nor
    for a machine deleted and created again under the same code: the clock has moved on
    since the agent's list was signed, and the agent's own report covers a clock that has
    not. Within one millisecond the stored counter (`acl_version + 1`) keeps them apart."""
    issued_ms = int(now.timestamp() * 1000)
    if reported is None:
        return issued_ms
    limit = int((now + MAX_REPORTED_AHEAD).timestamp() * 1000)
    if reported > limit:
        log.warning(
            "machine %s reports holding allow-list version %d, beyond any this hub signed "
            "(its clock is %s); ignored",
            machine,
            reported,
            utc_iso(now),
        )
        return issued_ms
    return max(issued_ms, reported + 1)


def _reported_version(machine: Machine) -> int | None:
    """The list version the agent said it holds in its last status (None when unknown)."""
    status = machine.last_status if isinstance(machine.last_status, dict) else {}
    reported = status.get("acl_version")
    return reported if isinstance(reported, int) and not isinstance(reported, bool) else None


def build_allowlist(
    session: Session, machine: Machine, *, now: datetime, ttl: timedelta, bump_version: bool = True
) -> AllowList:
    """The same list as a validated model (for callers that want objects)."""
    return AllowList.model_validate(
        allowlist_body(session, machine, now=now, ttl=ttl, bump_version=bump_version)
    )
