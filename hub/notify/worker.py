"""The outbox worker: claims due messages with a lease, sends them, records the outcome.

Run inside the hub (hub/app.py) or alone: `python -m hub.notify.worker` with the hub's
settings (ATELIER_CONFIG or ATELIER_* variables).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.core.settings import Settings
from hub.models import Notification
from hub.notify import email
from hub.notify.email import DeliveryError
from hub.notify.messages import UnknownKind, render, render_digest
from hub.notify.webhook import webhook_sender
from hub.services import notifications

log = logging.getLogger(__name__)

Sender = Callable[[Notification], None]
Digester = Callable[[list[Notification]], None]
HOUR = timedelta(hours=1)
DIGEST_MAX = 50


def smtp_config(settings: Settings) -> email.SmtpConfig | None:
    if not settings.smtp_host:
        return None
    return email.SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        sender=settings.smtp_from,
        username=settings.smtp_username,
        password=settings.smtp_password,
        ca_file=settings.smtp_ca_file,
    )


SNAPSHOT_MAX_BYTES = 5_000_000
SNAPSHOT_TYPES = {"image/jpeg": "jpg", "image/png": "png"}


def fetch_snapshot(url: str, *, timeout_s: float = 5.0) -> email.Attachment | None:
    """The camera's picture now, or None (the message goes without it: it matters more)."""
    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not response.is_success or kind not in SNAPSHOT_TYPES:
                log.warning(
                    "snapshot %s: HTTP %s, %s", url, response.status_code, kind or "no type"
                )
                return None
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > SNAPSHOT_MAX_BYTES:
                    log.warning("snapshot %s: over %d bytes, left out", url, SNAPSHOT_MAX_BYTES)
                    return None
    except httpx.HTTPError as exc:
        log.warning("snapshot %s: %s", url, exc)
        return None
    return email.Attachment(f"snapshot.{SNAPSHOT_TYPES[kind]}", kind, bytes(data))


def email_sender(
    config: email.SmtpConfig,
    *,
    lab_language: str = "en",
    snapshots: dict[str, str] | None = None,
) -> Sender:
    """Emails; a print's message carries its machine's camera picture when one is configured
    (settings.notify_snapshot_urls, e.g. OctoPrint's webcam snapshot address)."""

    def send(note: Notification) -> None:
        try:
            # No language of its own: the lab's (settings.notify_language).
            rendered = render(note.kind, note.language or lab_language, note.params)
        except UnknownKind as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        attachments: tuple[email.Attachment, ...] = ()
        url = (snapshots or {}).get(str(note.params.get("machine_code", "")))
        if url and note.kind.startswith("print."):
            picture = fetch_snapshot(url)
            attachments = (picture,) if picture is not None else ()
        message = email.build_message(
            config,
            to=note.recipient,
            rendered=rendered,
            message_id=note.id,
            attachments=attachments,
        )
        email.send(config, message)

    return send


def email_digester(config: email.SmtpConfig, *, lab_language: str = "en") -> Digester:
    """Several messages to one address in one email; its id is the first message's."""

    def send(notes: list[Notification]) -> None:
        language = notes[0].language or lab_language
        try:
            rendered = render_digest(language, [(n.kind, n.params) for n in notes])
        except UnknownKind as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        message = email.build_message(
            config, to=notes[0].recipient, rendered=rendered, message_id=notes[0].id
        )
        message.replace_header("X-Atelier-Notification", ",".join(n.id for n in notes))
        email.send(config, message)

    return send


def digesters_from(settings: Settings) -> dict[str, Digester]:
    config = smtp_config(settings)
    if config is None:
        return {}
    return {"email": email_digester(config, lab_language=settings.notify_language)}


def senders_from(settings: Settings, engine: Engine) -> dict[str, Sender]:
    senders: dict[str, Sender] = {"webhook": webhook_sender(engine)}
    config = smtp_config(settings)
    if config is not None:
        senders["email"] = email_sender(
            config,
            lab_language=settings.notify_language,
            snapshots=settings.notify_snapshot_urls,
        )
    return senders


