"""Webhooks against a real HTTP receiver on loopback: signed posts, a receiver down for a
while that then gets every message exactly once, personal data only when allowed, and a
webhook turned off after repeated failures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import Member, Notification, OutboxStatus, Webhook
from hub.notify.messages import KINDS
from hub.notify.webhook import webhook_sender
from hub.notify.worker import OutboxWorker
from hub.services import notifications
from hub.services.notifications import NotificationError
from protocol import EventType, encode_envelope, new_envelope
from tests.support.http_receiver import Receiver
from tests.support.smtp import free_port

T0 = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
TOPIC = "atelier/v1/lab/printer-1/event"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)  # the ingest dates its messages with the real time

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    yield engine
    engine.dispose()


def _hook(
    engine: Engine, port: int, *, personal_data: bool = False, kinds: list[str] | None = None
) -> tuple[int, str]:
    with Session(engine) as session:
        hook, secret = notifications.create_webhook(
            session,
            name=f"lab-bot-{port}",
            url=f"http://127.0.0.1:{port}/hook",
            kinds=kinds,
            personal_data=personal_data,
            known_kinds=frozenset(KINDS),
            now=T0,
        )
        assert hook.id is not None
        session.commit()
        return hook.id, secret


def _prints(engine: Engine, count: int) -> None:
    with Session(engine) as session:
        member = session.exec(select(Member).where(Member.email.is_not(None))).first()  # type: ignore[union-attr]
        assert member is not None
    feed = []
    for i in range(count):
        at = T0 + timedelta(minutes=i)
        feed.append(
            encode_envelope(
                new_envelope(
                    machine="printer-1",
                    type=EventType.JOB_FAILED,
                    seq=i + 1,
                    data={
                        "job_id": f"j{i}",
                        "duration_s": 60 + i,
                        "error": "nozzle clog",
                        "member": member.ref,
                    },
                    now=lambda at=at: at,
                )
            )
        )
    IngestWriter(engine).write_batch([Incoming(TOPIC, p) for p in feed])


def _webhook_rows(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(
            session.exec(select(Notification).where(Notification.channel == "webhook")).all()
        )


def test_a_receiver_down_for_a_while_then_gets_every_message_once(engine: Engine) -> None:
    port = free_port()
    hook_id, secret = _hook(engine, port)
    _prints(engine, 6)
    clock = Clock()
    worker = OutboxWorker(
        engine, {"webhook": webhook_sender(engine)}, clock=clock, backoff_base_s=5
    )
    receiver = Receiver(secret, port)
    for _ in range(3):  # down: every attempt fails and waits longer
        assert worker.run_once() == 0
        clock.now += timedelta(hours=1)
    rows = _webhook_rows(engine)
    assert len(rows) == 6 and {r.attempts for r in rows} == {3}
    assert all(
        r.status == OutboxStatus.PENDING.value and "ConnectError" in (r.last_error or "")
        for r in rows
    )
    receiver.start()
    try:
        assert worker.run_once() == 6
        clock.now += timedelta(days=1)
        assert worker.run_once() == 0  # acknowledged: never sent again
    finally:
        receiver.stop()
    assert sorted(receiver.ids()) == sorted(r.id for r in rows)
    assert len(receiver.ids()) == 6 and receiver.bad_signatures == 0
    post = receiver.posts[0]
    assert post["type"] == "print.failed" and post["data"]["machine"] == "Prusa MK4 #1"
    assert "member" not in post["data"] and "file" not in post["data"]  # not allowed: left out
    with Session(engine) as session:
        hook = session.get(Webhook, hook_id)
        assert hook is not None and hook.enabled and hook.consecutive_failures == 0


def test_personal_data_goes_only_where_an_admin_allowed_it(engine: Engine) -> None:
    port = free_port()
    _, secret = _hook(engine, port, personal_data=True, kinds=["print.failed"])
    _prints(engine, 1)
    receiver = Receiver(secret, port)
    receiver.start()
    try:
        assert (
            OutboxWorker(engine, {"webhook": webhook_sender(engine)}, clock=Clock()).run_once() == 1
        )
    finally:
        receiver.stop()
    assert receiver.posts[0]["data"]["member"].startswith("m-")
    assert receiver.posts[0]["data"]["file"] == "j0"


def test_a_wrong_secret_is_refused_and_a_failing_webhook_is_turned_off(engine: Engine) -> None:
    port = free_port()
    hook_id, _ = _hook(engine, port)
    _prints(engine, 2)
    receiver = Receiver("whsec_" + "A" * 32, port)  # not the webhook's secret: 401
    receiver.start()
    clock = Clock()
    worker = OutboxWorker(
        engine,
        {"webhook": webhook_sender(engine, disable_after=3, disable_after_s=7200, clock=clock)},
        clock=clock,
        backoff_base_s=1,
    )
    try:
        for _ in range(3):  # 6 failures, but over less than 2 hours: still on
            worker.run_once()
            clock.now += timedelta(minutes=30)
        with Session(engine) as session:
            hook = session.get(Webhook, hook_id)
            assert hook is not None and hook.enabled and hook.consecutive_failures == 6
        clock.now += timedelta(hours=1)
        worker.run_once()
    finally:
        receiver.stop()
    assert receiver.posts == [] and receiver.bad_signatures == 7
    with Session(engine) as session:
        hook = session.get(Webhook, hook_id)
        assert hook is not None and not hook.enabled
        assert hook.disabled_reason is not None and "HTTP 401" in hook.disabled_reason
    rows = _webhook_rows(engine)
    assert {r.status for r in rows} == {OutboxStatus.FAILED.value}  # turned off: given up, logged
    assert all(
        "turned off" in (r.last_error or "") or "HTTP 401" in (r.last_error or "") for r in rows
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(min_size=0, max_size=120),
    url=st.one_of(
        st.text(max_size=50),
        st.just("ftp://x"),
        st.just("http://"),
        st.just("https://h/" + "a" * 2100),
    ),
)
def test_bad_webhook_settings_name_the_field(engine: Engine, name: str, url: str) -> None:
    with Session(engine) as session:
        try:
            hook, secret = notifications.create_webhook(session, name=name, url=url, now=T0)
        except NotificationError as exc:
            assert exc.field in {"name", "url"} and str(exc).startswith(exc.field + ":")
            return
        assert secret.startswith("whsec_") and hook.id is not None  # rolled back on close
    assert name.strip() and "\x00" not in name and url.startswith(("http://", "https://"))
