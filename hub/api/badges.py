"""Badges: a member may hold several; enrolment and revocation are kept as history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from pydantic import field_validator
from sqlmodel import SQLModel, col, select

from hub.api.changes import audit, invalid, member_field, republish
from hub.api.deps import MANAGE, Allow, CurrentUser, Id, PathId, QueryId, SessionDep
from hub.models import Badge
from protocol.badges import normalise_uid

router = APIRouter(prefix="/api/v1/badges", tags=["badges"], dependencies=[Allow(MANAGE)])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No badge with this id"}}


class BadgeCreate(SQLModel):
    uid: str
    member_id: Id

    @field_validator("uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return normalise_uid(value)


class BadgePublic(SQLModel):
    id: int
    uid: str
    member_id: int
    enrolled_at: datetime
    revoked_at: datetime | None


@router.get("", response_model=list[BadgePublic])
def badges(
    session: SessionDep,
    member_id: QueryId = None,
    uid: Annotated[str | None, Query(max_length=40)] = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[Badge]:
    query = select(Badge)
    if member_id is not None:
        query = query.where(Badge.member_id == member_id)
    if uid:
        try:
            query = query.where(Badge.uid == normalise_uid(uid))
        except ValueError as exc:
            raise invalid("uid", str(exc), where="query") from None
    if active is True:
        query = query.where(col(Badge.revoked_at).is_(None))
    elif active is False:
        query = query.where(col(Badge.revoked_at).is_not(None))
    return list(session.exec(query.order_by(col(Badge.id)).offset(offset).limit(limit)).all())


@router.post(
    "",
    response_model=BadgePublic,
    status_code=201,
    responses={409: {"description": "The card is already enrolled"}},
)
def enrol(
    body: BadgeCreate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> Badge:
    member = member_field(session, body.member_id)
    held = session.exec(
        select(Badge).where(Badge.uid == body.uid, col(Badge.revoked_at).is_(None))
    ).first()
    if held is not None:
        raise HTTPException(
            status_code=409,
            detail=f"card {body.uid} is already enrolled (badge {held.id}); revoke it first",
        )
    badge = Badge(uid=body.uid, member_id=body.member_id)
    session.add(badge)
    session.flush()
    audit(session, user, "badge.enrol", "badge", body.uid, member=member.ref)
    session.commit()
    session.refresh(badge)
    republish(request, background)
    return badge


@router.post("/{badge_id}/revoke", response_model=BadgePublic, responses=NOT_FOUND)
def revoke(
    badge_id: PathId,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> Badge:
    """The card stops opening machines within seconds; the badge stays in the history."""
    badge = session.get(Badge, badge_id)
    if badge is None:
        raise HTTPException(status_code=404, detail=f"no badge with id {badge_id}")
    if badge.revoked_at is None:
        badge.revoked_at = datetime.now(UTC)
        session.add(badge)
        audit(session, user, "badge.revoke", "badge", badge.uid)
        session.commit()
        session.refresh(badge)
        republish(request, background)
    return badge
