"""Badges over HTTP: the routes of hub/services/badges.py (enrol, revoke, enrol by a tap)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request
from sqlmodel import SQLModel

from hub.api.changes import actor, invalid, republish
from hub.api.deps import MANAGE, Allow, CurrentUser, PathId, QueryId, SessionDep
from hub.core.errors import InvalidValue, describe
from hub.models import Badge, BadgeCreate, BadgePublic
from hub.services import badges as service

router = APIRouter(prefix="/api/v1/badges", tags=["badges"], dependencies=[Allow(MANAGE)])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No badge with this id"}}


class ReadRequest(SQLModel):
    machine: str


class ReadRequestPublic(SQLModel):
    request_id: str
    machine: str
    expires_at: datetime


class CardRead(SQLModel):
    request_id: str
    machine: str
    badge: str | None = None  # null until the card is shown
    # A secure reader's enrolment: "written", "already" or "refused" (then card_refusal).
    card: str | None = None
    card_refusal: str | None = None


@router.get("", response_model=list[BadgePublic])
def badges(
    session: SessionDep,
    member_id: QueryId = None,
    uid: Annotated[str | None, Query(max_length=40)] = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[Badge]:
    try:
        return service.list_badges(
            session, member_id=member_id, uid=uid, active=active, limit=limit, offset=offset
        )
    except InvalidValue as exc:  # a query parameter, not the body
        raise invalid("uid", describe(exc), where="query") from None


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
    badge = service.enrol_badge(session, uid=body.uid, member_id=body.member_id, actor=actor(user))
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
    badge, revoked = service.revoke_badge(session, badge_id=badge_id, actor=actor(user))
    if revoked:
        session.commit()
        session.refresh(badge)
        republish(request, background)
    return badge


@router.post(
    "/read-requests",
    response_model=ReadRequestPublic,
    status_code=202,
    responses={409: {"description": "The machine is offline"}},
)
def ask_for_a_card(
    body: ReadRequest, session: SessionDep, user: CurrentUser, request: Request
) -> ReadRequestPublic:
    """Enrol by tapping: the machine's reader reports the next card shown to it (within a
    minute) instead of deciding; poll GET .../read-requests/{id} for its UID."""
    asked = service.ask_for_a_card(
        session,
        machine=body.machine,
        publisher=getattr(request.app.state, "publisher", None),
        actor=actor(user),
    )
    session.commit()
    return ReadRequestPublic(
        request_id=asked.request_id, machine=asked.machine, expires_at=asked.expires_at
    )


@router.get("/read-requests/{request_id}", response_model=CardRead)
def card_read(
    request_id: Annotated[str, Path(max_length=64)],
    machine: Annotated[str, Query(max_length=63)],
    session: SessionDep,
) -> CardRead:
    """The card read for this request, once the member has shown it (`badge` null until then)."""
    read = service.card_read(session, request_id=request_id, machine=machine)
    return CardRead(
        request_id=read.request_id,
        machine=read.machine,
        badge=read.badge,
        card=read.card,
        card_refusal=read.card_refusal,
    )
