"""The notification outbox: enqueue with the cause, claim with a lease, mark what was sent.

Every state change is one conditional UPDATE, so two workers (or a worker and its restarted
self) can never both hold a message: on SQLite the writer lock serialises them, on PostgreSQL
READ COMMITTED re-checks the WHERE clause of the row it waited for.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from hub.core.db import rowcount
from hub.models import Notification, OutboxStatus, Webhook

# A message that failed this many times is given up (kept in the log, status failed).
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 6 * 3600.0


def enqueue(
    session: Session,
    *,
    cause: str,
    channel: str,
    recipient: str,
    kind: str,
    params: dict[str, Any],
    language: str = "en",
    now: datetime,
) -> Notification | None:
    """Add a message in the caller's transaction; None when this cause already made it."""
    key = f"{cause}|{channel}|{recipient}"[:200]
    if session.exec(select(Notification.id).where(Notification.dedup_key == key)).first():
        return None
    note = Notification(
        dedup_key=key,
        channel=channel,
        recipient=recipient,
        kind=kind,
        params=params,
        language=language,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(note)
    return note


def backoff(
    attempts: int, *, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S
) -> float:
    """Seconds before the next attempt after `attempts` failures: doubling, capped."""
    return float(min(cap_s, base_s * 2 ** max(0, min(attempts - 1, 30))))


def _claimable(now: datetime) -> Any:
    return or_(
        and_(
            col(Notification.status) == OutboxStatus.PENDING.value,
            col(Notification.next_attempt_at) <= now,
        ),
        # A worker that died while sending: its lease ran out, the message goes again.
        and_(
            col(Notification.status) == OutboxStatus.SENDING.value,
            col(Notification.lease_until) < now,
        ),
    )


def claim(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease_s: float,
    limit: int = 20,
    channels: tuple[str, ...] | None = None,
) -> list[Notification]:
    """Take up to `limit` due messages for `owner` until now + lease_s, committing the claim."""
    query = select(Notification.id).where(_claimable(now))
    if channels is not None:
        query = query.where(col(Notification.channel).in_(channels))
    candidates = session.exec(query.order_by(col(Notification.next_attempt_at)).limit(limit)).all()
    claimed: list[str] = []
    for note_id in candidates:
        result = session.execute(
            update(Notification)
            .where(col(Notification.id) == note_id, _claimable(now))
            .values(
                status=OutboxStatus.SENDING.value,
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease_s),
                attempts=col(Notification.attempts) + 1,
            )
        )
        session.commit()  # each claim on its own: a long batch must not hold the writer lock
        if rowcount(result) == 1:
            claimed.append(note_id)
    if not claimed:
        return []
    rows = session.exec(select(Notification).where(col(Notification.id).in_(claimed))).all()
    for row in rows:
        session.expunge(row)
    return sorted(rows, key=lambda n: n.next_attempt_at)


def mark_sent(session: Session, *, note_id: str, owner: str, now: datetime) -> bool:
    """Record the channel's acknowledgement; False when the lease was lost meanwhile."""
    result = session.execute(
        update(Notification)
        .where(
            col(Notification.id) == note_id,
            col(Notification.lease_owner) == owner,
            col(Notification.status) == OutboxStatus.SENDING.value,
        )
        .values(status=OutboxStatus.SENT.value, sent_at=now, lease_until=None, last_error=None)
    )
    session.commit()
    return rowcount(result) == 1


def mark_failed(
    session: Session,
    *,
    note_id: str,
    owner: str,
    now: datetime,
    error: str,
    permanent: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
    base_s: float = BACKOFF_BASE_S,
) -> str | None:
    """Put a failed message back for later (or give it up); its new status, None if not ours."""
    note = session.get(Notification, note_id)
    if note is None or note.lease_owner != owner or note.status != OutboxStatus.SENDING.value:
        return None
    give_up = permanent or note.attempts >= max_attempts
    status = OutboxStatus.FAILED if give_up else OutboxStatus.PENDING
    result = session.execute(
        update(Notification)
        .where(
            col(Notification.id) == note_id,
            col(Notification.lease_owner) == owner,
            col(Notification.status) == OutboxStatus.SENDING.value,
        )
        .values(
            status=status.value,
            lease_until=None,
            last_error=error[:500],
            next_attempt_at=now + timedelta(seconds=backoff(note.attempts, base_s=base_s)),
        )
    )
    session.commit()
    return status.value if rowcount(result) == 1 else None


