"""Enrol a card by tapping it on a machine's reader, from a member's page.

The manager picks a machine whose reader is online; the hub asks its agent to report the next
card shown (POST /api/v1/badges/read-requests); the page polls until the card's UID arrives and
offers to enrol it. The same API functions serve the web and scripts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select

from hub.api import badges as badges_api
from hub.api.changes import get_member
from hub.api.deps import MANAGE, MAX_ID, QueryMoment, SessionDep
from hub.models import Machine, Member, User
from hub.web.csrf import Checked
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
    """The member of the URL; an id beyond a database's (32-bit) ids is unknown, as any other."""
    if not 1 <= member_id <= MAX_ID:
        raise HTTPException(status_code=404, detail=f"no member with id {member_id}")
    return get_member(session, member_id)


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
        asked = badges_api.ask_for_a_card(
            badges_api.ReadRequest(machine=machine), session, user, request
        )
    except HTTPException as exc:
        return render(
            request,
            FRAGMENT,
            {
                "member": member,
                "machines": _online(session),
                "step": "choose",
                "problem": str(exc.detail),
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
    read = badges_api.card_read(request_id, machine, session)
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
