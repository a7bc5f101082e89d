"""The bookings calendar: a day or a week per machine or per room, booking a slot, cancelling
one's own; staff block slots. It calls hub/services/bookings/, as the API does, and
re-publishes the machine's allow-list after a change, so the machine holds the slot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, select

from hub.core.deps import EVERYONE, STAFF, SessionDep
from hub.core.errors import HubError, InvalidValue
from hub.models import Booking, Machine, User
from hub.services import bookings as service
from hub.services.bookings import Actor
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.render import Page, may, render
from hub.web.republish import republish

router = APIRouter(prefix="/web", include_in_schema=False)

# The service's fields -> the ids of the booking form's inputs.
INPUTS = {
    "machine": "b-machine",
    "member": "b-machine",
    "member_id": "b-machine",
    "block": "b-block",
    "starts_at": "b-start",
    "ends_at": "b-end",
    "note": "b-note",
}


@dataclass(frozen=True)
class Shown:
    """One slot on the calendar."""

    booking: Booking
    label: str  # "mine", "booked" or "block"
    may_cancel: bool


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.timezone)


def _day(text: str | None, tz: ZoneInfo) -> date:
    try:
        return date.fromisoformat(text) if text else datetime.now(tz).date()
    except ValueError:
        return datetime.now(tz).date()


def _page(
    request: Request,
    session: Session,
    user: User,
    *,
    machine: str | None,
    room: str | None,
    day: date,
    view: str,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    tz = _tz(request)
    machines = list(session.exec(select(Machine).order_by(Machine.code)))
    rooms = sorted({m.location for m in machines if m.location})
    shown_machines = [
        m
        for m in machines
        if (machine is None or m.code == machine) and (room is None or m.location == room)
    ]
    length = 7 if view == "week" else 1
    first = day - timedelta(days=day.weekday()) if view == "week" else day
    days = [first + timedelta(days=n) for n in range(length)]
    since = datetime.combine(first, time(0), tz).astimezone(UTC)
    until = datetime.combine(first + timedelta(days=length), time(0), tz).astimezone(UTC)
    staff = may(user, STAFF)
    grid: dict[tuple[str, date], list[Shown]] = {}
    for m in shown_machines:
        assert m.id is not None
        for row in service.live_slots(session, machine_id=m.id, since=since, until=until):
            mine = row.member_id is not None and row.member_id == user.member_id
            label = "block" if row.kind == "block" else ("mine" if mine else "booked")
            local_day = row.starts_at.astimezone(tz).date()
            grid.setdefault((m.code, max(local_day, first)), []).append(
                Shown(row, label, row.status == "booked" and (mine or staff))
            )
    return render(
        request,
        "bookings.html",
        {
            "machines": machines,
            "rooms": rooms,
            "shown": shown_machines,
            "days": days,
            "grid": grid,
            "machine": machine,
            "room": room,
            "day": day,
            "view": view,
            "previous": (first - timedelta(days=length)).isoformat(),
            "next": (first + timedelta(days=length)).isoformat(),
            "errors": errors or {},
            "problem": problem,
            "notice": notice,
            "form": form or {},
        },
        user=user,
        status_code=status_code,
    )


@router.get("/bookings", response_class=HTMLResponse)
def bookings_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(EVERYONE)],
    machine: str | None = None,
    room: str | None = None,
    day: str | None = None,
    view: str = "day",
    booked: str | None = None,
) -> Response:
    return _page(
        request,
        session,
        user,
        machine=machine or None,
        room=room or None,
        day=_day(day, _tz(request)),
        view="week" if view == "week" else "day",
        form={"machine": machine or ""},
        notice="Booked: the machine holds the slot for you." if booked else None,
    )


def _moment(day: str, clock: str, tz: ZoneInfo, field: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), tz)
    except ValueError:
        raise InvalidValue("booking.time_invalid", field=field) from None


@router.post("/bookings", response_class=HTMLResponse, dependencies=[Checked])
def book(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(EVERYONE)],
    machine: Annotated[str, Form(max_length=100)] = "",
    day: Annotated[str, Form(max_length=20)] = "",
    start: Annotated[str, Form(max_length=10)] = "",
    end: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=200)] = "",
    block: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    tz = _tz(request)
    form = {"machine": machine, "day": day, "start": start, "end": end, "note": note}
    try:
        row = service.book(
            session,
            machine=machine,
            starts_at=_moment(day, start, tz, "starts_at"),
            ends_at=_moment(day, end, tz, "ends_at"),
            actor=Actor(
                name=f"user:{user.username}", member_id=user.member_id, staff=may(user, STAFF)
            ),
            block=bool(block),
            note=note,
            now=datetime.now(UTC),
            tz=tz,
        )
    except HubError as exc:
        session.rollback()
        errors, problem = field_errors(request, exc, INPUTS)
        return _page(
            request,
            session,
            user,
            machine=machine or None,
            room=None,
            day=_day(day, tz),
            view="day",
            errors=errors,
            problem=problem,
            form=form,
            status_code=exc.status,
        )
    republish(request, background, [machine])
    local = row.starts_at.astimezone(tz).date().isoformat()
    return RedirectResponse(
        f"/web/bookings?machine={machine}&day={local}&booked={row.id}", status_code=303
    )


@router.post("/bookings/{booking_id}/cancel", response_class=HTMLResponse, dependencies=[Checked])
def cancel(
    request: Request,
    booking_id: int,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(EVERYONE)],
) -> Response:
    tz = _tz(request)
    try:
        row = service.cancel(
            session,
            booking_id=booking_id,
            actor=Actor(
                name=f"user:{user.username}", member_id=user.member_id, staff=may(user, STAFF)
            ),
            now=datetime.now(UTC),
            tz=tz,
        )
    except HubError as exc:
        session.rollback()
        _, problem = field_errors(request, exc, {})
        return _page(
            request,
            session,
            user,
            machine=None,
            room=None,
            day=datetime.now(tz).date(),
            view="day",
            problem=problem,
            status_code=exc.status,
        )
    machine = session.get(Machine, row.machine_id)
    code = machine.code if machine is not None else ""
    republish(request, background, [code])
    local = row.starts_at.astimezone(tz).date().isoformat()
    return RedirectResponse(f"/web/bookings?machine={code}&day={local}", status_code=303)
