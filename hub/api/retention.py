"""Retention: how long telemetry, events and dead letters are kept; purge on demand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlmodel import SQLModel

from hub.api.changes import actor
from hub.api.deps import ADMIN, MANAGE, Allow, CurrentUser, SessionDep
from hub.services import retention

router = APIRouter(prefix="/api/v1/retention", tags=["retention"])


class RetentionPolicy(SQLModel):
    """Days each kind is kept; null keeps it for good (not allowed for telemetry). `sessions`
    is when billed sessions lose their member's reference for a pseudonym."""

    telemetry: float | None = None
    events: float | None = None
    dead_letters: float | None = None
    badge_events: float | None = None
    sessions: float | None = None


@router.get("", response_model=RetentionPolicy, dependencies=[Allow(MANAGE)])
def read_policy(request: Request, session: SessionDep) -> dict[str, float | None]:
    return retention.policy(session, request.app.state.settings)


@router.patch("", response_model=RetentionPolicy, dependencies=[Allow(ADMIN)])
def change_policy(
    body: RetentionPolicy, request: Request, session: SessionDep, user: CurrentUser
) -> dict[str, float | None]:
    """Only the kinds given change; the next hourly purge applies them."""
    return retention.change_policy(
        session,
        settings=request.app.state.settings,
        changes=body.model_dump(exclude_unset=True),
        actor=actor(user),
    )


@router.post("/apply", dependencies=[Allow(ADMIN)])
def apply_now(request: Request, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """Purge now what is past retention (the hub also does it every hour)."""
    return retention.apply_now(
        session,
        request.app.state.engine,
        request.app.state.settings,
        now=datetime.now(UTC),
        actor=actor(user),
    )
