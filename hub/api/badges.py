"""Badges: a member may hold several; enrolment and revocation are kept as history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Query, Request
from pydantic import field_validator
from sqlmodel import SQLModel, col, select

from hub.api.changes import audit, invalid, member_field, republish
from hub.api.deps import MANAGE, Allow, CurrentUser, Id, PathId, QueryId, SessionDep
from hub.models import Badge, Event, Machine
from protocol.badges import normalise_uid
from protocol.envelope import EventType

router = APIRouter(prefix="/api/v1/badges", tags=["badges"], dependencies=[Allow(MANAGE)])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No badge with this id"}}


class BadgeCreate(SQLModel):
    uid: str
    member_id: Id

    @field_validator("uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return normalise_uid(value)


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


ENROL_WINDOW = timedelta(seconds=60)


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
    machine = session.exec(select(Machine).where(Machine.code == body.machine)).first()
    if machine is None:
        raise invalid("machine", f"no machine {body.machine!r}")
    publisher = getattr(request.app.state, "publisher", None)
    if not machine.online or publisher is None:
        raise HTTPException(
            status_code=409,
            detail=f"{machine.code} is offline: choose a machine whose reader is connected",
        )
    request_id = uuid.uuid4().hex
    window = ENROL_WINDOW.total_seconds()
    publisher.send_command(
        machine.site, machine.code, "enrol", {"request_id": request_id, "window_s": window}
    )
    audit(session, user, "badge.read_request", "machine", machine.code, request_id=request_id)
    session.commit()
    return ReadRequestPublic(
        request_id=request_id, machine=machine.code, expires_at=datetime.now(UTC) + ENROL_WINDOW
    )


@router.get("/read-requests/{request_id}", response_model=CardRead)
def card_read(
    request_id: Annotated[str, Path(max_length=64)],
    machine: Annotated[str, Query(max_length=63)],
    session: SessionDep,
) -> CardRead:
    """The card read for this request, once the member has shown it (`badge` null until then)."""
    since = datetime.now(UTC) - ENROL_WINDOW * 3
    events = session.exec(
        select(Event)
        .where(Event.machine == machine, Event.type == EventType.BADGE_READ.value)
        .where(col(Event.ts) >= since)
        .order_by(col(Event.ts).desc())
    ).all()
    data = next((e.data for e in events if e.data.get("request_id") == request_id), {})
    return CardRead(
        request_id=request_id,
        machine=machine,
        badge=data.get("badge"),
        card=data.get("card"),
        card_refusal=data.get("card_refusal"),
    )
