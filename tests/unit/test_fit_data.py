"""What comes from outside the agent (a printer's file name, a plug's reading) is journaled cut
to the protocol's limits, never dropped: the hub then takes the event as it takes any other."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.journal import Journal
from protocol import limits
from protocol.envelope import EventType, decode_envelope, fit_data
from protocol.messages import Telemetry

# Text a printer or a plug may hand over: NUL, lone surrogates, far longer than any column.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(["\x00", "\ud800", "é", "a", "\udfff", "😀"]), max_size=60),
    st.integers(min_value=limits.TEXT_MAX_CHARS - 2, max_value=3 * limits.TEXT_MAX_CHARS).map(
        lambda n: "x" * n
    ),
)
hostile_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 1e300, limits.DURATION_MAX_S + 1]),
    st.integers(min_value=-(2**70), max_value=2**70),
)
# A duration the agent measured on its own clock is finite; its edges are clamped.
measured = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-1.0, 0.0, 1e300, limits.DURATION_MAX_S, limits.DURATION_MAX_S + 1]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)

outside_data = st.one_of(
    st.fixed_dictionaries(
        {"job_id": st.just("job-1"), "file": hostile_text, "extra": hostile_text}
    ).map(lambda d: (EventType.JOB_STARTED, d)),
    st.fixed_dictionaries(
        {"job_id": st.just("job-1"), "duration_s": measured, "error": hostile_text}
    ).map(lambda d: (EventType.JOB_FAILED, d)),
    st.fixed_dictionaries({"source": st.just("button"), "note": hostile_text}).map(
        lambda d: (EventType.INCIDENT_REPORTED, d)
    ),
    st.fixed_dictionaries({"reason": hostile_text}).map(lambda d: (EventType.MACHINE_LOCKED, d)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outside_data)
def test_an_event_with_outside_values_is_journaled_fitted_and_the_hub_takes_it(
    case: tuple[EventType, dict[str, Any]],
) -> None:
    event_type, data = case
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "j.sqlite3", "laser-1")
        try:
            env = journal.append(event_type, dict(data))
            ((_, payload),) = [(seq, p) for seq, p in journal.unsent()]
        finally:
            journal.close()
    taken = decode_envelope(payload)  # what the hub's ingest runs
    assert taken.id == env.id and taken.type is event_type
    for key, value in taken.data.items():
        if isinstance(value, str):
            assert "\x00" not in value and len(value) <= limits.TEXT_MAX_CHARS, key


def test_fit_data_cuts_each_field_to_its_own_column() -> None:
    fitted = fit_data(EventType.JOB_STARTED, {"job_id": "j" * 500, "file": "f" * 9000})
    assert len(fitted["job_id"]) == limits.JOB_ID_MAX_CHARS
    assert len(fitted["file"]) == limits.TEXT_MAX_CHARS
    fitted = fit_data(EventType.JOB_FAILED, {"job_id": "j", "duration_s": 1e12})
    assert fitted["duration_s"] == limits.DURATION_MAX_S


def test_what_the_agent_itself_got_wrong_still_raises() -> None:
    with pytest.raises(ValidationError):
        fit_data(EventType.JOB_FAILED, {"job_id": "j"})  # no duration: a bug, not a size
    with pytest.raises(ValidationError):
        fit_data(EventType.JOB_FAILED, {"job_id": "j", "duration_s": math.nan})


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        hostile_text,
        st.one_of(hostile_number, hostile_text, st.booleans(), st.none()),
        max_size=6,
    )
)
def test_any_reading_fits_a_telemetry_sample(values: dict[str, Any]) -> None:
    sample = Telemetry(machine="laser-1", ts="2026-12-07T10:00:00Z", values=limits.fit_json(values))
    assert len(sample.encode()) > 0