def delivery_log(
    session: Session, *, limit: int = 100, status: str | None = None
) -> list[Notification]:
    """The newest messages first, for the admins' delivery log."""
    query = select(Notification).order_by(col(Notification.created_at).desc()).limit(limit)
    if status is not None:
        query = query.where(Notification.status == status)
    return list(session.exec(query).all())


class NotificationError(ValueError):
    """A person's mistake in notification settings: a stable code, the field, its params."""

    def __init__(self, code: str, field: str, message: str, **params: Any) -> None:
        super().__init__(message)
        self.code, self.field, self.params = code, field, params


def create_webhook(
    session: Session,
    *,
    name: str,
    url: str,
    kinds: list[str] | None = None,
    personal_data: bool = False,
    known_kinds: frozenset[str] | None = None,
    now: datetime,
) -> tuple[Webhook, str]:
    """A new webhook and its secret (the only time the caller gets it)."""
    name = name.strip()
    if not name or len(name) > 80 or "\x00" in name:
        raise NotificationError(
            "webhook.name", "name", "name: give 1 to 80 characters (no NUL)", length=len(name)
        )
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or len(url) > 2000:
        raise NotificationError(
            "webhook.url",
            "url",
            "url: give an http:// or https:// address of at most 2000 characters",
        )
    wanted = sorted(set(kinds or []))
    unknown = [k for k in wanted if known_kinds is not None and k not in known_kinds]
    if unknown:
        raise NotificationError(
            "webhook.kinds", "kinds", f"kinds: unknown {', '.join(unknown)}", unknown=unknown
        )
    if session.exec(select(Webhook).where(Webhook.name == name)).first():
        raise NotificationError(
            "webhook.exists", "name", f"name: a webhook {name!r} exists already"
        )
    hook = Webhook(name=name, url=url, kinds=wanted, personal_data=personal_data, created_at=now)
    session.add(hook)
    session.flush()  # the caller commits, with its audit entry
    return hook, hook.secret


def set_webhook_enabled(session: Session, *, webhook_id: int, enabled: bool) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotificationError("webhook.unknown", "webhook_id", f"no webhook {webhook_id}")
    hook.enabled = enabled
    if enabled:  # turned on again by an admin: a fresh count of failures
        hook.consecutive_failures = 0
        hook.disabled_reason = None
        hook.failing_since = None
    session.add(hook)
    session.flush()
    return hook


def list_webhooks(session: Session) -> list[Webhook]:
    return list(session.exec(select(Webhook).order_by(col(Webhook.name))).all())


def sent_since(
    session: Session, *, channel: str, recipient: str, since: datetime
) -> list[datetime]:
    """When messages went to this recipient after `since` (the rate limit's window)."""
    rows = session.exec(
        select(Notification.sent_at).where(
            Notification.channel == channel,
            Notification.recipient == recipient,
            Notification.status == OutboxStatus.SENT.value,
            col(Notification.sent_at) > since,  # an hour old: out of the window
        )
    ).all()
    return sorted(r for r in rows if r is not None)


def postpone(session: Session, *, note_id: str, owner: str, until: datetime) -> bool:
    """Give a claimed message back, due at `until`, without counting it as an attempt."""
    result = session.execute(
        update(Notification)
        .where(
            col(Notification.id) == note_id,
            col(Notification.lease_owner) == owner,
            col(Notification.status) == OutboxStatus.SENDING.value,
        )
        .values(
            status=OutboxStatus.PENDING.value,
            lease_until=None,
            next_attempt_at=until,
            attempts=col(Notification.attempts) - 1,
        )
    )
    session.commit()
    return rowcount(result) == 1


def claim_same_recipient(
    session: Session,
    *,
    owner: str,
    channel: str,
    recipient: str,
    now: datetime,
    lease_s: float,
    limit: int,
) -> list[Notification]:
    """The other due messages to this recipient, claimed to go in one digest."""
    ids = session.exec(
        select(Notification.id)
        .where(
            _claimable(now),
            Notification.channel == channel,
            Notification.recipient == recipient,
        )
        .order_by(col(Notification.created_at))
        .limit(limit)
    ).all()
    claimed: list[Notification] = []
    for note_id in ids:
        result = session.execute(
            update(Notification)
            .where(col(Notification.id) == note_id, _claimable(now))
            .values(
                status=OutboxStatus.SENDING.value,
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease_s),
                attempts=col(Notification.attempts) + 1,
            )
        )
        session.commit()
        if rowcount(result) == 1:
            row = session.get(Notification, note_id)
            if row is not None:
                session.expunge(row)
                claimed.append(row)
    return claimed
