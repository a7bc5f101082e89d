"""Webhooks: JSON posts signed as Standard Webhooks does (id, timestamp, HMAC-SHA256)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.models import Notification, Webhook
from hub.notify.email import DeliveryError

log = logging.getLogger(__name__)

# What names or points to a person; a webhook gets it only when an admin allowed it.
# An incident's note is free text written by a person, who may name someone.
PERSONAL_KEYS = frozenset({"member", "member_name", "email", "file", "note", "recipient"})
# A webhook is turned off (an admin turns it on again) once it has failed this many times in
# a row over at least this long: a receiver down for a night gets everything when back.
DISABLE_AFTER = 10
DISABLE_AFTER_S = 3 * 86_400.0


def sign(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: v1 and the base64 HMAC-SHA256 of "id.timestamp.body"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def payload(note: Notification, *, personal_data: bool) -> bytes:
    data: dict[str, Any] = {
        key: value
        for key, value in note.params.items()
        if personal_data or key not in PERSONAL_KEYS
    }
    body = {
        "id": note.id,
        "type": note.kind,
        "created_at": note.created_at.isoformat(),
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def webhook_sender(
    engine: Engine,
    *,
    timeout_s: float = 10.0,
    disable_after: int = DISABLE_AFTER,
    disable_after_s: float = DISABLE_AFTER_S,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[Notification], None]:
    def send(note: Notification) -> None:
        with Session(engine) as session:
            hook = session.get(Webhook, int(note.recipient)) if note.recipient.isdigit() else None
            if hook is None:
                raise DeliveryError(f"webhook {note.recipient} no longer exists", permanent=True)
            if not hook.enabled:
                raise DeliveryError(f"webhook {hook.name!r} is turned off", permanent=True)
            body = payload(note, personal_data=hook.personal_data)
            now = clock()
            timestamp = int(now.timestamp())
            headers = {
                "content-type": "application/json",
                "user-agent": "Atelier-hub",
                "webhook-id": note.id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(
                    hook.secret, message_id=note.id, timestamp=timestamp, body=body
                ),
            }
            try:
                response = httpx.post(hook.url, content=body, headers=headers, timeout=timeout_s)
                failure = None if response.is_success else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if failure is None:
                hook.consecutive_failures = 0
                hook.failing_since = None
                session.add(hook)
                session.commit()
                return
            hook.consecutive_failures += 1
            hook.failing_since = hook.failing_since or now
            failing_s = (now - hook.failing_since).total_seconds()
            if hook.consecutive_failures >= disable_after and failing_s >= disable_after_s:
                hook.enabled = False
                hook.disabled_reason = (
                    f"{hook.consecutive_failures} failures in a row, last: {failure}"[:500]
                )
                log.warning("webhook %r turned off: %s", hook.name, hook.disabled_reason)
            session.add(hook)
            session.commit()
            # The failure that turns it off gives its message up too, as the next ones will be.
            raise DeliveryError(f"webhook {hook.name!r}: {failure}", permanent=not hook.enabled)

    return send
