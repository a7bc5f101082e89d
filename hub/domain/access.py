"""Pure access blocks: what the hub writes into a badge's allow-list entry, and why.

The hub decides here what it knows and the machine cannot: whether the member is current,
trained on the machine's type at all, and able to pay (a prepaid-only balance, drawn down by
`hub.domain.billing`). The machine itself then checks the rest against its own clock:
expiry, supervision, lockout (`edge/domain/access.py`). The allow-list builder
(`hub/services/allowlists.py`) calls these functions for every entry it writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hub.domain.billing import PrepaidPlan, may_start
from protocol.envelope import DenyReason

# A higher level may do everything a lower one may; a badge's best training is listed.
LEVEL_RANK = {"user": 0, "trainer": 1, "maintainer": 2}


@dataclass(frozen=True)
class Holding:
    """One training a member holds on the machine's type (levels as `TrainingLevel` values)."""

    level: str
    expires_at: datetime | None = None
    supervised_only: bool = False


@dataclass(frozen=True)
class Account:
    """The balance a member's sessions draw from: their own, or their payer's."""

    balance_cents: int
    plan: PrepaidPlan


def aware(value: datetime) -> datetime:
    """A stored timestamp as UTC (SQLite gives them back without a zone)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def better(a: Holding, b: Holding) -> bool:
    """Of two trainings on one type, whether `a` is the one to list: the one valid longest
    (no expiry beats any date), then the higher level, then the unsupervised one (so the
    choice never depends on the order the database returns the rows in)."""
    far = datetime.max.replace(tzinfo=UTC)
    a_exp = aware(a.expires_at) if a.expires_at else far
    b_exp = aware(b.expires_at) if b.expires_at else far
    if a_exp != b_exp:
        return a_exp > b_exp
    if a.level != b.level:
        return LEVEL_RANK[a.level] > LEVEL_RANK[b.level]
    return b.supervised_only and not a.supervised_only


def best_holding(holdings: list[Holding]) -> Holding | None:
    """The training a badge is listed with (None: not trained on this type)."""
    best: Holding | None = None
    for holding in holdings:
        if best is None or better(holding, best):
            best = holding
    return best


def entry_block(
    *, member_active: bool, holding: Holding | None, account: Account | None
) -> DenyReason | None:
    """Why the machine must refuse this badge whatever its own clock says, or None.

    `account`: None when the member's sessions are billed afterwards (no account, or not
    prepaid-only), which `may_start` never refuses."""
    if not member_active:
        return DenyReason.MEMBER_INACTIVE
    if holding is None:
        return DenyReason.NOT_TRAINED
    if account is not None:
        return may_start(account.balance_cents, account.plan)
    return None


def counts_for_accessory(
    *, expires_at: datetime | None, supervised_only: bool, now: datetime
) -> bool:
    """Whether a training on another type is listed for the accessories that need their own
    (`edge/domain/interlocks.py`): valid now and not supervised-only."""
    return not supervised_only and (expires_at is None or aware(expires_at) > now)
