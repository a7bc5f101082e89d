"""What makes a notification: called in the transaction that stores its cause."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from hub.models import Machine, Member, PrintJob
from hub.notification_models import Webhook
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
    kind = _print_kind(event_type, data.get("error"))
    if kind is None:
        return 0
    job = session.get(PrintJob, f"{machine}:{data.get('job_id')}"[:128])
    member_ref = data.get("member") or (job.member_ref if job is not None else None)
    member = (
        session.exec(select(Member).where(Member.ref == member_ref)).first() if member_ref else None
    )
    machine_row = session.exec(select(Machine).where(Machine.code == machine)).first()
    params = {
        "machine": machine_row.name if machine_row is not None else machine,
        "machine_code": machine,
        "file": (job.file if job is not None else "") or str(data.get("job_id", "")),
        "duration_s": float(data.get("duration_s") or 0),
        "error": str(data.get("error") or ""),
        "member": member_ref or "",
    }
    cause = f"event:{event_id}"
    made = 0
    if member is not None and member.email:
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
