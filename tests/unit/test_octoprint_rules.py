"""The OctoPrint watcher's rules, from one poll to the next, without OctoPrint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from edge.config import ConfigError, section
from edge.integrations.octoprint import (
    Emit,
    Enforce,
    OctoPrintOptions,
    Poll,
    SessionInfo,
    WatchState,
    parse_poll,
    step,
    telemetry_values,
)
from protocol.envelope import DATA_MODELS, EventType

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ALICE = SessionInfo(session_id="s-1", member="m-alice")
IDLE = Poll(online=True, state="Operational")
OFFLINE = Poll(online=False, reason="ConnectionError: refused")


def printing(completion: float = 10.0, file: str = "cube.gcode") -> Poll:
    return Poll(online=True, state="Printing", printing=True, file=file, completion=completion)


def paused(file: str = "cube.gcode") -> Poll:
    return Poll(online=True, state="Paused", paused=True, file=file, completion=10.0)


class Run:
    """Feeds polls through step() and keeps what came out."""

    def __init__(self, policy: Any = "pause") -> None:
        self.state = WatchState()
        self.policy = policy
        self.ids = count(1)
        self.now = T0

    def __call__(
        self, poll: Poll, session: SessionInfo | None = None, after_s: float = 2
    ) -> list[Emit | Enforce]:
        self.now += timedelta(seconds=after_s)
        self.state, actions = step(
            self.state,
            poll,
            session,
            self.now,
            policy=self.policy,
            new_job_id=lambda: f"job-{next(self.ids)}",
        )
        for action in actions:
            if isinstance(action, Emit):
                DATA_MODELS[action.type].model_validate(action.data)
        return actions


def types(actions: list[Emit | Enforce]) -> list[Any]:
    return [a.type if isinstance(a, Emit) else a for a in actions]


def test_a_print_under_a_session_starts_and_finishes_billed_to_its_member() -> None:
    run = Run()
    assert run(IDLE, ALICE) == []
    started = run(printing(5), ALICE)
    assert types(started) == [EventType.JOB_STARTED, EventType.MACHINE_BUSY]
    assert started[0].data == {  # type: ignore[union-attr]
        "job_id": "job-1",
        "file": "cube.gcode",
        "session_id": "s-1",
        "member": "m-alice",
    }
    assert run(printing(50), None) == []  # badge out mid-print: nothing to enforce
    ended = run(Poll(online=True, state="Operational", completion=100.0), None, after_s=10)
    assert types(ended) == [EventType.JOB_FINISHED, EventType.MACHINE_IDLE]
    data = ended[0].data  # type: ignore[union-attr]
    assert data["member"] == "m-alice" and data["session_id"] == "s-1"
    assert data["duration_s"] == 12 and data["error"] is None
    assert ended[1].data == {"source": "octoprint", "busy_s": 12, "session_id": "s-1"}  # type: ignore[union-attr]
    assert run.state.job is None


def test_a_print_that_stops_short_of_100_percent_fails_with_the_reason() -> None:
    run = Run()
    run(printing(5), ALICE)
    assert types(run(Poll(online=True, state="Operational", completion=40.0))) == [
        EventType.JOB_FAILED,
        EventType.MACHINE_IDLE,
    ]
    run(printing(5), ALICE)
    failed = run(Poll(online=True, state="Error", error="Thermal runaway"))
    assert failed[0].data["error"] == "Thermal runaway"  # type: ignore[union-attr]
    assert failed[0].data["job_id"] == "job-2"  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", ["pause", "cancel"])
def test_a_print_with_no_session_is_stopped_and_reported(policy: str) -> None:
    run = Run(policy)
    actions = run(printing(1))
    assert types(actions) == [
        EventType.JOB_STARTED,
        EventType.MACHINE_BUSY,
        Enforce(policy),  # type: ignore[arg-type]
        EventType.INCIDENT_REPORTED,
    ]
    incident = actions[3].data  # type: ignore[union-attr]
    assert incident["kind"] == "no-session" and incident["action"] == policy
    # The next poll, before OctoPrint has acted: not enforced or reported twice.
    assert run(printing(1)) == []


def test_a_cancelled_no_session_print_fails_as_no_session() -> None:
    run = Run("cancel")
    run(printing(1))
    run(Poll(online=True, state="Cancelling", printing=True, file="cube.gcode", completion=1.0))
    ended = run(Poll(online=True, state="Operational", completion=1.0))
    assert types(ended) == [EventType.JOB_FAILED, EventType.MACHINE_IDLE]
    assert ended[0].data["error"] == "no-session"  # type: ignore[union-attr]


def test_a_paused_no_session_print_is_paused_again_unless_a_member_resumes_it() -> None:
    run = Run("pause")
    run(printing(1))
    assert run(paused()) == []
    again = run(printing(2))  # resumed with nobody badged in
    assert Enforce("pause") in again
    run(paused())
    assert run(printing(3), ALICE) == []  # resumed by a member: the job is theirs now
    ended = run(Poll(online=True, state="Operational", completion=100.0), None)
    assert ended[0].data["member"] == "m-alice"  # type: ignore[union-attr]


def test_octoprint_going_offline_is_reported_once_and_keeps_the_job() -> None:
    run = Run()
    run(printing(30), ALICE)
    offline = run(OFFLINE)
    assert types(offline) == [EventType.INCIDENT_REPORTED]
    assert offline[0].data["kind"] == "printer-offline"  # type: ignore[union-attr]
    assert run(OFFLINE) == []
    assert run.state.job is not None and run.state.online is False
    back = run(printing(60), ALICE)
    assert types(back) == [EventType.INCIDENT_REPORTED]
    assert back[0].data["kind"] == "printer-online"  # type: ignore[union-attr]
    assert run.state.job is not None and run.state.job.job_id == "job-1"


def test_a_job_lost_while_octoprint_was_unreachable_ends_as_printer_offline() -> None:
    # Issue 21 item 5: not "cancelled" (nobody cancelled it); the hub bills it as the lab chose.
    run = Run()
    run(printing(10), ALICE, after_s=0)  # started at T0
    run(printing(30), ALICE, after_s=60)  # last seen printing at T0 + 60 s
    run(OFFLINE, None, after_s=60)
    ended = run(Poll(online=True, state="Operational"), None, after_s=600)
    assert types(ended) == [
        EventType.INCIDENT_REPORTED,
        EventType.JOB_FAILED,
        EventType.MACHINE_IDLE,
    ]
    data = ended[1].data  # type: ignore[union-attr]
    assert data["reason"] == "printer-offline" and data["error"] == "printer-offline"
    assert data["duration_s"] == 720 and data["printing_seen_s"] == 60
    assert data["session_id"] == "s-1" and data["member"] == "m-alice"


@pytest.mark.parametrize("state", ["Offline", "Offline after error", "Closed"])
def test_a_printer_dropping_off_octoprints_serial_link_ends_the_job_as_printer_offline(
    state: str,
) -> None:
    run = Run()
    run(printing(10), ALICE, after_s=0)
    run(printing(20), ALICE, after_s=30)
    gone = parse_poll({"state": state, "job": {}, "progress": {}}, None)
    assert not gone.connected
    ended = run(gone, None, after_s=5)
    assert types(ended) == [EventType.JOB_FAILED, EventType.MACHINE_IDLE]
    data = ended[0].data  # type: ignore[union-attr]
    assert data["reason"] == "printer-offline" and data["printing_seen_s"] == 30


def test_every_end_says_its_reason() -> None:
    run = Run("cancel")
    run(printing(5), ALICE)
    done = run(Poll(online=True, state="Operational", completion=100.0))
    assert done[0].data["reason"] == "completed"  # type: ignore[union-attr]
    run(printing(5), ALICE)
    stopped = run(Poll(online=True, state="Operational", completion=40.0))
    assert stopped[0].data["reason"] == "cancelled"  # type: ignore[union-attr]
    run(printing(5), ALICE)
    broke = run(Poll(online=True, state="Error", error="Thermal runaway"))
    assert broke[0].data["reason"] == "error"  # type: ignore[union-attr]
    run(printing(1))
    run(Poll(online=True, state="Cancelling", printing=True, file="cube.gcode", completion=1.0))
    refused = run(Poll(online=True, state="Operational", completion=1.0))
    assert refused[0].data["reason"] == "no-session"  # type: ignore[union-attr]


def test_offline_before_any_poll_is_still_reported() -> None:
    run = Run()
    assert types(run(OFFLINE)) == [EventType.INCIDENT_REPORTED]


def test_a_new_file_between_two_polls_closes_the_old_job() -> None:
    run = Run()
    run(printing(99.995, file="a.gcode"), ALICE)
    actions = run(printing(3, file="b.gcode"), ALICE)
    assert types(actions) == [
        EventType.JOB_FINISHED,
        EventType.MACHINE_IDLE,
        EventType.JOB_STARTED,
        EventType.MACHINE_BUSY,
    ]


def test_parse_poll_reads_octoprint_job_and_printer_documents() -> None:
    job = {
        "job": {"file": {"name": "cube.gcode", "path": "cube.gcode"}},
        "progress": {"completion": 42.5, "printTimeLeft": 120},
        "state": "Printing",
    }
    printer = {
        "state": {"text": "Printing", "flags": {"printing": True, "paused": False}, "error": ""},
        "temperature": {
            "tool0": {"actual": 204.8, "target": 205.0},
            "bed": {"actual": 59.9, "target": 60},
            "chamber": {"actual": 30.1, "target": None},
        },
    }
    poll = parse_poll(job, printer)
    assert poll.job_active and poll.file == "cube.gcode" and poll.completion == 42.5
    values = telemetry_values(poll, None)
    assert values["tool0_actual"] == 204.8 and values["bed_target"] == 60.0
    assert values["chamber_target"] is None and values["print_time_left_s"] == 120.0
    assert values["printer_online"] is True and values["state"] == "Printing"
    disconnected = parse_poll({"state": "Offline", "job": {}, "progress": {}}, None)
    assert not disconnected.job_active and disconnected.temperatures == {}
    assert telemetry_values(OFFLINE, None) == {"printer_online": False, "state": "Offline"}


def test_options_need_exactly_one_key_and_refuse_unknown_fields(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="exactly one of api_key or api_key_file"):
        section(OctoPrintOptions, url="http://127.0.0.1:5000")
    with pytest.raises(ConfigError, match="colour: unknown field"):
        section(OctoPrintOptions, url="http://127.0.0.1:5000", api_key="k", colour="red")
    with pytest.raises(ConfigError, match="no_session_policy"):
        section(OctoPrintOptions, url="http://x", api_key="k", no_session_policy="ignore")
    with pytest.raises(ValueError, match="exactly one of api_key"):
        OctoPrintOptions(url="http://x")  # the rule holds for a table built in code too
    key_file = tmp_path / "key"
    key_file.write_text("ABC\n")
    assert OctoPrintOptions(url="http://x", api_key_file=key_file).resolve_api_key() == "ABC"
    with pytest.raises(ValueError, match="api_key_file"):
        OctoPrintOptions(url="http://x", api_key_file=tmp_path / "missing").resolve_api_key()


class ScriptedOctoPrint:
    """Answers each poll with the next scripted Poll (the watcher's only OctoPrint seam)."""

    def __init__(self, polls: list[Poll]) -> None:
        self.polls = polls
        self.commands: list[str] = []

    def poll(self) -> Poll:
        return self.polls.pop(0)

    def pause(self) -> None:
        self.commands.append("pause")

    def cancel(self) -> None:
        self.commands.append("cancel")


def test_the_watcher_bounds_telemetry_and_enforces_through_the_client() -> None:
    from edge.integrations.octoprint import OctoPrintWatcher

    now = [T0]
    events: list[tuple[EventType, dict[str, Any]]] = []
    samples: list[dict[str, Any]] = []
    script = ScriptedOctoPrint(
        [IDLE, IDLE, IDLE, printing(1), printing(2), printing(3), OFFLINE, OFFLINE]
    )
    watcher = OctoPrintWatcher(
        OctoPrintOptions(url="http://127.0.0.1:5000", api_key="k", telemetry_min_interval_s=5),
        session_provider=lambda: None,
        emit_event=lambda kind, data: events.append((kind, data)),
        emit_telemetry=samples.append,
        clock=lambda: now[0],
        client=script,  # type: ignore[arg-type]
    )
    for _ in range(8):
        watcher.poll_once()
        now[0] += timedelta(seconds=2)
    # t=0 first sample, t=6 state change to Printing, t=12 offline; t=2,4,8,10,14 held back.
    assert [s["state"] for s in samples] == ["Operational", "Printing", "Offline"]
    assert script.commands == ["pause"]
    assert watcher.holds_power() and watcher.online is False
    assert [k for k, _ in events] == [
        EventType.JOB_STARTED,
        EventType.MACHINE_BUSY,
        EventType.INCIDENT_REPORTED,
        EventType.INCIDENT_REPORTED,
    ]
