"""Bookings over HTTP: the routes of hub/services/bookings/, the rules, and the calendar
feeds. Members book, move and cancel their own; staff book for anyone and block slots.
After a change the machine's allow-list is re-published, so the machine holds the slot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from sqlmodel import Session, SQLModel, select

from hub.api.deps import (
    MANAGE,
    Allow,
    CurrentUser,
    PathId,
    QueryId,
    QueryMoment,
    SessionDep,
    actor,
    is_staff,
    republish,
)
from hub.core.errors import Forbidden
from hub.models import Booking, BookingCreate, BookingPublic, BookingUpdate, Machine, User
from hub.services import bookings as service
from hub.services.bookings import RULE_FIELDS, Actor

# Every route names a machine, a member, a type or a booking that may not exist; booking and
# moving may meet a slot already held (409, naming the reason: booking.taken, ...).
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such machine, machine type, member or booking"},
    409: {"description": "The slot is held, or the booking can no longer change"},
}
router = APIRouter(prefix="/api/v1/bookings", tags=["bookings"], responses=REFUSALS)
rules_router = APIRouter(
    prefix="/api/v1/booking-rules", tags=["bookings"], responses={404: REFUSALS[404]}
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No booking with this id"}}
ICAL: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/calendar": {}}, "description": "RFC 5545 calendar"}
}


def _actor(user: User) -> Actor:
    return Actor(name=actor(user), member_id=user.member_id, staff=is_staff(user))


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.timezone)


def _shown(session: Session, row: Booking, user: User) -> BookingPublic:
    """A member sees who booked only their own bookings; staff see everyone's."""
    public = service.public(session, row)
    if is_staff(user) or (row.member_id is not None and row.member_id == user.member_id):
        return public
    return public.model_copy(
        update={
            "member_id": None,
            "member_ref": None,
            "note": "",
            "created_by": "",
            "fee_cents": None,
            "cancel_reason": None,
        }
    )


def _code(session: Session, row: Booking) -> list[str]:
    machine = session.get(Machine, row.machine_id)
    return [machine.code] if machine is not None else []


@router.get("", response_model=list[BookingPublic])
def list_bookings(
    session: SessionDep,
    user: CurrentUser,
    machine: str | None = None,
    member_id: QueryId = None,
    since: Annotated[QueryMoment | None, Query(alias="from")] = None,
    until: Annotated[QueryMoment | None, Query(alias="to")] = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIST_ROWS)] = 500,
) -> list[BookingPublic]:
    """Bookings overlapping [from, to), by machine, member and status, in start order.
    Everyone sees every machine's slots (to find a free one); who booked is shown to staff
    and to the booker only, and a member filters by member only on themselves."""
    if member_id is not None and member_id != user.member_id and not is_staff(user):
        raise Forbidden("booking.not_yours", field="member_id")
    rows = service.list_bookings(
        session,
        machine=machine,
        member_id=member_id,
        since=since,
        until=until,
        status=status,
        limit=limit,
    )
    return [_shown(session, row, user) for row in rows]


