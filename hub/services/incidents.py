"""Incidents, as the API, the web and the CLI open and close them: one rule, HubError refusals."""

from __future__ import annotations

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, InvalidValue, NotFound
from hub.models import Incident, IncidentPublic, Machine
from hub.services.maintenance.records import (
    close_incident,
    incident_public,
    member_by_email,
    open_incident,
)


def report_incident(
    session: Session,
    *,
    machine: str,
    text: str,
    source: str,
    reported_by: str = "",
    reporter_email: str | None = None,
) -> tuple[Incident, Machine]:
    """Open a ticket on `machine` (its code); `reporter_email` names the member who saw it.
    The caller commits."""
    found = session.exec(select(Machine).where(Machine.code == machine)).first()
    if found is None:
        known = ", ".join(m.code for m in session.exec(select(Machine).order_by(Machine.code)))
        raise NotFound(
            "machine.unknown", field="machine", params={"machine": machine, "known": known}
        )
    if not text.strip():
        raise InvalidValue("incident.text_empty", field="text")
    member = member_by_email(session, reporter_email) if reporter_email else None
    if reporter_email and member is None:
        raise NotFound("member.unknown_email", field="by", params={"email": reporter_email})
    incident = open_incident(
        session,
        machine=found,
        source=source,
        text=text.strip(),
        reported_by_ref=member.ref if member else None,
        reported_by=reported_by,
    )
    return incident, found


def resolve_incident(session: Session, *, incident_id: int, by: str, note: str) -> Incident:
    """Close a ticket with what was found and done, audited as `by`. The caller commits."""
    # Locked until the commit (PostgreSQL): two closes at once cannot both succeed.
    incident = session.get(Incident, incident_id, with_for_update=True)
    if incident is None:
        raise NotFound("incident.unknown", field="incident_id", params={"incident": incident_id})
    if incident.closed_at is not None:
        raise Conflict(
            "incident.closed",
            params={
                "incident": incident_id,
                "by": incident.closed_by or "?",
                "at": f"{incident.closed_at:%Y-%m-%d %H:%M}",
            },
        )
    resolution = note.strip()
    if not resolution:
        raise InvalidValue("incident.note_empty", field="note")
    close_incident(session, incident, by=by, resolution=resolution)
    record(
        session,
        actor=by,
        action="incident.close",
        entity="incident",
        entity_id=str(incident_id),
        resolution=resolution,
    )
    return incident


def list_incidents(session: Session, *, include_closed: bool = False) -> list[IncidentPublic]:
    """Open incidents, newest first (the closed ones too with `include_closed`), at most 500."""
    machines = {m.id: m.code for m in session.exec(select(Machine))}
    query = select(Incident).order_by(col(Incident.opened_at).desc())
    if not include_closed:
        query = query.where(col(Incident.closed_at).is_(None))
    return [
        incident_public(i, machines.get(i.machine_id, "?")) for i in session.exec(query.limit(500))
    ]
