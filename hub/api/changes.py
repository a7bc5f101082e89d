"""What every change made through the API does after it is saved: an audit row in the same
transaction, then the affected machines' allow-lists re-signed and re-published (`actor` and
`republish` live in hub/core/deps.py, which the web shares)."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlmodel import Session, select

from hub.audit import record
from hub.core.deps import actor, republish
from hub.models import Machine, User
from hub.services.machine_records import known_type
from hub.services.machine_views import known_machine

__all__ = [
    "actor",
    "audit",
    "get_machine",
    "get_machine_type",
    "invalid",
    "machines_of_type",
    "republish",
]


def invalid(field: str, message: str, where: str = "body") -> RequestValidationError:
    """A 422 shaped like FastAPI's own: the field, and what to give instead."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, field), "msg": message, "input": None}]
    )


def audit(
    session: Session, user: User, action: str, entity: str, entity_id: object, **detail: Any
) -> None:
    record(
        session, actor=actor(user), action=action, entity=entity, entity_id=str(entity_id), **detail
    )


def machines_of_type(session: Session, machine_type_id: int) -> list[str]:
    return list(
        session.exec(select(Machine.code).where(Machine.machine_type_id == machine_type_id)).all()
    )


# The machine lookups are the services' (NotFound / InvalidValue naming the field); kept here
# under their old names for the API modules that import them.
get_machine = known_machine
get_machine_type = known_type
