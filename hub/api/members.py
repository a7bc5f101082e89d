"""Members: who they are, what category they pay in, who pays for them; their data rights."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from pydantic import field_validator
from sqlalchemy import func, or_
from sqlmodel import Session, SQLModel, col, select

from hub.api.changes import actor, audit, get_member, invalid, republish
from hub.api.deps import ADMIN, MANAGE, MAX_ID, STAFF, Allow, CurrentUser, Id, PathId, SessionDep
from hub.category_history import CategoryChangeError, change_category, undo_latest_change
from hub.category_history import history as category_history
from hub.core.db import forget_erased
from hub.models import (
    Badge,
    MachineSession,
    Member,
    MemberBase,
    MemberCategory,
    MemberCategoryChange,
    MemberPublic,
    MemberStatus,
    Training,
    User,
)
from hub.services.member_data import erase_member, export_member

router = APIRouter(prefix="/api/v1/members", tags=["members"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No member with this id"}}


def _clean_email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
        raise ValueError("not an email address, e.g. camille@example.org")
    return value


class MemberCreate(MemberBase):
    payer_id: Id | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _clean_email(value)


class MemberUpdate(SQLModel):
    name: str | None = None
    email: str | None = None
    category: MemberCategory | None = None
    # The lab-local day a new category takes effect (billing prices each session with the
    # category of its start day); today when not given. Not inside a closed billing month.
    category_from: date | None = None
    status: MemberStatus | None = None
    payer_id: Id | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _clean_email(value)


def members_by_id(session: Session, ids: set[int]) -> dict[int, Member]:
    """These members, by id, in one query: a page never loads the whole member table."""
    wanted = sorted(i for i in ids if 1 <= i <= MAX_ID)
    if not wanted:
        return {}
    return {m.id: m for m in session.exec(select(Member).where(col(Member.id).in_(wanted))) if m.id}


def _own_or(user: User, member_id: int, *roles: frozenset[Any]) -> None:
    if user.member_id == member_id:
        return
    if not any(user.role in r for r in roles):
        raise HTTPException(status_code=403, detail="members may only see their own data")


def _check_unique_email(session: Session, email: str | None, member_id: int | None) -> None:
    if email is None:
        return
    other = session.exec(select(Member).where(Member.email == email)).first()
    if other is not None and other.id != member_id:
        raise HTTPException(status_code=409, detail=f"another member already has email {email}")


def _check_payer(session: Session, payer_id: int | None, member_id: int | None) -> None:
    if payer_id is None:
        return
    if payer_id == member_id:
        raise invalid("payer_id", "a member cannot be their own payer")
    if session.get(Member, payer_id) is None:
        raise invalid("payer_id", f"no member with id {payer_id}")


@router.get("", response_model=list[MemberPublic], dependencies=[Allow(STAFF)])
def list_members(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=100, description="part of a name or email")] = None,
    category: MemberCategory | None = None,
    status: MemberStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[Member]:
    query = select(Member)
    if q:
        pattern = f"%{q.lower()}%"
        query = query.where(
            or_(func.lower(Member.name).like(pattern), col(Member.email).like(pattern))
        )
    if category:
        query = query.where(Member.category == category)
    if status:
        query = query.where(Member.status == status)
    return list(session.exec(query.order_by(col(Member.id)).offset(offset).limit(limit)).all())


@router.post("", response_model=MemberPublic, status_code=201, dependencies=[Allow(MANAGE)])
def create_member(body: MemberCreate, session: SessionDep, user: CurrentUser) -> Member:
    _check_unique_email(session, body.email, None)
    _check_payer(session, body.payer_id, None)
    member = Member.model_validate(body)
    session.add(member)
    session.flush()
    audit(session, user, "member.create", "member", member.ref, category=member.category.value)
    session.commit()
    session.refresh(member)
    return member


@router.get("/{member_id}", response_model=MemberPublic, responses=NOT_FOUND)
def read_member(member_id: PathId, session: SessionDep, user: CurrentUser) -> Member:
    _own_or(user, member_id, STAFF)
    return get_member(session, member_id)


class CategoryChangePublic(SQLModel):
    category: MemberCategory
    previous_category: MemberCategory
    effective_from: date
    recorded_at: datetime
    actor: str


@router.get(
    "/{member_id}/categories",
    response_model=list[CategoryChangePublic],
    responses=NOT_FOUND,
)
def read_category_history(
    member_id: PathId, session: SessionDep, user: CurrentUser
) -> list[MemberCategoryChange]:
    """The member's category changes, oldest first: each is in force from its lab-local day
    until the next one (billing prices a session in the category of its start day). Empty
    when the category never changed."""
    _own_or(user, member_id, MANAGE)
    get_member(session, member_id)
    return category_history(session, member_id)


@router.delete(
    "/{member_id}/categories/latest",
    response_model=CategoryChangePublic,
    responses={
        **NOT_FOUND,
        409: {"description": "No change recorded, or its day is in a closed billing month"},
    },
    dependencies=[Allow(MANAGE)],
)
def undo_category_change(
    member_id: PathId, session: SessionDep, user: CurrentUser
) -> CategoryChangePublic:
    """Take back the member's latest category change (recorded by mistake): they are in
    their previous category again. Not once a closed billing month was priced with it."""
    member = get_member(session, member_id)
    try:
        undone = undo_latest_change(session, member)
    except CategoryChangeError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    audit(
        session,
        user,
        "member.category_undo",
        "member",
        member.ref,
        category=undone.category,
        category_from=undone.effective_from.isoformat(),
        back_to=undone.previous_category,
    )
    taken_back = CategoryChangePublic.model_validate(undone, from_attributes=True)
    session.commit()
    return taken_back


@router.patch(
    "/{member_id}",
    response_model=MemberPublic,
    responses={
        **NOT_FOUND,
        409: {"description": "category_from is inside or before a closed billing month"},
    },
    dependencies=[Allow(MANAGE)],
)
def update_member(
    member_id: PathId,
    body: MemberUpdate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> Member:
    member = get_member(session, member_id)
    changes = body.model_dump(exclude_unset=True)
    if "email" in changes:
        _check_unique_email(session, changes["email"], member.id)
    if "payer_id" in changes:
        _check_payer(session, changes["payer_id"], member.id)
    for field in ("name", "category", "status"):
        if field in changes and changes[field] is None:
            raise invalid(f"{field}", "may not be null")
    category = changes.pop("category", None)
    category_from = changes.pop("category_from", None)
    if category_from is not None and category is None:
        raise invalid("category_from", "give it with the new category")
    change = None
    if category is not None:
        try:
            change = change_category(
                session,
                member,
                category,
                actor=actor(user),
                tz=ZoneInfo(request.app.state.settings.timezone),
                effective_from=category_from,
            )
        except CategoryChangeError as exc:
            if exc.closed:
                raise HTTPException(status_code=409, detail=str(exc)) from None
            raise invalid("category_from", str(exc).removeprefix("category_from: ")) from None
    member.sqlmodel_update(changes)
    session.add(member)
    fields = sorted([*changes, *(["category"] if change is not None else [])])
    detail: dict[str, Any] = {"fields": fields}
    if change is not None:
        detail["category"] = change.category
        detail["category_from"] = change.effective_from.isoformat()
    audit(session, user, "member.update", "member", member.ref, **detail)
    session.commit()
    session.refresh(member)
    if "status" in changes:  # suspension or return reaches every machine
        republish(request, background)
    return member


@router.delete(
    "/{member_id}",
    status_code=204,
    dependencies=[Allow(ADMIN)],
    responses={**NOT_FOUND, 409: {"description": "The member has history"}},
)
def delete_member(member_id: PathId, session: SessionDep, user: CurrentUser) -> None:
    """Only a member entered by mistake, with no history, is deleted; otherwise set their
    status to `left`, or erase their personal data."""
    member = get_member(session, member_id)
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
        raise HTTPException(
            status_code=409,
            detail="this member has badges, trainings, sessions, payees or a login: set status "
            "to `left`, or erase their personal data (POST .../erase)",
        )
    audit(session, user, "member.delete", "member", member.ref)
    for change in session.exec(
        select(MemberCategoryChange).where(MemberCategoryChange.member_id == member_id)
    ):
        session.delete(change)  # a member entered by mistake: their category fixes go too
    session.flush()
    session.delete(member)
    session.commit()


@router.get("/{member_id}/export", responses=NOT_FOUND)
def export(member_id: PathId, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """Everything held about a member (their right of access), as JSON."""
    _own_or(user, member_id, MANAGE)
    member = get_member(session, member_id)
    data = export_member(session, member)
    audit(session, user, "member.export", "member", member.ref)
    session.commit()
    return data


@router.post("/{member_id}/erase", responses=NOT_FOUND, dependencies=[Allow(ADMIN)])
def erase(
    member_id: PathId,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> dict[str, int]:
    """Remove the name, email, card UIDs and login (wherever the hub copied them); keep the
    history under the member's reference."""
    member = get_member(session, member_id)
    counts = erase_member(session, member)
    audit(session, user, "member.erase", "member", member.ref, **counts)
    session.commit()
    forget_erased(request.app.state.engine)
    republish(request, background)
    return counts
