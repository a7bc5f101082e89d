"""Notifications for admins: webhooks (the secret shown once) and the delivery log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from sqlmodel import Field, SQLModel

from hub.api.changes import audit, invalid
from hub.api.deps import ADMIN, EVERYONE, MANAGE, Allow, CurrentUser, PathId, SessionDep
from hub.models import (
    NotificationPublic,
    PreferencePublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
)
from hub.notify.messages import KINDS
from hub.services import notification_preferences as prefs
from hub.services import notifications
from hub.services.notifications import NotificationError

router = APIRouter(prefix="/api/v1", tags=["notifications"], dependencies=[Allow(ADMIN)])
# Each person's own choices (every login), and the lab's defaults (managers and admins).
preferences_router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


class PreferenceChange(SQLModel):
    kind: str = Field(max_length=40)
    channel: str = Field(default="email", max_length=20)
    enabled: bool


@preferences_router.get(
    "/preferences", response_model=list[PreferencePublic], dependencies=[Allow(EVERYONE)]
)
def my_preferences(session: SessionDep, user: CurrentUser) -> Any:
    """What you receive, and whether it is your choice, the lab's or the built-in one."""
    return prefs.preferences(session, user=user)


@preferences_router.put(
    "/preferences", response_model=list[PreferencePublic], dependencies=[Allow(EVERYONE)]
)
def change_my_preference(body: PreferenceChange, session: SessionDep, user: CurrentUser) -> Any:
    try:
        prefs.set_preference(
            session, user=user, kind=body.kind, channel=body.channel, enabled=body.enabled
        )
    except NotificationError as exc:
        raise invalid(exc.field, str(exc)) from None
    session.commit()
    return prefs.preferences(session, user=user)


@preferences_router.get(
    "/defaults", response_model=list[PreferencePublic], dependencies=[Allow(MANAGE)]
)
def lab_defaults(session: SessionDep) -> Any:
    return prefs.preferences(session, user=None)


@preferences_router.put(
    "/defaults", response_model=list[PreferencePublic], dependencies=[Allow(MANAGE)]
)
def change_lab_default(body: PreferenceChange, session: SessionDep, user: CurrentUser) -> Any:
    """The lab's choice for everyone who has not made their own."""
    try:
        prefs.set_default(session, kind=body.kind, channel=body.channel, enabled=body.enabled)
    except NotificationError as exc:
        raise invalid(exc.field, str(exc)) from None
    audit(
        session,
        user,
        "notification.default",
        "notification_default",
        body.kind,
        channel=body.channel,
        enabled=body.enabled,
    )
    session.commit()
    return prefs.preferences(session, user=None)


class WebhookChange(SQLModel):
    enabled: bool


@router.get("/notifications/deliveries", response_model=list[NotificationPublic])
def deliveries(
    session: SessionDep,
    status: Literal["pending", "sending", "sent", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The newest messages first and what happened to each (no message body)."""
    return notifications.delivery_log(session, limit=limit, status=status)


@router.get("/webhooks", response_model=list[WebhookPublic])
def list_webhooks(session: SessionDep) -> Any:
    return notifications.list_webhooks(session)


@router.post("/webhooks", response_model=WebhookCreated, status_code=201)
def create_webhook(body: WebhookCreate, session: SessionDep, user: CurrentUser) -> Any:
    """The answer holds the signing secret: the only time it is shown."""
    try:
        hook, secret = notifications.create_webhook(
            session,
            name=body.name,
            url=body.url,
            kinds=body.kinds,
            personal_data=body.personal_data,
            known_kinds=frozenset(KINDS),
            now=datetime.now(UTC),
        )
    except NotificationError as exc:
        raise invalid(exc.field, str(exc)) from None
    audit(
        session,
        user,
        "webhook.create",
        "webhook",
        hook.id,
        name=hook.name,
        url=hook.url,
        personal_data=hook.personal_data,
    )
    session.commit()
    return WebhookCreated(**WebhookPublic.model_validate(hook).model_dump(), secret=secret)


@router.patch(
    "/webhooks/{webhook_id}",
    response_model=WebhookPublic,
    responses={404: {"description": "No webhook with this id"}},
)
def change_webhook(
    webhook_id: PathId, body: WebhookChange, session: SessionDep, user: CurrentUser
) -> Any:
    """Turn a webhook on again (its failure count starts afresh) or off."""
    try:
        hook = notifications.set_webhook_enabled(
            session, webhook_id=webhook_id, enabled=body.enabled
        )
    except NotificationError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    audit(
        session,
        user,
        "webhook.enable" if body.enabled else "webhook.disable",
        "webhook",
        webhook_id,
    )
    session.commit()
    session.refresh(hook)
    return hook
