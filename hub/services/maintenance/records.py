"""Maintenance rows: incidents (and the ingest's incident hook) and open downtime."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlmodel import Session, col, select

from hub.models import Downtime, DowntimeCause, Incident, IncidentPublic, Machine, Member, utcnow
from protocol.envelope import Envelope

log = logging.getLogger(__name__)


def incident_public(incident: Incident, machine_code: str) -> IncidentPublic:
    return IncidentPublic(
        id=incident.id or 0,
        machine=machine_code,
        source=incident.source,
        kind=incident.kind,
        reported_by_ref=incident.reported_by_ref,
        reported_by=incident.reported_by,
        text=incident.text,
        opened_at=incident.opened_at,
        closed_at=incident.closed_at,
        closed_by=incident.closed_by,
        resolution=incident.resolution,
    )


# --- data functions -----------------------------------------------------------------------
def open_downtime(session: Session, *, machine_id: int, cause: DowntimeCause) -> Downtime | None:
    return session.exec(
        select(Downtime).where(
            Downtime.machine_id == machine_id,
            Downtime.cause == cause,
            col(Downtime.ended_at).is_(None),
        )
    ).first()


def open_incident(
    session: Session,
    *,
    machine: Machine,
    source: str,
    text: str,
    kind: str = "",
    reported_by_ref: str | None = None,
    reported_by: str = "",
    opened_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> Incident:
    assert machine.id is not None
    incident = Incident(
        machine_id=machine.id,
        source=source[:20],
        kind=kind[:40],
        reported_by_ref=reported_by_ref,
        reported_by=reported_by[:100],
        text=text[:2000],
        event_id=event_id,
        opened_at=opened_at or utcnow(),
    )
    session.add(incident)
    session.flush()
    return incident


def close_incident(
    session: Session, incident: Incident, *, by: str, resolution: str, at: datetime | None = None
) -> None:
    incident.closed_at = at or utcnow()
    incident.closed_by = by[:100]
    incident.resolution = resolution[:2000]
    session.add(incident)


def incident_from_event(session: Session, site: str, env: Envelope) -> Incident | None:
    """Ingest hook for `incident.reported`: open a ticket, once per event.

    OctoPrint reports "printer-online" when the printer answers again; that closes its open
    "printer-offline" ticket instead of opening a new one.
    """
    machine = session.exec(select(Machine).where(Machine.code == env.machine)).first()
    if machine is None or machine.id is None:
        log.warning("incident from unknown machine %s/%s not ticketed", site, env.machine)
        return None
    data = env.data
    kind = str(data.get("kind") or "")
    source = str(data.get("source") or "machine")
    note = str(data.get("note") or "")
    if kind == "printer-online":
        for ticket in session.exec(
            select(Incident).where(
                Incident.machine_id == machine.id,
                Incident.kind == "printer-offline",
                col(Incident.closed_at).is_(None),
            )
        ):
            close_incident(session, ticket, by=f"agent:{env.machine}", resolution=note, at=env.ts)
        return None
    member = data.get("member")
    return open_incident(
        session,
        machine=machine,
        source=source,
        kind=kind,
        text=note or ("reported with the machine's incident button" if source == "button" else ""),
        reported_by_ref=str(member)[:20] if member else None,
        opened_at=env.ts,
        event_id=env.id,
    )


def member_by_email(session: Session, email: str) -> Member | None:
    return session.exec(select(Member).where(Member.email == email.strip().lower())).first()
