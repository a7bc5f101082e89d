"""The notification outbox sends email through a real SMTP server (aiosmtpd on loopback):
once, in the member's language, with retries and backoff, over STARTTLS or TLS with a login."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.models import Notification, OutboxStatus
from hub.notify import email as smtp
from hub.notify.worker import OutboxWorker, email_digester, email_sender
from hub.services import notifications
from hub.tls import issue, load_or_create_ca
from tests.support.camera import Camera
from tests.support.processes import Proc
from tests.support.smtp import Credentials, Recorder, free_port, server_context, start_smtp

# aiosmtpd's "AUTH without TLS" warning: it does not count implicit TLS (tests/support/smtp.py).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

T0 = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, int]]:
    rec = Recorder()
    controller = start_smtp(rec)
    yield rec, controller.port
    controller.stop()


def _enqueue(
    engine: Engine, n: int, *, language: str = "en", start: int = 0, domain: str = "example.org"
) -> list[str]:
    ids = []
    with Session(engine) as session:
        for i in range(start, start + n):
            note = notifications.enqueue(
                session,
                cause=f"job:{i}",
                channel="email",
                recipient=f"member{i}@{domain}",
                kind="print.failed",
                params={
                    "machine": "Prusa MK4",
                    "file": f"part{i}.gcode",
                    "duration_s": 3725,
                    "error": "thermal runaway",
                },
                language=language,
                now=T0,
            )
            assert note is not None
            ids.append(note.id)
        session.commit()
    return ids


def _config(port: int, **kw: Any) -> smtp.SmtpConfig:
    plain = smtp.SmtpConfig(
        host="127.0.0.1", port=port, security="none", sender="lab@example.org", timeout_s=5
    )
    return dataclasses.replace(plain, **kw)


def test_each_message_goes_once_in_its_language(
    engine: Engine, recorder: tuple[Recorder, int]
) -> None:
    rec, port = recorder
    ids = _enqueue(engine, 2, language="fr")
    with Session(engine) as session:  # the same cause again enqueues nothing
        again = notifications.enqueue(
            session,
            cause="job:0",
            channel="email",
            recipient="member0@example.org",
            kind="print.failed",
            params={},
            now=T0,
        )
        assert again is None
    clock = Clock()
    worker = OutboxWorker(engine, {"email": email_sender(_config(port))}, clock=clock)
    assert worker.run_once() == 2
    assert worker.run_once() == 0  # sent is sent: nothing goes twice
    rec.wait_for(2)
    assert sorted(rec.ids()) == sorted(ids)
    message = rec.messages[0]
    assert message["Subject"] == "Votre impression sur Prusa MK4 a échoué"
    assert message["Message-ID"] == f"<{message['X-Atelier-Notification']}@atelier.invalid>"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "1 h 02 min : thermal runaway" in text.get_content()
    assert "page Notifications" in html.get_content()
    with Session(engine) as session:
        rows = session.exec(select(Notification)).all()
        assert {r.status for r in rows} == {OutboxStatus.SENT.value}
        assert all(r.attempts == 1 and r.sent_at == T0 for r in rows)


def test_a_server_away_is_retried_with_growing_waits(engine: Engine) -> None:
    port = free_port()  # nothing listens yet
    [note_id] = _enqueue(engine, 1)
    clock = Clock()
    worker = OutboxWorker(
        engine, {"email": email_sender(_config(port))}, clock=clock, backoff_base_s=10
    )
    waits = []
    for _ in range(3):
        assert worker.run_once() == 0
        with Session(engine) as session:
            row = session.get(Notification, note_id)
            assert row is not None and row.status == OutboxStatus.PENDING.value
            assert row.last_error is not None and "SMTP" in row.last_error
            waits.append((row.next_attempt_at - clock.now).total_seconds())
            assert worker.run_once() == 0  # not due yet: not even tried
            clock.now = row.next_attempt_at
    assert waits == [10, 20, 40]
    rec = Recorder()
    controller = start_smtp(rec, port=port)
    try:
        assert worker.run_once() == 1
        assert rec.ids() == [note_id]
    finally:
        controller.stop()


def test_a_refused_address_and_the_last_attempt_are_given_up(
    engine: Engine, recorder: tuple[Recorder, int]
) -> None:
    rec, port = recorder
    [refused] = _enqueue(engine, 1, domain="refused.invalid")
    [unreachable] = _enqueue(engine, 1, start=1)
    clock = Clock()
    OutboxWorker(
        engine, {"email": email_sender(_config(port))}, clock=clock, max_attempts=5
    ).run_once(limit=1)
    OutboxWorker(
        engine, {"email": email_sender(_config(free_port()))}, clock=clock, max_attempts=1
    ).run_once()
    with Session(engine) as session:
        first = session.get(Notification, refused)
        assert (
            first is not None and first.status == OutboxStatus.FAILED.value and first.attempts == 1
        )
        assert first.last_error is not None and "refused the address" in first.last_error
        last = session.get(Notification, unreachable)
        assert last is not None and last.status == OutboxStatus.FAILED.value
    assert rec.ids() == []


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, str, str]:
    ca, ca_key = load_or_create_ca(tmp_path, "lab")
    leaf = issue(
        tmp_path,
        "smtp",
        "localhost",
        ca=ca,
        ca_key=ca_key,
        site="lab",
        server_names=["127.0.0.1", "localhost"],
    )
    return tmp_path / "ca.crt", str(leaf.cert), str(leaf.key)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_login(
    engine: Engine,
    certificates: tuple[Path, str, str],
    security: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ca_file, cert, key = certificates
    rec = Recorder()
    context = server_context(cert, key)
    controller = start_smtp(
        rec,
        starttls=context if security == "starttls" else None,
        implicit_tls=context if security == "tls" else None,
        credentials=Credentials("atelier", "s3cret-Pa55"),
    )
    try:
        [note_id] = _enqueue(engine, 1)
        clock = Clock()
        wrong = _config(
            controller.port,
            security=security,
            username="atelier",
            password=SecretStr("wrong-Pa55"),
            ca_file=ca_file,
        )
        assert OutboxWorker(engine, {"email": email_sender(wrong)}, clock=clock).run_once() == 0
        with Session(engine) as session:
            row = session.get(Notification, note_id)
            assert row is not None and row.last_error is not None
            assert "authentication failed" in row.last_error and "wrong-Pa55" not in row.last_error
        assert "wrong-Pa55" not in caplog.text
        clock.now += timedelta(hours=1)
        right = _config(
            controller.port,
            security=security,
            username="atelier",
            password=SecretStr("s3cret-Pa55"),
            ca_file=ca_file,
        )
        assert OutboxWorker(engine, {"email": email_sender(right)}, clock=clock).run_once() == 1
        assert rec.ids() == [note_id]
        # without the lab's CA the server's certificate is not trusted: nothing is sent
        [other] = _enqueue(engine, 1, start=1)
        untrusted = dataclasses.replace(right, ca_file=None)
        assert OutboxWorker(engine, {"email": email_sender(untrusted)}, clock=clock).run_once() == 0
        with Session(engine) as session:
            row = session.get(Notification, other)
            assert row is not None and row.last_error is not None
            assert "CERTIFICATE_VERIFY_FAILED" in row.last_error
        assert rec.ids() == [note_id]
    finally:
        controller.stop()


def test_two_workers_never_hold_the_same_message(
    engine: Engine, recorder: tuple[Recorder, int]
) -> None:
    rec, port = recorder
    ids = _enqueue(engine, 30)
    sender = email_sender(_config(port))
    workers = [OutboxWorker(engine, {"email": sender}, clock=Clock()) for _ in range(3)]
    threads = [threading.Thread(target=w.run_once, kwargs={"limit": 30}) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    rec.wait_for(30)
    assert sorted(rec.ids()) == sorted(ids)  # each once: no two workers claimed one message


def test_a_print_message_carries_the_camera_picture_or_goes_without(
    engine: Engine, recorder: tuple[Recorder, int]
) -> None:
    rec, port = recorder
    camera = Camera()
    try:
        with Session(engine) as session:
            for i, machine in enumerate(["printer-1", "printer-1", "laser-1"]):
                notifications.enqueue(
                    session,
                    cause=f"c{i}",
                    channel="email",
                    recipient=f"m{i}@example.org",
                    kind="print.failed",
                    params={"machine": machine, "machine_code": machine, "file": "f"},
                    now=T0 + timedelta(seconds=i),  # sent in this order
                )
            session.commit()
        sender = email_sender(_config(port), snapshots={"printer-1": camera.url})
        clock = Clock()
        clock.now = T0 + timedelta(minutes=1)
        worker = OutboxWorker(engine, {"email": sender}, clock=clock)
        assert worker.run_once(limit=1) == 1
        camera.status = 404  # the camera away: the message goes all the same, without it
        assert worker.run_once() == 2
        rec.wait_for(3)
    finally:
        camera.stop()
    by_to = {str(m["To"]): m for m in rec.messages}
    [picture] = list(by_to["m0@example.org"].iter_attachments())
    assert picture.get_content_type() == "image/png" and picture.get_content() == camera.picture
    assert list(by_to["m1@example.org"].iter_attachments()) == []
    assert list(by_to["m2@example.org"].iter_attachments()) == []  # no camera for the laser
    assert camera.requests == 2


def test_a_busy_hour_is_rate_limited_and_the_rest_goes_in_one_digest(
    engine: Engine, recorder: tuple[Recorder, int]
) -> None:
    rec, port = recorder
    clock = Clock()
    config = _config(port)
    worker = OutboxWorker(
        engine,
        {"email": email_sender(config)},
        digesters={"email": email_digester(config)},
        rate_per_hour=2,
        clock=clock,
    )

    def arrives(name: str, to: str = "hugo@example.org") -> str:
        with Session(engine) as session:
            note = notifications.enqueue(
                session,
                cause=name,
                channel="email",
                recipient=to,
                kind="print.finished",
                language="fr",
                params={"machine": "Prusa MK4", "file": f"{name}.gcode"},
                now=clock.now,
            )
            session.commit()
            assert note is not None
            return note.id

    first_sent = clock.now
    arrives("a")
    assert worker.run_once() == 1
    clock.now += timedelta(minutes=1)
    arrives("b")
    assert worker.run_once() == 1  # two in the hour: Hugo's limit
    waiting = []
    for name in ("c", "d", "e"):
        clock.now += timedelta(minutes=1)
        waiting.append(arrives(name))
        assert worker.run_once() == 0
    arrives("lea", to="lea@example.org")
    assert worker.run_once() == 1  # Léa is not held by Hugo's hour
    with Session(engine) as session:
        for note_id in waiting:
            row = session.get(Notification, note_id)
            assert row is not None and row.status == OutboxStatus.PENDING.value
            assert row.attempts == 0 and row.next_attempt_at == first_sent + timedelta(hours=1)
    clock.now = first_sent + timedelta(hours=1)
    assert worker.run_once() == 3  # c, d and e in one email
    rec.wait_for(4)
    assert [str(m["To"]) for m in rec.messages].count("hugo@example.org") == 3
    digest = rec.messages[-1]
    assert digest["Subject"] == "3 notifications d’Atelier"
    assert str(digest["X-Atelier-Notification"]) == ",".join(waiting)
    text = digest.get_body(("plain",))
    assert text is not None
    assert all(f"{name}.gcode" in text.get_content() for name in ("c", "d", "e"))
    assert "Plusieurs notifications" in text.get_content()


def test_the_worker_alone_sends_then_stops_on_sigterm_and_refuses_bad_settings(
    engine: Engine, database_url: str, recorder: tuple[Recorder, int], tmp_path: Path
) -> None:
    rec, port = recorder
    [note_id] = _enqueue(engine, 1)
    program = [sys.executable, "-m", "hub.notify.worker"]
    env = {
        "ATELIER_DATABASE_URL": database_url,
        "ATELIER_DATA_DIR": str(tmp_path),
        "ATELIER_SMTP_HOST": "127.0.0.1",
        "ATELIER_SMTP_PORT": str(port),
        "ATELIER_SMTP_SECURITY": "none",
        "ATELIER_NOTIFY_POLL_S": "0.2",
    }
    worker = Proc([], log=tmp_path / "worker.log", env=env, program=program)
    try:
        rec.wait_for(1, timeout_s=30)
    finally:
        code = worker.stop()
    assert rec.ids() == [note_id] and code == 0, worker.output()
    bad = subprocess.run(
        program,
        env={**os.environ, **env, "ATELIER_SMTP_PORT": "70000", "ATELIER_SMTP_SECURITY": "ssl"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "smtp_port" in bad.stderr and "smtp_security" in bad.stderr
    assert "Traceback" not in bad.stderr
