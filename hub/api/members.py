"""Members: who they are, what category they pay in, who pays for them; their data rights.

Thin routes over hub/services/members.py: the rules, the audit rows and the refusals
(HubErrors) live there."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Query, Request

from hub.api.changes import actor, republish
from hub.api.deps import ADMIN, MANAGE, STAFF, Allow, CurrentUser, PathId, SessionDep
from hub.category_history import history as category_history
from hub.core.db import forget_erased
from hub.core.errors import Forbidden
from hub.models import (
    CategoryChangePublic,
    Member,
    MemberCategory,
    MemberCategoryChange,
    MemberCreate,
    MemberPublic,
    MemberStatus,
    MemberUpdate,
    User,
)
from hub.services import members as members_service
from hub.services.members import members_by_id

__all__ = ["members_by_id", "router"]

router = APIRouter(prefix="/api/v1/members", tags=["members"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No member with this id"}}


def _own_or(user: User, member_id: int, *roles: frozenset[Any]) -> None:
    if user.member_id == member_id:
        return
    if not any(user.role in r for r in roles):
        raise Forbidden("member.own_data_only", field="member")


@router.get("", response_model=list[MemberPublic], dependencies=[Allow(STAFF)])
def list_members(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=100, description="part of a name or email")] = None,
    category: MemberCategory | None = None,
    status: MemberStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[Member]:
    return members_service.list_members(
        session, q=q, category=category, status=status, limit=limit, offset=offset
    )


@router.post("", response_model=MemberPublic, status_code=201, dependencies=[Allow(MANAGE)])
def create_member(body: MemberCreate, session: SessionDep, user: CurrentUser) -> Member:
    member = members_service.create_member(session, data=body, actor=actor(user))
    session.commit()
    session.refresh(member)
    return member


@router.get("/{member_id}", response_model=MemberPublic, responses=NOT_FOUND)
def read_member(member_id: PathId, session: SessionDep, user: CurrentUser) -> Member:
    _own_or(user, member_id, STAFF)
    return members_service.member_by_id(session, member_id=member_id, field="member")


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
    members_service.member_by_id(session, member_id=member_id, field="member")
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
    undone = members_service.undo_category_change(session, member_id=member_id, actor=actor(user))
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
    member, status_changed = members_service.update_member(
        session,
        member_id=member_id,
        data=body,
        actor=actor(user),
        tz=ZoneInfo(request.app.state.settings.timezone),
    )
    session.commit()
    session.refresh(member)
    if status_changed:  # suspension or return reaches every machine
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
    members_service.delete_member(session, member_id=member_id, actor=actor(user))
    session.commit()


@router.get("/{member_id}/export", responses=NOT_FOUND)
def export(member_id: PathId, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """Everything held about a member (their right of access), as JSON."""
    _own_or(user, member_id, MANAGE)
    data = members_service.export_member_data(session, member_id=member_id, actor=actor(user))
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
    counts = members_service.erase_member_data(session, member_id=member_id, actor=actor(user))
    session.commit()
    forget_erased(request.app.state.engine)
    republish(request, background)
    return counts
