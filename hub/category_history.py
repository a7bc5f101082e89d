"""A member's category over time: every change recorded here, from a lab-local day on.

Billing prices each session with the category in force on its local start day
(`hub.domain.billing.CategoryTimeline`); statistics keep using the current category. The
members API, the web member form (through the API's function) and the CSV import all change
a category through `change_category`, which refuses a day inside or before a closed billing
month: a closed month's statements are frozen, so its categories are too. Refusals are
HubErrors naming `category_from`: InvalidValue for a day that cannot be, Conflict for one the
lab's closed books refuse. A change and a
month's close take turns on the books' lock (`hub.billing_store.lock_books`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.billing_store import BillingMonth, lock_books, parse_month
from hub.core.errors import Conflict, InvalidValue
from hub.models import Member, MemberCategory, MemberCategoryChange

FIELD = "category_from"


def lab_today(tz: ZoneInfo, now: datetime | None = None) -> date:
    return (now or datetime.now(tz)).astimezone(tz).date()


def first_open_day(session: Session) -> date | None:
    """The first day after the latest closed billing month (None when none is closed)."""
    latest = session.exec(select(sa.func.max(BillingMonth.month))).one()
    return None if latest is None else parse_month(latest)[1]


def _closed_month_holding(session: Session, day: date) -> tuple[str, date] | None:
    """The latest closed billing month and the first open day, when `day` is in or before
    that month (its statements, so its categories, are frozen); None when `day` is open."""
    open_from = first_open_day(session)
    if open_from is None or day >= open_from:
        return None
    return (open_from - timedelta(days=1)).strftime("%Y-%m"), open_from


def change_category(
    session: Session,
    member: Member,
    category: MemberCategory | str,
    *,
    actor: str,
    tz: ZoneInfo,
    effective_from: date | None = None,
    now: datetime | None = None,
) -> MemberCategoryChange | None:
    """Set the member's category and record the change, effective from `effective_from`
    (today in the lab's zone when None). Returns the change, or None when the category is the
    same (nothing to record). The caller commits.

    Refused: a day after today (a change is recorded when it happens), a day before the
    member's latest change (the history is a chain, each change replacing the one before it),
    and a day inside or before a closed billing month.
    """
    new = MemberCategory(category)
    if new == member.category:
        if effective_from is not None:
            raise InvalidValue("category.unchanged", field=FIELD, params={"category": new.value})
        return None
    today = lab_today(tz, now)
    day = effective_from or today
    if day > today:
        raise InvalidValue(
            "category.after_today",
            field=FIELD,
            params={"day": day.isoformat(), "today": today.isoformat()},
        )
    lock_books(session)  # a month being closed now is closed before we look
    if (closing := _closed_month_holding(session, day)) is not None:
        closed, open_from = closing
        raise Conflict(
            "category.closed_month",
            field=FIELD,
            params={"day": day.isoformat(), "month": closed, "open_from": open_from.isoformat()},
        )
    if member.id is not None:
        latest = session.exec(
            select(sa.func.max(MemberCategoryChange.effective_from)).where(
                MemberCategoryChange.member_id == member.id
            )
        ).one()
        if latest is not None and day < latest:
            raise InvalidValue(
                "category.before_latest",
                field=FIELD,
                params={"day": day.isoformat(), "latest": latest.isoformat()},
            )
    else:
        session.add(member)
        session.flush()
    assert member.id is not None
    change = MemberCategoryChange(
        member_id=member.id,
        category=new.value,
        previous_category=member.category.value,
        effective_from=day,
        actor=actor[:100],
    )
    member.category = new
    session.add(member)
    session.add(change)
    return change


def undo_latest_change(session: Session, member: Member) -> MemberCategoryChange:
    """Take back the member's latest category change (one recorded by mistake): the member is
    in its previous category again, as if it had never been recorded. Refused when there is
    none, or when its day is in or before a closed billing month (that month was billed with
    it: credit it instead). Returns the deleted change; the caller audits and commits."""
    lock_books(session)  # as a change: never while a month is being closed
    assert member.id is not None
    latest = session.exec(
        select(MemberCategoryChange)
        .where(MemberCategoryChange.member_id == member.id)
        .order_by(
            col(MemberCategoryChange.effective_from).desc(), col(MemberCategoryChange.id).desc()
        )
    ).first()
    if latest is None:
        raise Conflict("category.never_changed", field=FIELD)
    if (closing := _closed_month_holding(session, latest.effective_from)) is not None:
        closed, _ = closing
        raise Conflict(
            "category.undo_closed_month",
            field=FIELD,
            params={"day": latest.effective_from.isoformat(), "month": closed},
        )
    member.category = MemberCategory(latest.previous_category)
    session.add(member)
    session.delete(latest)
    return latest


def history(session: Session, member_id: int) -> list[MemberCategoryChange]:
    """A member's changes, oldest first."""
    return list(
        session.exec(
            select(MemberCategoryChange)
            .where(MemberCategoryChange.member_id == member_id)
            .order_by(col(MemberCategoryChange.effective_from), col(MemberCategoryChange.id))
        ).all()
    )
