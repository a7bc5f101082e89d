"""Enrol a card by tapping it on a machine's reader, from a member's page.

The manager picks a machine whose reader is online; the hub asks its agent to report the next
card shown (POST /api/v1/badges/read-requests); the page polls until the card's UID arrives and
offers to enrol it. hub/services/badges.py serves the web and the API alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select

from hub.core.deps import MANAGE, QueryMoment, SessionDep, actor
from hub.core.errors import HubError
from hub.models import Machine, Member, User
from hub.services import badges as badges_service
from hub.services.members import member_by_id
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.render import Page, render

router = APIRouter(prefix="/web", include_in_schema=False)
FRAGMENT = "_tap_enrol.html"


def _online(session: SessionDep) -> list[Machine]:
    return list(
        session.exec(
            select(Machine).where(col(Machine.online).is_(True)).order_by(col(Machine.code))
        ).all()
    )


def _member(session: SessionDep, member_id: int) -> Member:
    """The member of the URL (a 404 otherwise, the app's HubError answer)."""
    return member_by_id(session, member_id=member_id)


@router.get("/members/{member_id}/tap", response_class=HTMLResponse)
def tap_form(
    request: Request, member_id: int, session: SessionDep, user: Annotated[User, Page(MANAGE)]
) -> Response:
    member = _member(session, member_id)
    return render(
        request,
        FRAGMENT,
        {"member": member, "machines": _online(session), "step": "choose"},
        user=user,
    )


@router.post("/members/{member_id}/tap", response_class=HTMLResponse, dependencies=[Checked])
def ask_for_a_card(
    request: Request,
    member_id: int,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    machine: Annotated[str, Form(max_length=63)],
) -> Response:
    member = _member(session, member_id)
    try:
        asked = badges_service.ask_for_a_card(
            session,
            machine=machine,
            publisher=getattr(request.app.state, "publisher", None),
            actor=actor(user),
        )
        session.commit()
    except HubError as exc:
        session.rollback()
        _, problem = field_errors(request, exc, {})
        return render(
            request,
            FRAGMENT,
            {
                "member": member,
                "machines": _online(session),
                "step": "choose",
                "problem": problem,
            },
            user=user,
        )
    return render(
        request,
        FRAGMENT,
        {
            "member": member,
            "step": "waiting",
            "machine": machine,
            "request_id": asked.request_id,
            "until": asked.expires_at.isoformat(),
        },
        user=user,
    )


@router.get("/members/{member_id}/tap/{request_id}", response_class=HTMLResponse)
def wait_for_the_card(
    request: Request,
    member_id: int,
    request_id: str,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    machine: Annotated[str, Query(max_length=63)],
    until: Annotated[QueryMoment, Query()],
) -> Response:
    member = _member(session, member_id)
    read = badges_service.card_read(session, request_id=request_id, machine=machine)
    context: dict[str, object] = {
        "member": member,
        "machine": machine,
        "request_id": request_id,
        "until": until.isoformat(),
    }
    if read.badge and read.card == "refused":
        problem = (
            "this card is another site's: use a blank card"
            if read.card_refusal == "card_other_site"
            else "this card was set up elsewhere and its keys cannot be written: use a blank card"
        )
        context.update(step="choose", machines=_online(session), problem=problem)
    elif read.badge:
        context.update(step="read", badge=read.badge, card=read.card)
    elif datetime.now(UTC) > until.astimezone(UTC) + timedelta(seconds=2):
        context.update(step="choose", machines=_online(session), problem="no card was shown")
    else:
        context.update(step="waiting")
    return render(request, FRAGMENT, context, user=user)
