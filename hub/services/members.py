"""Members, as the API, the web and the CLI look them up (by id, by what a person types),
create, change, list, delete, export and erase them. Refusals are HubErrors; the caller
commits (and re-publishes the allow-lists when a status changed or data was erased)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from hub.audit import record
from hub.category_history import change_category, undo_latest_change
from hub.core.errors import Conflict, InvalidValue, NotFound
from hub.models import (
    Badge,
    BillingAccount,
    ImportRecord,
    MachineSession,
    Member,
    MemberCategory,
    MemberCategoryChange,
    MemberCreate,
    MemberStatus,
    MemberUpdate,
    Training,
    User,
)
from hub.services.billing.ledger import member_by_name
from hub.services.member_data import erase_member, export_member
from protocol.limits import INT32_MAX


def member_by_id(session: Session, *, member_id: int, field: str = "member_id") -> Member:
    """The member with this id, or NotFound naming `field`. Ids are 32-bit on PostgreSQL: a
    larger one names no member (never the driver's overflow)."""
    member = session.get(Member, member_id) if 1 <= member_id <= INT32_MAX else None
    if member is None:
        raise NotFound("member.unknown_id", field=field, params={"member": member_id})
    return member


def members_by_id(session: Session, ids: set[int]) -> dict[int, Member]:
    """These members, by id, in one query: a page never loads the whole member table."""
    wanted = sorted(i for i in ids if 1 <= i <= INT32_MAX)
    if not wanted:
        return {}
    return {m.id: m for m in session.exec(select(Member).where(col(Member.id).in_(wanted))) if m.id}


def member_by_text(session: Session, *, value: str, field: str) -> Member | None:
    """A member as a person types one: their number, email, pseudonymous ref or full name
    (when only one member bears it); None when empty. One that names nobody is a mistake in
    `field`."""
    value = value.strip()
    if not value:
        return None
    member: Member | None = None
    if value.isdigit():
        number = int(value)
        member = session.get(Member, number) if 1 <= number <= INT32_MAX else None
    else:
        member = session.exec(select(Member).where(Member.email == value.lower())).first()
        if member is None:
            member = session.exec(select(Member).where(Member.ref == value)).first()
        if member is None:
            member = member_by_name(session, name=value, field=field)
    if member is None:
        raise InvalidValue("member.unknown_text", field=field, params={"value": value})
    return member


PAYER_SUGGESTIONS = 500


def payer_suggestions(session: Session, *, but: Member | None = None) -> list[Member]:
    """Who a form suggests as a payer: members in category company (the companies and schools
    that pay for their people) and those paying for someone already, by name, `but` left out;
    any other member is found by email or number. Never the whole member table."""
    payers = select(Member.payer_id).where(col(Member.payer_id).is_not(None))
    rows = session.exec(
        select(Member)
        .where(or_(col(Member.category) == MemberCategory.COMPANY, col(Member.id).in_(payers)))
        .order_by(col(Member.name))
        .limit(PAYER_SUGGESTIONS)
    ).all()
    return [m for m in rows if but is None or m.id != but.id]


def payer_of(session: Session, member: Member) -> Member | None:
    """Who pays for this member (None: they pay for themselves)."""
    return session.get(Member, member.payer_id) if member.payer_id else None


def set_member_status(session: Session, *, email: str, status: MemberStatus, actor: str) -> Member:
    """Suspend (every machine refuses their badges) or reactivate a member. The caller commits
    and re-publishes the allow-lists."""
    member = session.exec(select(Member).where(Member.email == email.lower())).first()
    if member is None:
        raise NotFound("member.unknown_email", field="email", params={"email": email})
    before = member.status.value
    member.status = status
    session.add(member)
    record(
        session,
        actor=actor,
        action=f"member.{status.value}",
        entity="member",
        entity_id=member.ref,
        before=before,
    )
    return member


# --- the member records: create, change, list, delete ------------------------------------
def _filtered(
    query: Any, q: str | None, category: MemberCategory | None, status: MemberStatus | None
) -> Any:
    if q:
        pattern = f"%{q.lower()}%"
        query = query.where(
            or_(func.lower(Member.name).like(pattern), col(Member.email).like(pattern))
        )
    if category:
        query = query.where(Member.category == category)
    if status:
        query = query.where(Member.status == status)
    return query


def list_members(
    session: Session,
    *,
    q: str | None = None,
    category: MemberCategory | None = None,
    status: MemberStatus | None = None,
    limit: int = 100,
    offset: int = 0,
    by_name: bool = False,
) -> list[Member]:
    """Members by id (or by name, for people), filtered by part of a name or email, category
    and status: one page."""
    query = _filtered(select(Member), q, category, status)
    order = (func.lower(Member.name), col(Member.id)) if by_name else (col(Member.id),)
    return list(session.exec(query.order_by(*order).offset(offset).limit(limit)).all())


def count_members(
    session: Session,
    *,
    q: str | None = None,
    category: MemberCategory | None = None,
    status: MemberStatus | None = None,
) -> int:
    """How many members `list_members` would page through with the same filters."""
    query = _filtered(select(func.count()).select_from(Member), q, category, status)
    return int(session.exec(query).one())


def _check_unique_email(session: Session, email: str | None, member_id: int | None) -> None:
    if email is None:
        return
    other = session.exec(select(Member).where(Member.email == email)).first()
    if other is not None and other.id != member_id:
        raise Conflict("member.email_taken", field="email", params={"email": email})


def _check_payer(session: Session, payer_id: int | None, member_id: int | None) -> None:
    if payer_id is None:
        return
    if payer_id == member_id:
        raise InvalidValue("member.own_payer", field="payer_id")
    if session.get(Member, payer_id) is None:
        raise InvalidValue("member.unknown_id", field="payer_id", params={"member": payer_id})


def create_member(session: Session, *, data: MemberCreate, actor: str) -> Member:
    """A new member, audited. The caller commits."""
    _check_unique_email(session, data.email, None)
    _check_payer(session, data.payer_id, None)
    member = Member.model_validate(data)
    session.add(member)
    session.flush()
    record(
        session,
        actor=actor,
        action="member.create",
        entity="member",
        entity_id=member.ref,
        category=member.category.value,
    )
    return member


def update_member(
    session: Session, *, member_id: int, data: MemberUpdate, actor: str, tz: ZoneInfo
) -> tuple[Member, bool]:
    """Change the fields given in `data` (a category through hub/category_history.py, from
    `category_from` or today in the lab's zone `tz`), audited. Returns the member and whether
    their status changed (the caller then re-publishes every machine's list). The caller
    commits."""
    member = member_by_id(session, member_id=member_id, field="member")
    changes = data.model_dump(exclude_unset=True)
    if "email" in changes:
        _check_unique_email(session, changes["email"], member.id)
    if "payer_id" in changes:
        _check_payer(session, changes["payer_id"], member.id)
    for field in ("name", "category", "status"):
        if field in changes and changes[field] is None:
            raise InvalidValue("member.field_null", field=field, params={"field": field})
    category = changes.pop("category", None)
    category_from = changes.pop("category_from", None)
    if category_from is not None and category is None:
        raise InvalidValue("category.day_without_category", field="category_from")
    change = None
    if category is not None:
        change = change_category(
            session, member, category, actor=actor, tz=tz, effective_from=category_from
        )
    member.sqlmodel_update(changes)
    session.add(member)
    fields = sorted([*changes, *(["category"] if change is not None else [])])
    detail: dict[str, Any] = {"fields": fields}
    if change is not None:
        detail["category"] = change.category
        detail["category_from"] = change.effective_from.isoformat()
    record(
        session,
        actor=actor,
        action="member.update",
        entity="member",
        entity_id=member.ref,
        **detail,
    )
    return member, "status" in changes


def undo_category_change(session: Session, *, member_id: int, actor: str) -> MemberCategoryChange:
    """Take back the member's latest category change (hub/category_history.py), audited.
    Returns the change taken back. The caller commits."""
    member = member_by_id(session, member_id=member_id, field="member")
    undone = undo_latest_change(session, member)
    record(
        session,
        actor=actor,
        action="member.category_undo",
        entity="member",
        entity_id=member.ref,
        category=undone.category,
        category_from=undone.effective_from.isoformat(),
        back_to=undone.previous_category,
    )
    return undone


def delete_member(session: Session, *, member_id: int, actor: str) -> None:
    """Only a member entered by mistake, with no history, is deleted (audited); otherwise
    their status becomes `left`, or their personal data is erased. The caller commits."""
    member = member_by_id(session, member_id=member_id, field="member")
    used = (
        session.exec(select(Badge.id).where(Badge.member_id == member_id)).first()
        or session.exec(select(Training.id).where(Training.member_id == member_id)).first()
        or session.exec(
            select(MachineSession.id).where(MachineSession.member_ref == member.ref)
        ).first()
        or session.exec(select(Member.id).where(Member.payer_id == member_id)).first()
        or session.exec(select(User.id).where(User.member_id == member_id)).first()
    )
    if used is not None:
        raise Conflict("member.has_history", field="member", params={"member": member_id})
    record(session, actor=actor, action="member.delete", entity="member", entity_id=member.ref)
    for change in session.exec(
        select(MemberCategoryChange).where(MemberCategoryChange.member_id == member_id)
    ):
        session.delete(change)  # a member entered by mistake: their category fixes go too
    for imported in session.exec(select(ImportRecord).where(ImportRecord.member_id == member_id)):
        imported.member_id = None  # the line stays applied: a re-import does not bring them back
        session.add(imported)
    session.flush()
    session.delete(member)


def export_member_data(session: Session, *, member_id: int, actor: str) -> dict[str, Any]:
    """Everything held about a member (their right of access), audited. The caller commits."""
    member = member_by_id(session, member_id=member_id, field="member")
    data = export_member(session, member)
    record(session, actor=actor, action="member.export", entity="member", entity_id=member.ref)
    return data


def erase_member_data(session: Session, *, member_id: int, actor: str) -> dict[str, int]:
    """Remove the member's personal data wherever the hub copied it, keep the history under
    their reference (hub/services/member_data.py), audited. The caller commits, forgets the
    erased rows' caches and re-publishes every machine's list."""
    member = member_by_id(session, member_id=member_id, field="member")
    counts = erase_member(session, member)
    record(
        session,
        actor=actor,
        action="member.erase",
        entity="member",
        entity_id=member.ref,
        **counts,
    )
    return counts


# Why a member can use no machine yet, for their page: each a code the page words.
NO_MACHINE_REASONS = ("not_active", "no_badge", "no_training", "balance_empty")


def why_no_machine(session: Session, *, member: Member, now: datetime) -> list[str]:
    """Empty when the member may start at least one machine as far as the member alone
    goes (the allow-list's own conditions: active, a card, a valid training, a prepaid-only
    balance above zero); otherwise every reason that stops them, in NO_MACHINE_REASONS."""
    reasons: list[str] = []
    if member.status is not MemberStatus.ACTIVE:
        reasons.append("not_active")
    card = session.exec(
        select(Badge.id).where(Badge.member_id == member.id, col(Badge.revoked_at).is_(None))
    ).first()
    if card is None:
        reasons.append("no_badge")
    trained = session.exec(
        select(Training.id).where(
            Training.member_id == member.id,
            or_(col(Training.expires_at).is_(None), col(Training.expires_at) > now),
        )
    ).first()
    if trained is None:
        reasons.append("no_training")
    payer_id = member.payer_id or member.id
    account = session.get(BillingAccount, payer_id) if payer_id else None
    if account is not None and account.prepaid_only and account.balance_cents <= 0:
        reasons.append("balance_empty")
    return reasons
