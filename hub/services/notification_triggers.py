"""What makes a notification: called in the transaction that stores its cause."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from hub.models import Machine, Member, PrintJob, User, Webhook
from hub.services.notification_preferences import staff_recipients, wants
from hub.services.notifications import enqueue

# The lab's language (settings.notify_language) is chosen when the message is sent.
LAB_LANGUAGE = ""


def _print_kind(event_type: str, error: str | None) -> str | None:
    if event_type == "job.finished":
        return "print.finished"
    if event_type == "job.failed":
        return "print.cancelled" if error == "cancelled" else "print.failed"
    return None


def on_event(
    session: Session,
    *,
    event_id: str,
    event_type: str,
    machine: str,
    data: dict[str, Any],
    now: datetime,
) -> int:
    """Enqueue what a stored event tells someone; how many messages it made."""
    if event_type == "incident.reported":
        return _incident(session, event_id=event_id, machine=machine, data=data, now=now)
    if event_type == "session.ended" and data.get("reason") == "idle-timeout":
        member_ref = str(data.get("member") or "")
        params = {
            "machine": _machine_name(session, machine),
            "machine_code": machine,
            "duration_s": float(data.get("duration_s") or 0),
            "member": member_ref,
        }
        return to_member(
            session,
            member_ref=member_ref,
            kind="session.idle_ended",
            cause=f"event:{event_id}",
            params=params,
            now=now,
        )
    kind = _print_kind(event_type, data.get("error"))
    if kind is None:
        return 0
    job = session.get(PrintJob, f"{machine}:{data.get('job_id')}"[:128])
    job_member = data.get("member") or (job.member_ref if job is not None else None)
    params = {
        "machine": _machine_name(session, machine),
        "machine_code": machine,
        "file": (job.file if job is not None else "") or str(data.get("job_id", "")),
        "duration_s": float(data.get("duration_s") or 0),
        "error": str(data.get("error") or ""),
        "member": job_member or "",
    }
    return to_member(
        session, member_ref=job_member, kind=kind, cause=f"event:{event_id}", params=params, now=now
    )


def to_member(
    session: Session,
    *,
    member_ref: str | None,
    kind: str,
    cause: str,
    params: dict[str, Any],
    now: datetime,
    member: Member | None = None,
) -> int:
    """Email the member if they (or the lab) want it, and post to the webhooks."""
    if member is None and member_ref:
        member = session.exec(select(Member).where(Member.ref == member_ref)).first()
    made = 0
    if member is not None and member.email:
        login = session.exec(
            select(User.id).where(User.member_id == member.id, col(User.active).is_(True))
        ).first()
        if wants(session, user_id=login, kind=kind, channel="email"):
            made += _enqueued(
                session,
                cause=cause,
                channel="email",
                recipient=member.email,
                kind=kind,
                params=params,
                language=LAB_LANGUAGE,
                now=now,
            )
    return made + _webhooks(session, cause=cause, kind=kind, params=params, now=now)


def _machine_name(session: Session, code: str) -> str:
    row = session.exec(select(Machine).where(Machine.code == code)).first()
    return row.name if row is not None else code


def _incident(
    session: Session, *, event_id: str, machine: str, data: dict[str, Any], now: datetime
) -> int:
    # "printer-online" closes a ticket (hub/services/maintenance/records.py): nothing to tell.
    if data.get("kind") == "printer-online":
        return 0
    kind = "incident.opened"
    params = {
        "machine": _machine_name(session, machine),
        "machine_code": machine,
        "source": str(data.get("source") or "machine"),
        "note": str(data.get("note") or "")[:500],
        "member": str(data.get("member") or ""),
    }
    return to_staff(session, kind=kind, cause=f"event:{event_id}", params=params, now=now)


def to_staff(
    session: Session, *, kind: str, cause: str, params: dict[str, Any], now: datetime
) -> int:
    """Email the staff logins who want it, and post to the webhooks."""
    made = 0
    for user_id, member_id in staff_recipients(session):
        member = session.get(Member, member_id)
        if member is None or not member.email:
            continue
        if wants(session, user_id=user_id, kind=kind, channel="email"):
            made += _enqueued(
                session,
                cause=cause,
                channel="email",
                recipient=member.email,
                kind=kind,
                params=params,
                language=LAB_LANGUAGE,
                now=now,
            )
    return made + _webhooks(session, cause=cause, kind=kind, params=params, now=now)


def _webhooks(
    session: Session, *, cause: str, kind: str, params: dict[str, Any], now: datetime
) -> int:
    made = 0
    for hook in session.exec(select(Webhook).where(col(Webhook.enabled).is_(True))).all():
        if not hook.kinds or kind in hook.kinds:
            made += _enqueued(
                session,
                cause=cause,
                channel="webhook",
                recipient=str(hook.id),
                kind=kind,
                params=params,
                language=LAB_LANGUAGE,
                now=now,
            )
    return made


def _enqueued(session: Session, **message: Any) -> int:
    return 0 if enqueue(session, **message) is None else 1
