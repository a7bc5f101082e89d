"""Retention: how long telemetry, events and dead letters are kept; purge on demand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlmodel import SQLModel

from hub.api.changes import audit, invalid
from hub.api.deps import ADMIN, MANAGE, Allow, CurrentUser, SessionDep
from hub.retention import KINDS, RetentionError, policy, purge, set_rule

router = APIRouter(prefix="/api/v1/retention", tags=["retention"])


class RetentionPolicy(SQLModel):
    """Days each kind is kept; null keeps it for good (not allowed for telemetry)."""

    telemetry: float | None = None
    events: float | None = None
    dead_letters: float | None = None


@router.get("", response_model=RetentionPolicy, dependencies=[Allow(MANAGE)])
def read_policy(request: Request, session: SessionDep) -> dict[str, float | None]:
    return policy(session, request.app.state.settings)


@router.patch("", response_model=RetentionPolicy, dependencies=[Allow(ADMIN)])
def change_policy(
    body: RetentionPolicy, request: Request, session: SessionDep, user: CurrentUser
) -> dict[str, float | None]:
    """Only the kinds given change; the next hourly purge applies them."""
    changes = body.model_dump(exclude_unset=True)
    for kind in KINDS:
        if kind in changes:
            try:
                set_rule(session, kind, changes[kind])
            except RetentionError as exc:
                raise invalid(kind, str(exc)) from None
    audit(session, user, "retention.change", "retention", "policy", **changes)
    session.commit()
    return policy(session, request.app.state.settings)


@router.post("/apply", dependencies=[Allow(ADMIN)])
def apply_now(request: Request, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """Purge now what is past retention (the hub also does it every hour)."""
    counts = purge(request.app.state.engine, request.app.state.settings, now=datetime.now(UTC))
    audit(session, user, "retention.apply", "retention", "policy", **counts)
    session.commit()
    return counts
