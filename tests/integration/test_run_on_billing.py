"""Issue 21 item 5 through the hub: busy time that outlives its session, and a job the printer
went offline under, stored by the real ingest from the agent's events and billed by the close,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.core.errors import InvalidValue, NotFound
from hub.domain.billing import OFFLINE_JOB_CHOICES
from hub.ingest.writer import Incoming, IngestWriter
from hub.models import DeadLetter, MachineType, PrintJob
from hub.services.billing import close_month, lines_of, month_statements, set_offline_jobs
from protocol.envelope import EventType
from tests.integration.test_billing_store import billing, cli_env, example_lab  # noqa: F401

PARIS = ZoneInfo("Europe/Paris")
AFTER_NOVEMBER = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
TOPIC = "atelier/v1/lab/printer-1/event"


def paris(d: int, h: int, mi: int = 0) -> datetime:
    return datetime(2026, 11, d, h, mi, tzinfo=PARIS)


class Agent:
    """What printer-1's agent sends, as envelopes with its own sequence."""

    def __init__(self) -> None:
        self.seq = 100
        self.sent: list[Incoming] = []

    def __call__(self, at: datetime, kind: EventType, **data: object) -> None:
        self.seq += 1
        envelope = {
            "v": 1,
            "id": str(uuid.uuid4()),
            "seq": self.seq,
            "ts": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "machine": "printer-1",
            "type": kind.value,
            "data": data,
        }
        self.sent.append(Incoming(TOPIC, json.dumps(envelope).encode()))


def november_prints(agent: Agent) -> None:
    """bruno (student, printer at 1,00 €/h of busy time) leaves two prints running:
    N1 runs 6 hours after his 15-minute session and finishes; N2 runs 2 hours after a
    10-minute session and is lost with the printer, last seen printing 30 minutes in.
    chloe badges in during N1's print and prints nothing herself."""
    # N1
    agent(paris(10, 10), EventType.SESSION_STARTED, session_id="N1", member="bruno", badge="B1")
    agent(paris(10, 10, 5), EventType.JOB_STARTED, job_id="j1", session_id="N1", member="bruno")
    agent(paris(10, 10, 5), EventType.MACHINE_BUSY, source="octoprint", session_id="N1")
    agent(
        paris(10, 10, 15),
        EventType.SESSION_ENDED,
        session_id="N1",
        member="bruno",
        reason="badge-out",
        duration_s=900,
        busy_s=600,
        energy_kwh=0.25,
    )
    # chloe's session while N1's print runs on: the agent counts none of it for her.
    agent(paris(10, 12), EventType.SESSION_STARTED, session_id="N3", member="chloe", badge="C1")
    agent(
        paris(10, 12, 30),
        EventType.SESSION_ENDED,
        session_id="N3",
        member="chloe",
        reason="badge-out",
        duration_s=1800,
        busy_s=0,
    )
    agent(
        paris(10, 16, 5),
        EventType.JOB_FINISHED,
        job_id="j1",
        session_id="N1",
        member="bruno",
        duration_s=6 * 3600,
        reason="completed",
        printing_seen_s=6 * 3600,
    )
    agent(paris(10, 16, 5), EventType.MACHINE_IDLE, source="octoprint", busy_s=6 * 3600,
          session_id="N1", energy_kwh=1.5, run_on_energy_kwh=1.3)  # fmt: skip
    # N2
    agent(paris(12, 10), EventType.SESSION_STARTED, session_id="N2", member="bruno", badge="B1")
    agent(paris(12, 10, 1), EventType.JOB_STARTED, job_id="j2", session_id="N2", member="bruno")
    agent(paris(12, 10, 1), EventType.MACHINE_BUSY, source="octoprint", session_id="N2")
    agent(
        paris(12, 10, 10),
        EventType.SESSION_ENDED,
        session_id="N2",
        member="bruno",
        reason="badge-out",
        duration_s=600,
        busy_s=540,
    )
    agent(
        paris(12, 12, 1),
        EventType.JOB_FAILED,
        job_id="j2",
        session_id="N2",
        member="bruno",
        duration_s=7200,
        error="printer-offline",
        reason="printer-offline",
        printing_seen_s=1800,
    )
    agent(paris(12, 12, 1), EventType.MACHINE_IDLE, source="octoprint", busy_s=7200,
          session_id="N2")  # fmt: skip


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        example_lab(session)
    agent = Agent()
    november_prints(agent)
    writer = IngestWriter(engine)
    writer.write_batch(agent.sent)
    assert writer.stats.dead_letters == 0 and writer.stats.stored == len(agent.sent)
    yield engine
    engine.dispose()


def november_lines(engine: Engine) -> dict[str, tuple[int, int, str]]:
    with Session(engine) as session:
        close_month(session, "2026-11", tz=PARIS, now=AFTER_NOVEMBER, actor="test")
        session.commit()
        return {
            line.session_id: (line.billed_minutes, line.cents, line.explanation)
            for statement in month_statements(session, "2026-11")
            for line in lines_of(session, statement)
        }


