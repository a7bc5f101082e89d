"""Locking a machine out and back in: only maintainers may use a locked machine, whose
allow-list says why (members see the reason). The caller re-publishes the machine's list."""

from __future__ import annotations

from sqlmodel import Session

from hub.audit import record
from hub.core.errors import InvalidValue
from hub.models import Machine
from hub.services.machine_views import known_machine


def set_lock(
    session: Session, *, code: str, locked: bool, reason: str | None, actor: str
) -> Machine:
    """Lock (`locked`, with a reason a member can read) or unlock the machine, audited as
    `actor`, and commit."""
    machine = known_machine(session, code)
    reason = (reason or "").strip()
    if locked and not reason:
        raise InvalidValue("lockout.reason_empty", field="reason")
    machine.locked = locked
    machine.lock_reason = reason if locked else None
    session.add(machine)
    record(
        session,
        actor=actor,
        action="machine.lock" if locked else "machine.unlock",
        entity="machine",
        entity_id=code,
        reason=reason,
    )
    session.commit()
    return machine
