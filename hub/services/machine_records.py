"""Machines and machine types as records: create, update, delete, each with its audit row.

Keyword-only functions over a Session; refusals are HubErrors naming the field (`code`, `site`,
`name`, `kind`, `machine_type`, `plug_topic`...). The API, the admin's pages and the CLI word
them; re-publishing the allow-lists after a change is the caller's (it needs the broker).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, InvalidValue, NotFound
from hub.models import BusyPeriod, Machine, MachineKind, MachineSession, MachineType, PrintJob
from hub.services.broker_accounts import check_plug_topic
from hub.services.machine_views import known_machine
from protocol.topics import is_slug

__all__ = [
    "create_machine",
    "create_type",
    "delete_machine",
    "known_machine",
    "known_type",
    "update_machine",
    "update_type",
]

MAX_ID = 2**31 - 1


def _slug(field: str, value: str) -> str:
    if not is_slug(value):
        raise InvalidValue("machine.slug_invalid", field=field, params={"value": value})
    return value


def _name(code: str, value: str | None) -> str:
    name = (value or "").strip()
    if not name:
        raise InvalidValue(code, field="name")
    return name


def _kind(value: MachineKind | str) -> MachineKind:
    try:
        return MachineKind(value)
    except ValueError:
        kinds = ", ".join(k.value for k in MachineKind)
        raise InvalidValue(
            "machine.kind_unknown", field="kind", params={"kind": value, "kinds": kinds}
        ) from None


def _plug(value: str | None) -> str | None:
    return None if value is None else check_plug_topic(value)


def known_type(session: Session, code: str) -> MachineType:
    """The machine type with this code; a wrong one is a mistake in the `machine_type` field."""
    mtype = session.exec(select(MachineType).where(MachineType.code == code)).first()
    if mtype is None:
        known = ", ".join(session.exec(select(MachineType.code).order_by(MachineType.code)).all())
        raise InvalidValue(
            "machine_type.unknown",
            field="machine_type",
            params={"machine_type": code, "known": known or "none yet"},
        )
    return mtype


def create_machine(
    session: Session,
    *,
    code: str,
    name: str,
    site: str,
    machine_type: str,
    actor: str,
    location: str = "",
    kind: MachineKind | str | None = None,
    agent_id: str | None = None,
    plug_topic: str | None = None,
) -> Machine:
    """A new machine; its kind is its type's unless given. Committed."""
    _slug("code", code)
    _slug("site", site)
    name = _name("machine.name_empty", name)
    plug_topic = _plug(plug_topic)
    chosen = None if kind is None else _kind(kind)
    if session.exec(select(Machine).where(Machine.code == code)).first() is not None:
        raise Conflict("machine.exists", field="code", params={"machine": code})
    mtype = known_type(session, machine_type)
    machine = Machine(
        code=code,
        name=name,
        site=site,
        location=location,
        kind=chosen or MachineKind(mtype.kind),
        machine_type_id=mtype.id or 0,
        agent_id=agent_id,
        plug_topic=plug_topic,
    )
    session.add(machine)
    record(
        session,
        actor=actor,
        action="machine.create",
        entity="machine",
        entity_id=code,
        machine_type=mtype.code,
    )
    session.commit()
    session.refresh(machine)
    return machine


UPDATABLE = ("name", "location", "kind", "machine_type", "agent_id", "plug_topic")
NOT_NULL = ("name", "location", "kind", "machine_type")


def update_machine(session: Session, *, code: str, changes: dict[str, Any], actor: str) -> Machine:
    """Set the fields given in `changes` (a field left out stays; `agent_id` and `plug_topic`
    may be None, for none). Committed."""
    machine = known_machine(session, code)
    if not set(changes) <= set(UPDATABLE):
        raise TypeError(f"not a machine's field to update: {sorted(set(changes) - set(UPDATABLE))}")
    for field in NOT_NULL:
        if field in changes and changes[field] is None:
            raise InvalidValue("machine.not_null", field=field, params={"field": field})
    values = dict(changes)
    if "name" in values:
        values["name"] = _name("machine.name_empty", values["name"])
    if "kind" in values:
        values["kind"] = _kind(values["kind"])
    if "plug_topic" in values:
        values["plug_topic"] = _plug(values["plug_topic"])
    if "machine_type" in values:
        machine.machine_type_id = known_type(session, values.pop("machine_type")).id or 0
    machine.sqlmodel_update(values)
    session.add(machine)
    record(
        session,
        actor=actor,
        action="machine.update",
        entity="machine",
        entity_id=code,
        fields=sorted(changes),
    )
    session.commit()
    session.refresh(machine)
    return machine


def delete_machine(session: Session, *, code: str, actor: str) -> None:
    """Only a machine with no sessions or use recorded; retire others by locking them."""
    machine = known_machine(session, code)
    used = (
        session.exec(select(MachineSession.id).where(MachineSession.machine == code)).first()
        or session.exec(select(BusyPeriod.id).where(BusyPeriod.machine == code)).first()
        or session.exec(select(PrintJob.id).where(PrintJob.machine == code)).first()
    )
    if used is not None:
        raise Conflict("machine.has_history", field="machine", params={"machine": code})
    record(session, actor=actor, action="machine.delete", entity="machine", entity_id=code)
    session.delete(machine)
    session.commit()


def list_types(session: Session) -> list[MachineType]:
    return list(session.exec(select(MachineType).order_by(col(MachineType.code))).all())


def create_type(
    session: Session, *, code: str, name: str, actor: str, kind: MachineKind | str = "other"
) -> MachineType:
    _slug("code", code)
    name = _name("machine_type.name_empty", name)
    chosen = _kind(kind)
    if session.exec(select(MachineType).where(MachineType.code == code)).first():
        raise Conflict("machine_type.exists", field="code", params={"machine_type": code})
    mtype = MachineType(code=code, name=name, kind=chosen)
    session.add(mtype)
    record(
        session, actor=actor, action="machine_type.create", entity="machine_type", entity_id=code
    )
    session.commit()
    session.refresh(mtype)
    return mtype


def update_type(
    session: Session, *, type_id: int, name: str, kind: MachineKind | str, actor: str
) -> MachineType:
    """Rename a type or change its kind; its code (what rates and trainings name) stays."""
    mtype = session.get(MachineType, type_id) if 1 <= type_id <= MAX_ID else None
    if mtype is None:
        raise NotFound("machine_type.unknown_id", params={"machine_type": type_id})
    mtype.name, mtype.kind = _name("machine_type.name_empty", name), _kind(kind)
    session.add(mtype)
    record(
        session,
        actor=actor,
        action="machine_type.update",
        entity="machine_type",
        entity_id=mtype.code,
        fields=["kind", "name"],
    )
    session.commit()
    session.refresh(mtype)
    return mtype
