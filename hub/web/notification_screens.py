"""The notifications page: what each person receives, the lab's defaults, and for admins the
webhooks and the delivery log. The rules are the services' (hub/services/notification_*)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from hub.audit import record
from hub.core.deps import EVERYONE, MANAGE, SessionDep
from hub.models import Role, User
from hub.services import notification_preferences as prefs
from hub.services import notifications
from hub.web.csrf import Checked
from hub.web.i18n import N_
from hub.web.render import Page, render

router = APIRouter(prefix="/web", include_in_schema=False)

KIND_LABELS = {
    "print.finished": N_("A print of mine finished"),
    "print.failed": N_("A print of mine failed"),
    "print.cancelled": N_("A print of mine was cancelled"),
    "incident.opened": N_("An incident was reported on a machine"),
    "session.idle_ended": N_("My session was ended by the idle timeout"),
    "training.expiring": N_("A training of mine expires within 30 days"),
    "balance.low": N_("My prepaid balance is low"),
    "balance.empty": N_("My prepaid balance is empty"),
    "booking.cancelled": N_("A booking of mine is cancelled by a lockout"),
    "booking.reminder": N_("A booking of mine is about to start"),
    "booking.no_show": N_("A booking of mine was released as a no-show"),
    "machine.offline": N_("A machine is offline for long"),
    "maintenance.due": N_("A maintenance task is due"),
    "maintenance.overdue": N_("A maintenance task is overdue"),
    "machine.locked": N_("A machine is locked for long"),
    "allowlist.stale": N_("A machine holds an older allow-list"),
    "dead_letters.rising": N_("The hub refuses many messages"),
}
SOURCE_LABELS = {
    "own": N_("your choice"),
    "lab": N_("the lab's default"),
    "built-in": N_("built in"),
}
STATUS_LABELS = {
    "pending": N_("waiting"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "failed": N_("given up"),
}


def _page(request: Request, session: Session, user: User, notice: str | None = None) -> Response:
    manage = user.role in MANAGE
    admin = user.role is Role.ADMIN
    return render(
        request,
        "notifications.html",
        {
            "mine": prefs.preferences(session, user=user),
            "defaults": prefs.preferences(session, user=None) if manage else [],
            "manage": manage,
            "admin": admin,
            "webhooks": notifications.list_webhooks(session) if admin else [],
            "deliveries": notifications.delivery_log(session, limit=20) if admin else [],
            "kind_labels": KIND_LABELS,
            "source_labels": SOURCE_LABELS,
            "status_labels": STATUS_LABELS,
            "notice": notice,
        },
        user=user,
    )


@router.get("/notifications", response_class=HTMLResponse)
def notifications_page(
    request: Request, session: SessionDep, user: Annotated[User, Page(EVERYONE)]
) -> Response:
    return _page(request, session, user)


@router.post("/notifications", response_class=HTMLResponse, dependencies=[Checked])
def save_mine(
    session: SessionDep,
    user: Annotated[User, Page(EVERYONE)],
    wanted: Annotated[list[str], Form(max_length=20)] = [],  # noqa: B006  (FastAPI's form default)
) -> Response:
    """The boxes ticked are the kinds this person wants; the others they do not."""
    for kind in prefs.kinds_for(user.role):
        prefs.set_preference(session, user=user, kind=kind, channel="email", enabled=kind in wanted)
    session.commit()
    return RedirectResponse("/web/notifications", status_code=303)


@router.post("/notifications/defaults", response_class=HTMLResponse, dependencies=[Checked])
def save_defaults(
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    wanted: Annotated[list[str], Form(max_length=20)] = [],  # noqa: B006
) -> Response:
    for kind in prefs.KINDS:
        prefs.set_default(session, kind=kind, channel="email", enabled=kind in wanted)
    record(
        session,
        actor=f"user:{user.username}",
        action="notification.default",
        entity="notification_default",
        entity_id="email",
        enabled=sorted(k for k in prefs.KINDS if k in wanted),
    )
    session.commit()
    return RedirectResponse("/web/notifications", status_code=303)
