"""The outbox's promises where they are at risk: a message is written with the event that
causes it (and only once however often the event arrives), and a sending worker SIGKILLed
loses nothing and repeats at most the one message it had in hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.auth import create_user
from hub.billing_store import BillingAccount, top_up
from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import (
    DeadLetter,
    Downtime,
    Machine,
    Member,
    Notification,
    OutboxStatus,
    Role,
    Training,
    User,
)
from hub.services import notification_preferences as prefs
from hub.services import notifications
from hub.services.maintenance.tasks import add_task
from hub.services.member_data import erase_member
from hub.services.notification_watch import look, stale_lists
from hub.services.notifications import create_webhook
from protocol import EventType, encode_envelope, new_envelope
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import wait_until
from tests.support.smtp import Recorder, start_smtp

T0 = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
TOPIC = "atelier/v1/lab/printer-1/event"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    yield engine
    engine.dispose()


def _member(engine: Engine) -> Member:
    with Session(engine) as session:
        return session.exec(select(Member).where(col(Member.email).is_not(None))).first()  # type: ignore[return-value]


def _event(seq: int, type: EventType, minutes: float, **data: object) -> bytes:
    at = T0 + timedelta(minutes=minutes)
    return encode_envelope(
        new_envelope(machine="printer-1", type=type, seq=seq, data=data, now=lambda: at)
    )


def _outbox(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(session.exec(select(Notification).order_by(col(Notification.kind))).all())


def test_a_print_ending_is_written_with_its_event_and_only_once(engine: Engine) -> None:
    member = _member(engine)
    writer = IngestWriter(engine)
    events = [
        _event(1, EventType.SESSION_STARTED, 0, session_id="s1", member=member.ref, badge="04A1"),
        _event(2, EventType.JOB_STARTED, 1, job_id="42", file="bracket.gcode", session_id="s1"),
        _event(3, EventType.JOB_FAILED, 30, job_id="42", duration_s=1740, error="thermal runaway"),
        _event(4, EventType.JOB_STARTED, 31, job_id="43", file="clip.gcode", session_id="s1"),
        _event(5, EventType.JOB_FAILED, 32, job_id="43", duration_s=60, error="cancelled"),
        _event(6, EventType.JOB_STARTED, 33, job_id="44", file="hook.gcode", session_id="s1"),
        _event(7, EventType.JOB_FINISHED, 93, job_id="44", duration_s=3600, session_id="s1"),
    ]
    writer.write_batch([Incoming(TOPIC, p) for p in events[:3]])
    writer.write_batch([Incoming(TOPIC, p) for p in events[2:]])  # job 42's end again
    writer.write_batch([Incoming(TOPIC, events[2])])  # and once more, alone
    rows = _outbox(engine)
    assert [(r.kind, r.params["file"]) for r in rows] == [
        ("print.cancelled", "clip.gcode"),
        ("print.failed", "bracket.gcode"),
        ("print.finished", "hook.gcode"),
    ]
    assert {r.recipient for r in rows} == {member.email}
    assert (
        rows[1].params["machine"] == "Prusa MK4 #1" and rows[1].params["error"] == "thermal runaway"
    )
    assert all(r.status == OutboxStatus.PENDING.value for r in rows)


def test_a_print_of_nobody_known_makes_no_message(engine: Engine) -> None:
    writer = IngestWriter(engine)
    writer.write_batch(
        [
            Incoming(TOPIC, _event(1, EventType.JOB_STARTED, 0, job_id="9", file="x.gcode")),
            Incoming(TOPIC, _event(2, EventType.JOB_FINISHED, 5, job_id="9", duration_s=300)),
            Incoming(
                TOPIC,
                _event(3, EventType.JOB_FINISHED, 6, job_id="10", duration_s=1, member="m-nobody"),
            ),
        ]
    )
    assert _outbox(engine) == []


@pytest.mark.slow
def test_a_hub_killed_while_sending_loses_nothing_and_repeats_at_most_its_message(
    engine: Engine, database_url: str, tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    recorder = Recorder()
    recorder.delay_s = 0.4  # each DATA takes a while: the kill lands inside one
    controller = start_smtp(recorder)
    count = 12
    with Session(engine) as session:
        ids = []
        for i in range(count):
            note = notifications.enqueue(
                session,
                cause=f"kill-test:{i}",
                channel="email",
                recipient=f"member{i}@example.org",
                kind="test",
                params={"lab": "Fablab"},
                now=datetime.now(UTC),
            )
            assert note is not None
            ids.append(note.id)
        session.commit()
    settings = HubSettings(
        data_dir=tmp_path / "hub",
        database_url=database_url,
        site="lab",
        broker=mosquitto,
        extra_env={
            "ATELIER_SMTP_HOST": "127.0.0.1",
            "ATELIER_SMTP_PORT": str(controller.port),
            "ATELIER_SMTP_SECURITY": "none",
            "ATELIER_NOTIFY_LEASE_S": "2",
            "ATELIER_NOTIFY_POLL_S": "0.2",
        },
    )
    try:
        first = start_hub(settings, log=tmp_path / "hub1.log")
        try:
            recorder.wait_for(3, timeout_s=60)
            recorder.in_data.clear()
            assert recorder.in_data.wait(timeout=20), first.output()
            first.kill()  # SIGKILL in the middle of an SMTP DATA exchange
        finally:
            first.stop()
        with Session(engine) as session:
            in_hand = session.exec(
                select(Notification).where(Notification.status == OutboxStatus.SENDING.value)
            ).all()
        assert len(in_hand) == 1  # the one message the dead hub held
        second = start_hub(settings, log=tmp_path / "hub2.log")
        try:

            def all_sent() -> bool:
                with Session(engine) as session:
                    return all(
                        r.status == OutboxStatus.SENT.value
                        for r in session.exec(select(Notification))
                    )

            wait_until(all_sent, timeout=90, what="every message sent", proc=second)
        finally:
            second.stop()
    finally:
        controller.stop()
    received = recorder.ids()
    assert set(received) == set(ids)  # nothing lost
    # What the SMTP server acknowledged and the hub recorded is never sent again; only the
    # message in the dead hub's hands may arrive twice (same Message-ID: see the docs).
    repeated = [i for i in set(received) if received.count(i) > 1]
    assert len(received) - count == len(repeated) <= 1
    if repeated:
        assert repeated[0] in {n.id for n in in_hand}


def _staff_login(engine: Engine, role: Role, email: str, username: str) -> int:
    with Session(engine) as session:
        member = session.exec(select(Member).where(Member.email == email)).one()
        user = create_user(
            session, username=username, password="correct horse battery", role=role, member=member
        )
        session.commit()
        assert user.id is not None
        return user.id


def test_an_incident_tells_the_staff_who_want_it_and_a_member_may_say_no(engine: Engine) -> None:
    member = _member(engine)
    with Session(engine) as session:
        staff = session.exec(
            select(Member).where(Member.email != member.email, col(Member.email).is_not(None))
        ).all()
    first = _staff_login(engine, Role.MAINTAINER, staff[0].email or "", "maint")
    _staff_login(engine, Role.MANAGER, staff[1].email or "", "boss")
    member_login = _staff_login(engine, Role.MEMBER, member.email or "", "member")
    with Session(engine) as session:
        prefs.set_preference(
            session,
            user=session.get(User, first),
            kind="incident.opened",
            channel="email",
            enabled=False,
        )  # type: ignore[arg-type]
        prefs.set_preference(
            session,
            user=session.get(User, member_login),
            kind="print.finished",
            channel="email",
            enabled=False,
        )  # type: ignore[arg-type]
        session.commit()
    writer = IngestWriter(engine)
    writer.write_batch(
        [
            Incoming(
                TOPIC, _event(1, EventType.INCIDENT_REPORTED, 0, source="button", note="smoke")
            ),
            Incoming(
                TOPIC,
                _event(
                    2, EventType.INCIDENT_REPORTED, 1, source="octoprint", kind="printer-online"
                ),
            ),
            Incoming(
                TOPIC,
                _event(3, EventType.JOB_FINISHED, 2, job_id="1", duration_s=9, member=member.ref),
            ),
            Incoming(
                TOPIC,
                _event(
                    4,
                    EventType.JOB_FAILED,
                    3,
                    job_id="2",
                    duration_s=9,
                    member=member.ref,
                    error="x",
                ),
            ),
        ]
    )
    rows = _outbox(engine)
    assert [(r.kind, r.recipient) for r in rows] == [
        ("incident.opened", staff[1].email),  # the maintainer said no, the manager did not
        ("print.failed", member.email),  # the member turned finished prints off, not failures
    ]
    assert rows[0].params["note"] == "smoke" and rows[0].params["machine"] == "Prusa MK4 #1"
    with Session(engine) as session:  # the lab turns failures off: the member had not chosen
        prefs.set_default(session, kind="print.failed", channel="email", enabled=False)
        session.commit()
        assert not prefs.wants(session, user_id=member_login, kind="print.failed", channel="email")
        assert not prefs.wants(
            session, user_id=member_login, kind="print.finished", channel="email"
        )
        assert prefs.wants(session, user_id=first, kind="print.finished", channel="email")


def test_an_erased_member_is_no_longer_in_the_outbox(engine: Engine) -> None:
    member = _member(engine)
    with Session(engine) as session:
        create_webhook(
            session, name="bot", url="https://bot.example.org/", personal_data=True, now=T0
        )
        session.commit()
    IngestWriter(engine).write_batch(
        [
            Incoming(
                TOPIC,
                _event(1, EventType.JOB_FAILED, 0, job_id="7", duration_s=5, member=member.ref),
            )
        ]
    )
    assert {r.channel for r in _outbox(engine)} == {"email", "webhook"}
    with Session(engine) as session:
        counts = erase_member(session, session.get(Member, member.id))  # type: ignore[arg-type]
        session.commit()
    [left] = _outbox(engine)
    assert counts["notifications"] == 2 and left.channel == "webhook"
    assert "member" not in left.params and "file" not in left.params
    assert member.email not in str(left.model_dump()) and member.ref not in str(left.params)


def test_an_idle_timeout_tells_the_member(engine: Engine) -> None:
    member = _member(engine)
    IngestWriter(engine).write_batch(
        [
            Incoming(
                TOPIC,
                _event(
                    1,
                    EventType.SESSION_STARTED,
                    0,
                    session_id="s9",
                    member=member.ref,
                    badge="04A1",
                ),
            ),
            Incoming(
                TOPIC,
                _event(
                    2,
                    EventType.SESSION_ENDED,
                    20,
                    session_id="s9",
                    member=member.ref,
                    reason="idle-timeout",
                    duration_s=1200,
                ),
            ),
            Incoming(
                TOPIC,
                _event(
                    3,
                    EventType.SESSION_STARTED,
                    21,
                    session_id="s10",
                    member=member.ref,
                    badge="04A1",
                ),
            ),
            Incoming(
                TOPIC,
                _event(
                    4,
                    EventType.SESSION_ENDED,
                    25,
                    session_id="s10",
                    member=member.ref,
                    reason="badge-out",
                    duration_s=240,
                ),
            ),
        ]
    )
    [row] = _outbox(engine)
    assert row.kind == "session.idle_ended" and row.recipient == member.email
    assert row.params["duration_s"] == 1200


def test_the_watch_tells_once_what_no_event_says(engine: Engine) -> None:
    now = datetime.now(UTC)
    member = _member(engine)
    with Session(engine) as session:
        staff = session.exec(
            select(Member).where(Member.email != member.email, col(Member.email).is_not(None))
        ).first()
        assert staff is not None and staff.email
    _staff_login(engine, Role.MAINTAINER, staff.email, "maint")
    with Session(engine) as session:
        trainings = session.exec(select(Training).where(Training.member_id == member.id)).all()
        trainings[0].expires_at = now + timedelta(days=10)
        for other in trainings[1:]:
            other.expires_at = now + timedelta(days=40)  # not yet
        session.add_all(trainings)
        for training in session.exec(select(Training).where(Training.member_id != member.id)):
            training.expires_at = None
            session.add(training)
        machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        machine.online, machine.last_seen = False, now - timedelta(hours=2)
        session.add(machine)
        add_task(session, title="Clean the lens", actor="test", machine="laser-1", every_days=1)
        cnc = session.exec(select(Machine).where(Machine.code == "cnc-1")).one()
        session.add(
            Downtime(machine_id=cnc.id, started_at=now - timedelta(hours=3), reason="spindle noise")
        )
        for _ in range(5):
            session.add(
                DeadLetter(
                    topic="x", payload=b"\x00", reason="bad_json", detail="", received_at=now
                )
            )
        session.commit()
    kinds = lambda: sorted((r.kind, r.recipient) for r in _outbox(engine))  # noqa: E731
    with Session(engine) as session:
        made = look(session, now=now, offline_after_s=1800, dead_letters_per_hour=5)
        session.commit()
    assert kinds() == [
        ("dead_letters.rising", staff.email),
        ("machine.locked", staff.email),
        ("machine.offline", staff.email),
        ("training.expiring", member.email),
    ]
    assert made == 4
    with Session(engine) as session:  # the next look: the same causes, nothing new
        assert (
            look(
                session,
                now=now + timedelta(minutes=5),
                offline_after_s=1800,
                dead_letters_per_hour=5,
            )
            == 0
        )
        session.commit()
    assert len(_outbox(engine)) == 4
    with Session(engine) as session:  # three days on, the daily cleaning is overdue
        later = look(
            session, now=now + timedelta(days=3), offline_after_s=1800, dead_letters_per_hour=5
        )
        session.commit()
    assert later == 1 and ("maintenance.overdue", staff.email) in kinds()
    with Session(engine) as session:  # the allow-list watch's finding, once per list version
        assert stale_lists(session, machine_codes=["laser-1"], now=now) == 1
        assert stale_lists(session, machine_codes=["laser-1"], now=now) == 0
        session.commit()
    assert ("allowlist.stale", staff.email) in kinds()


def test_a_prepaid_balance_running_low_then_empty_is_told_once_each_until_a_top_up(
    engine: Engine,
) -> None:
    member = _member(engine)
    now = datetime.now(UTC)

    def look_now() -> int:
        with Session(engine) as session:
            made = look(
                session,
                now=now,
                offline_after_s=10**6,
                dead_letters_per_hour=10**6,
                low_balance_cents=500,
            )
            session.commit()
            return made

    def balance_kinds() -> list[str]:
        return [r.kind for r in _outbox(engine) if r.kind.startswith("balance.")]

    with Session(engine) as session:
        account = top_up(session, session.get(Member, member.id), 2000, actor="test")  # type: ignore[arg-type]
        session.commit()
    assert look_now() == 0 and balance_kinds() == []  # 20.00: plenty
    for cents, expected in (
        (300, ["balance.low"]),
        (250, ["balance.low"]),
        (0, ["balance.empty", "balance.low"]),
    ):
        with Session(engine) as session:
            account = session.get(BillingAccount, member.id)
            assert account is not None
            account.balance_cents = cents
            session.add(account)
            session.commit()
        look_now()
        assert sorted(balance_kinds()) == expected
    with Session(engine) as session:  # topped up, then low again: told again
        top_up(session, session.get(Member, member.id), 100, actor="test")  # type: ignore[arg-type]
        session.commit()
    look_now()
    assert sorted(balance_kinds()) == ["balance.empty", "balance.low", "balance.low"]
    low = [r for r in _outbox(engine) if r.kind == "balance.low"]
    assert {r.params["balance"] for r in low} == {"3.00", "1.00"} and {
        r.recipient for r in low
    } == {member.email}
