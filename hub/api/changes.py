"""What every change made through the API does after it is saved: an audit row in the same
transaction, then the affected machines' allow-lists re-signed and re-published."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import BackgroundTasks, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from sqlmodel import Session, select

from hub.audit import record
from hub.models import Machine, MachineType, Member, User

log = logging.getLogger(__name__)


def invalid(field: str, message: str, where: str = "body") -> RequestValidationError:
    """A 422 shaped like FastAPI's own: the field, and what to give instead."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, field), "msg": message, "input": None}]
    )


def actor(user: User) -> str:
    return f"user:{user.username}"


def audit(
    session: Session, user: User, action: str, entity: str, entity_id: object, **detail: Any
) -> None:
    record(
        session, actor=actor(user), action=action, entity=entity, entity_id=str(entity_id), **detail
    )


def republish(
    request: Request, background: BackgroundTasks, machine_codes: list[str] | None = None
) -> None:
    """After the response: sign and publish these machines' lists (all when None), so a
    revocation reaches the machines within seconds."""
    publisher = getattr(request.app.state, "publisher", None)
    if publisher is None:
        return

    def publish() -> None:
        try:
            publisher.publish(machine_codes)
        except Exception:  # the scheduled publication will catch up
            log.exception("publishing allow-lists after a change failed")

    background.add_task(publish)


def machines_of_type(session: Session, machine_type_id: int) -> list[str]:
    return list(
        session.exec(select(Machine.code).where(Machine.machine_type_id == machine_type_id)).all()
    )


def get_member(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise HTTPException(status_code=404, detail=f"no member with id {member_id}")
    return member


def member_field(session: Session, member_id: int, field: str = "member_id") -> Member:
    """A member named in a request body: a wrong id is a mistake in the body (422)."""
    member = session.get(Member, member_id)
    if member is None:
        raise invalid(f"{field}", f"no member with id {member_id}")
    return member


def get_machine_type(session: Session, code: str) -> MachineType:
    mtype = session.exec(select(MachineType).where(MachineType.code == code)).first()
    if mtype is None:
        known = ", ".join(session.exec(select(MachineType.code)).all()) or "none yet"
        raise invalid(f"no machine type {code!r} (known", f"{known})")
    return mtype


def get_machine(session: Session, code: str) -> Machine:
    machine = session.exec(select(Machine).where(Machine.code == code)).first()
    if machine is None:
        raise HTTPException(status_code=404, detail=f"no machine {code!r}")
    return machine