class OutboxWorker:
    """One thread; several workers (hub and extra processes) may share one outbox."""

    def __init__(
        self,
        engine: Engine,
        senders: dict[str, Sender],
        *,
        lease_s: float = 120.0,
        poll_s: float = 2.0,
        backoff_base_s: float = notifications.BACKOFF_BASE_S,
        max_attempts: int = notifications.MAX_ATTEMPTS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        digesters: dict[str, Digester] | None = None,
        rate_per_hour: int | None = None,
    ) -> None:
        self.engine = engine
        self.digesters = digesters or {}
        # At most this many messages an hour to one recipient; the rest wait and go together.
        self.rate_per_hour = rate_per_hour
        self.senders = senders
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.backoff_base_s = backoff_base_s
        self.max_attempts = max_attempts
        self.clock = clock
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, limit: int = 20) -> int:
        """Send up to `limit` due messages; how many were sent.

        One message is claimed at a time, so a lease only has to outlast one send (the SMTP
        timeout), and a killed worker holds one message, not a batch."""
        if not self.senders:
            return 0
        sent = 0
        with Session(self.engine) as session:
            for _ in range(limit):
                batch = notifications.claim(
                    session,
                    owner=self.owner,
                    now=self.clock(),
                    lease_s=self.lease_s,
                    limit=1,
                    channels=tuple(self.senders),
                )
                if not batch:
                    break
                sent += self._deliver_or_group(session, batch[0])
        return sent

    def _deliver_or_group(self, session: Session, note: Notification) -> int:
        digest = self.digesters.get(note.channel)
        if digest is None:
            return self._deliver(session, note)
        now = self.clock()
        if self.rate_per_hour:
            # One digest counts once: its messages share their sent_at.
            sent = sorted(
                set(
                    notifications.sent_since(
                        session, channel=note.channel, recipient=note.recipient, since=now - HOUR
                    )
                )
            )
            if len(sent) >= self.rate_per_hour:
                until = sent[len(sent) - self.rate_per_hour] + HOUR
                notifications.postpone(session, note_id=note.id, owner=self.owner, until=until)
                return 0
        group = [note] + notifications.claim_same_recipient(
            session,
            owner=self.owner,
            channel=note.channel,
            recipient=note.recipient,
            now=now,
            lease_s=self.lease_s,
            limit=DIGEST_MAX - 1,
        )
        if len(group) == 1:
            return self._deliver(session, note)
        try:
            digest(group)
        except DeliveryError as exc:
            for item in group:
                notifications.mark_failed(
                    session,
                    note_id=item.id,
                    owner=self.owner,
                    now=self.clock(),
                    error=str(exc),
                    permanent=exc.permanent,
                    max_attempts=self.max_attempts,
                    base_s=self.backoff_base_s,
                )
            log.warning("digest of %d to one recipient not delivered: %s", len(group), exc)
            return 0
        done = self.clock()
        return sum(
            notifications.mark_sent(session, note_id=item.id, owner=self.owner, now=done)
            for item in group
        )

    def _deliver(self, session: Session, note: Notification) -> int:
        try:
            self.senders[note.channel](note)
        except DeliveryError as exc:
            status = notifications.mark_failed(
                session,
                note_id=note.id,
                owner=self.owner,
                now=self.clock(),
                error=str(exc),
                permanent=exc.permanent,
                max_attempts=self.max_attempts,
                base_s=self.backoff_base_s,
            )
            log.warning(
                "notification %s (%s) not delivered, now %s: %s", note.id, note.channel, status, exc
            )
            return 0
        if notifications.mark_sent(session, note_id=note.id, owner=self.owner, now=self.clock()):
            return 1
        log.warning("notification %s was sent after its lease ran out", note.id)
        return 0

    def run(self) -> None:
        """Send until stop() (blocking); start() runs it in a thread."""
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # the database away for a moment: try again at the next poll
                log.exception("the notification outbox could not be read")
                busy = 0
            if not busy:
                self._stop.wait(self.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="notify-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(10.0, self.poll_s * 2))


def worker_from(settings: Settings, engine: Engine) -> OutboxWorker:
    return OutboxWorker(
        engine,
        senders_from(settings, engine),
        lease_s=settings.notify_lease_s,
        poll_s=settings.notify_poll_s,
        backoff_base_s=settings.notify_backoff_s,
        max_attempts=settings.notify_max_attempts,
        digesters=digesters_from(settings),
        rate_per_hour=settings.notify_rate_per_hour,
    )


def main() -> None:  # pragma: no cover - run as a subprocess by test_notify_email.py
    from hub.core.db import make_engine, migrate
    from hub.core.settings import SettingsError, get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = get_settings()
    except SettingsError as exc:
        for error in exc.errors:
            log.error("%s", error)
        raise SystemExit(2) from None
    migrate(settings.database_url)
    worker = worker_from(settings, make_engine(settings.database_url))
    log.info(
        "notification worker %s started (channels: %s)",
        worker.owner,
        ", ".join(worker.senders) or "none",
    )
    # systemd's SIGTERM: finish the message in hand, then leave (a SIGKILL loses nothing
    # either: the lease runs out and another worker sends it again).
    signal.signal(signal.SIGTERM, lambda *_: worker._stop.set())
    worker.run()


if __name__ == "__main__":
    main()