@router.post("", response_model=BookingPublic, status_code=201)
def create_booking(
    body: BookingCreate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> BookingPublic:
    """Book a machine for yourself; staff book for a member (`member_id`) or block it."""
    row = service.book(
        session,
        machine=body.machine,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        actor=_actor(user),
        member_id=body.member_id,
        block=body.block,
        note=body.note,
        now=datetime.now(UTC),
        tz=_tz(request),
    )
    republish(request, background, _code(session, row))
    return _shown(session, row, user)


@router.get("/{booking_id}", response_model=BookingPublic, responses=NOT_FOUND)
def read_booking(booking_id: PathId, session: SessionDep, user: CurrentUser) -> BookingPublic:
    return _shown(session, service.get_booking(session, booking_id), user)


@router.patch("/{booking_id}", response_model=BookingPublic, responses=NOT_FOUND)
def move_booking(
    booking_id: PathId,
    body: BookingUpdate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> BookingPublic:
    """Move a booking (its owner before it starts, or staff)."""
    row = service.move(
        session,
        booking_id=booking_id,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        note=body.note,
        actor=_actor(user),
        now=datetime.now(UTC),
        tz=_tz(request),
    )
    republish(request, background, _code(session, row))
    return _shown(session, row, user)


@router.delete("/{booking_id}", response_model=BookingPublic, responses=NOT_FOUND)
def cancel_booking(
    booking_id: PathId,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
    reason: Annotated[str, Query(max_length=200)] = "",
) -> BookingPublic:
    """Cancel a booking (its owner before it starts, or staff); a member's own cancellation
    within the rules' notice period is charged the no-show fee (`fee_cents`)."""
    row = service.cancel(
        session,
        booking_id=booking_id,
        actor=_actor(user),
        reason=reason,
        now=datetime.now(UTC),
        tz=_tz(request),
    )
    republish(request, background, _code(session, row))
    return _shown(session, row, user)


@router.get("/feeds/member/{member_id}.ics", response_class=Response, responses=ICAL)
def member_calendar(
    member_id: PathId, request: Request, session: SessionDep, user: CurrentUser
) -> Response:
    """A member's bookings as an iCalendar feed: their own, or anyone's for staff."""
    if member_id != user.member_id and not is_staff(user):
        raise Forbidden("booking.not_yours", field="member_id")
    body = service.member_feed(
        session, member_id=member_id, now=datetime.now(UTC), site=request.app.state.settings.site
    )
    return Response(body, media_type="text/calendar; charset=utf-8")


@router.get("/feeds/machine/{code}.ics", response_class=Response, responses=ICAL)
def machine_calendar(
    code: str, request: Request, session: SessionDep, user: CurrentUser
) -> Response:
    """A machine's bookings and blocks as an iCalendar feed, without names."""
    body = service.machine_feed(
        session, machine=code, now=datetime.now(UTC), site=request.app.state.settings.site
    )
    return Response(body, media_type="text/calendar; charset=utf-8")


class BookingRules(SQLModel):
    """Booking rules (hub/domain/bookings.py); a field left out keeps its value."""

    bookable: bool | None = None
    slot_minutes: int | None = None
    min_minutes: int | None = None
    max_minutes: int | None = None
    ahead_days: dict[str, int] | None = None
    week_hours: dict[str, float] | None = None
    opening: list[list[Any]] | None = None
    trained_only: bool | None = None
    grace_minutes: int | None = None
    no_show_fee: bool | None = None
    late_cancel_hours: int | None = None


class BookingRulesPublic(SQLModel):
    machine_type: str | None
    machine: str | None
    bookable: bool
    slot_minutes: int
    min_minutes: int
    max_minutes: int
    ahead_days: dict[str, int]
    week_hours: dict[str, float]
    opening: list[list[Any]]
    trained_only: bool
    grace_minutes: int
    no_show_fee: bool
    late_cancel_hours: int


def _rules_public(
    session: Session, machine_type: str | None, machine: str | None
) -> BookingRulesPublic:
    if machine is not None:
        target = session.exec(select(Machine).where(Machine.code == machine)).one()
        row = service.rule_row(session, target)
    else:
        from hub.models import BookingRuleRow, MachineType

        mtype = session.exec(select(MachineType).where(MachineType.code == machine_type)).one()
        row = session.exec(
            select(BookingRuleRow).where(BookingRuleRow.machine_type_id == mtype.id)
        ).first()
    rules = service.rules_of(row)
    return BookingRulesPublic(
        machine_type=machine_type,
        machine=machine,
        **{
            name: getattr(row, name) if row is not None else getattr(rules, name)
            for name in RULE_FIELDS
            if name != "opening"
        },
        opening=list(row.opening) if row is not None else [],
    )


@rules_router.get("/machine-types/{code}", response_model=BookingRulesPublic)
def read_type_rules(code: str, session: SessionDep, user: CurrentUser) -> BookingRulesPublic:
    service.known_machine_type(session, code)
    return _rules_public(session, code, None)


@rules_router.put(
    "/machine-types/{code}", response_model=BookingRulesPublic, dependencies=[Allow(MANAGE)]
)
def set_type_rules(
    code: str, body: BookingRules, session: SessionDep, user: CurrentUser
) -> BookingRulesPublic:
    service.set_rules(
        session, machine_type=code, values=body.model_dump(exclude_none=True), actor=actor(user)
    )
    return _rules_public(session, code, None)


@rules_router.get("/machines/{code}", response_model=BookingRulesPublic)
def read_machine_rules(code: str, session: SessionDep, user: CurrentUser) -> BookingRulesPublic:
    """The rules in force on the machine: its own override, else its type's."""
    from hub.services.machine_views import known_machine

    known_machine(session, code)
    return _rules_public(session, None, code)


@rules_router.put(
    "/machines/{code}", response_model=BookingRulesPublic, dependencies=[Allow(MANAGE)]
)
def set_machine_rules(
    code: str, body: BookingRules, session: SessionDep, user: CurrentUser
) -> BookingRulesPublic:
    """Override the type's rules on one machine (starting from them)."""
    service.set_rules(
        session, machine=code, values=body.model_dump(exclude_none=True), actor=actor(user)
    )
    return _rules_public(session, None, code)