def test_a_print_left_running_is_billed_whole_to_who_started_it(lab: Engine) -> None:
    with Session(lab) as session:
        job = session.get(PrintJob, "printer-1:j2")
        assert job is not None
        assert job.end_reason == "printer-offline" and job.state == "failed"
        assert job.printing_seen_s == 1800
        assert session.exec(select(MachineType.offline_jobs)).all() == ["whole", "whole"]
    lines = november_lines(lab)
    # 6 hours of busy time after a 15-minute session: all of it, on the busy rate.
    assert lines["N1"] == (360, 600, "360 min of busy time on 2026-11-10 at 1,00 €/h")
    assert lines["N3"] == (0, 0, "Nothing to bill: no busy time")  # not N1's print again
    assert lines["N2"][:2] == (120, 200)  # the lab bills offline jobs whole by default


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("whole", (120, 200, "120 min of busy time on 2026-11-12 at 1,00 €/h")),
        ("until-offline", (30, 50, "30 min of busy time on 2026-11-12 at 1,00 €/h")),
        ("free", (0, 0, "Nothing to bill: no busy time")),
    ],
)
def test_the_lab_chooses_how_a_job_lost_with_the_printer_is_billed(
    lab: Engine, choice: str, expected: tuple[int, int, str]
) -> None:
    with Session(lab) as session:
        assert (
            set_offline_jobs(session, machine_type="printer", choice=choice, actor="t") == "whole"
        )
        session.commit()
    lines = november_lines(lab)
    assert lines["N2"] == expected
    assert lines["N1"][:2] == (360, 600)  # a finished job is never touched by the choice


def test_the_choice_refuses_what_it_does_not_know(lab: Engine) -> None:
    with Session(lab) as session:
        with pytest.raises(InvalidValue) as bad:
            set_offline_jobs(session, machine_type="printer", choice="half", actor="t")
        assert bad.value.field == "offline_jobs"
        with pytest.raises(NotFound) as unknown:
            set_offline_jobs(session, machine_type="kiln", choice="free", actor="t")
        assert unknown.value.field == "machine_type"


def test_cli_sets_the_choice_and_refuses_a_bad_one_naming_the_flag(
    cli_env: str,  # noqa: F811 - the fixture imported above
) -> None:
    code, output = billing("offline-jobs", "--machine-type", "printer", "--bill", "half")
    assert code == 2 and "--bill:" in output and "whole, until-offline, free" in output
    assert "Traceback" not in output
    code, output = billing("offline-jobs", "--machine-type", "kiln", "--bill", "free")
    assert code == 2 and "--machine-type:" in output
    code, output = billing("offline-jobs", "--machine-type", "printer", "--bill", "Until-Offline")
    assert code == 0, output
    assert "billed until-offline (was whole)" in output


HOSTILE_TEXT = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["", " ", "\x00", "free\x00", "whole" * 1000, "FREE", "until_offline"]),
    st.text(min_size=1000, max_size=5000),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(choice=HOSTILE_TEXT)
def test_hostile_choices_are_refused_or_kept_as_one_of_the_three(lab: Engine, choice: str) -> None:
    with Session(lab) as session:
        try:
            set_offline_jobs(session, machine_type="printer", choice=choice, actor="t")
        except InvalidValue as error:
            assert error.field == "offline_jobs"
            session.rollback()
        else:
            session.commit()
        stored = session.exec(
            select(MachineType.offline_jobs).where(MachineType.code == "printer")
        ).one()
    assert stored in OFFLINE_JOB_CHOICES


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e300, -0.0, 2**63, float("nan"), float("inf")]),
    st.integers(min_value=-(2**70), max_value=2**70),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seen=NUMBERS,
    duration=NUMBERS,
    reason=st.one_of(st.none(), HOSTILE_TEXT),
)
def test_a_job_end_with_hostile_fields_is_stored_sane_or_dead_lettered(
    lab: Engine, seen: float, duration: float, reason: str | None
) -> None:
    job_id = uuid.uuid4().hex
    body = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "seq": 5000,
        "ts": "2026-11-20T10:00:00Z",
        "machine": "printer-1",
        "type": "job.failed",
        "data": {
            "job_id": job_id,
            "duration_s": duration,
            "printing_seen_s": seen,
            "reason": reason,
            "session_id": "N1",
        },
    }
    try:
        payload = json.dumps(body, allow_nan=True).encode()
    except ValueError:
        return  # not JSON at all: the envelope fuzz covers bytes
    writer = IngestWriter(lab)
    writer.write_batch([Incoming(TOPIC, payload)])
    assert writer.stats.stored + writer.stats.dead_letters == 1
    with Session(lab) as session:
        job = session.get(PrintJob, f"printer-1:{job_id}")
        if writer.stats.dead_letters:
            assert job is None
            assert session.exec(select(DeadLetter)).first() is not None
            return
        assert job is not None and job.duration_s is not None
        assert job.end_reason is None or (
            len(job.end_reason) <= 40 and "\x00" not in job.end_reason
        )
        if job.printing_seen_s is not None:
            assert math.isfinite(job.printing_seen_s)
            assert 0 <= job.printing_seen_s <= job.duration_s
