"""Issue 21 item 3 at the machine: a plug's energy counter shared out between sessions and busy
periods, resets included (edge.domain.energy, edge.domain.session), and the plug formats."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.domain.access import Decision, decide
from edge.domain.energy import EnergyMeter
from edge.domain.session import Emit, SessionMachine, SessionRules
from edge.integrations.power_meter import parse_energy_total
from protocol.envelope import DATA_MODELS, EventType, fit_data
from tests.support.power_plug_sim import shelly_gen1_power, shelly_gen2_switch, tasmota_sensor
from tests.unit.test_session import LIST

T0 = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


def test_a_counter_reset_counts_what_the_plug_counted_since_zero() -> None:
    meter = EnergyMeter()
    for reading in (100.0, 100.25, 100.7, 0.0, 0.12, 0.3):
        meter = meter.read(reading)
    assert meter.total_kwh == pytest.approx(1.0) and meter.resets == 1
    # A reset caught after the plug had already counted again: that too is new energy.
    assert EnergyMeter().read(50.0).read(0.4).total_kwh == pytest.approx(0.4)


# Each segment: a counter that starts again from `start` (0 after a reset, anything for the
# first) and moves by the given non-negative steps (Wh resolution, as Tasmota reports).
segments = st.lists(
    st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=20),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(first=st.integers(min_value=0, max_value=10**9), runs=segments)
def test_the_total_is_the_sum_of_what_each_counter_run_moved(
    first: int, runs: list[list[int]]
) -> None:
    meter = EnergyMeter()
    moved_wh = 0
    for i, steps in enumerate(runs):
        counter = first if i == 0 else 0  # a reset starts again from zero
        meter = meter.read(counter / 1000)
        for step in steps:
            counter += step
            meter = meter.read(counter / 1000)
            moved_wh += step
    # Resets that land exactly on the last value count no reset, and lose nothing either.
    assert meter.total_kwh == pytest.approx(moved_wh / 1000, abs=1e-6)


def machine() -> SessionMachine:
    ids = itertools.count(1)
    return SessionMachine(SessionRules(), lambda: f"s{next(ids)}")


def tap(m: SessionMachine, badge: str, at: datetime, fit: bool = False) -> list[dict[str, object]]:
    def deciding(supervisor: bool, running: bool) -> Decision:
        return decide(badge, LIST, at, supervisor_present=supervisor, machine_running=running)

    out = []
    for action in m.badge(badge, at, deciding):
        if isinstance(action, Emit):
            # What the hub accepts; `fit`: as the journal makes a plug's value fit first.
            data = fit_data(action.type, action.data) if fit else action.data
            DATA_MODELS[action.type].model_validate(data)
            out.append({"type": action.type, **action.data})
    return out


def test_a_session_gets_the_kwh_between_its_start_and_end_across_a_reset() -> None:
    m = machine()
    m.energy_read(100.0)
    tap(m, "0000000A", T0)
    for reading in (100.25, 100.7, 0.0, 0.12, 0.3):
        m.energy_read(reading)
    ended = [
        e
        for e in tap(m, "0000000A", T0 + timedelta(hours=1))
        if e["type"] is EventType.SESSION_ENDED
    ]
    assert ended[0]["energy_kwh"] == pytest.approx(1.0)
    m.energy_read(0.9)  # between sessions: nobody's
    tap(m, "0000000B", T0 + timedelta(hours=2))
    m.energy_read(1.0)
    ended = [
        e
        for e in tap(m, "0000000B", T0 + timedelta(hours=3))
        if e["type"] is EventType.SESSION_ENDED
    ]
    assert ended[0]["energy_kwh"] == pytest.approx(0.1)


def test_no_plug_reading_no_energy_field() -> None:
    m = machine()
    tap(m, "0000000A", T0)
    ended = tap(m, "0000000A", T0 + timedelta(minutes=5))
    assert "energy_kwh" not in ended[0]


def test_a_first_reading_mid_session_meters_it_from_then_on() -> None:
    m = machine()
    tap(m, "0000000A", T0)
    m.energy_read(7.0)
    m.energy_read(7.5)
    ended = tap(m, "0000000A", T0 + timedelta(minutes=5))
    assert ended[0]["energy_kwh"] == pytest.approx(0.5)


def test_the_run_on_of_a_busy_period_is_its_sessions() -> None:
    # a starts a print (1.5 kWh in all), badges out after 0.5 kWh; the idle names s1 and
    # says 1 kWh of the print ran on after a left, across the plug restarting.
    m = machine()
    m.energy_read(10.0)
    tap(m, "0000000A", T0)
    m.busy_changed(True, T0 + timedelta(minutes=1), "power")
    m.energy_read(10.5)
    ended = tap(m, "0000000A", T0 + timedelta(minutes=10))
    assert ended[0]["energy_kwh"] == pytest.approx(0.5)
    m.energy_read(11.0)
    m.energy_read(0.5)  # the plug restarted mid-print
    actions = m.busy_changed(False, T0 + timedelta(hours=3), "power")
    idle = [a.data for a in actions if isinstance(a, Emit) and a.type is EventType.MACHINE_IDLE][0]
    DATA_MODELS[EventType.MACHINE_IDLE].model_validate(idle)
    assert idle["session_id"] == "s1"
    assert idle["energy_kwh"] == pytest.approx(1.5)
    assert idle["run_on_energy_kwh"] == pytest.approx(1.0)


def test_each_plug_format_gives_its_energy_total_and_anything_else_none() -> None:
    assert parse_energy_total("tasmota", tasmota_sensor(812, total_kwh=12.503)) == 12.503
    assert parse_energy_total("tasmota", b'{"ENERGY": {"Total": [1.5, 2.25]}}', channel=1) == 2.25
    assert parse_energy_total("shelly-gen2", shelly_gen2_switch(80, total_wh=12503.1)) == (
        pytest.approx(12.5031)
    )
    assert parse_energy_total("shelly-gen1", shelly_gen1_power(12.5)) is None
    for kind, payload in [
        ("tasmota", b'{"ENERGY": {"Power": 3}}'),
        ("tasmota", b'{"ENERGY": {"Total": "lots"}}'),
        ("tasmota", b'{"ENERGY": {"Total": -1}}'),
        ("tasmota", b'{"ENERGY": {"Total": [1.5]}}'),  # channel 0 asked below: present
        ("shelly-gen2", b'{"aenergy": {"total": NaN}}'),
        ("shelly-gen2", b'{"aenergy": 5}'),
        ("tasmota", b"\xff\xfe"),
        ("tasmota", b"[1]"),
    ]:
        got = parse_energy_total(kind, payload, channel=0)  # type: ignore[arg-type]
        assert got is None or got == 1.5, payload


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.text(max_size=20),
        st.none(),
        st.booleans(),
        st.lists(st.floats(), max_size=3),
    ),
    kind=st.sampled_from(["tasmota", "shelly-gen2"]),
)
def test_hostile_energy_totals_give_a_finite_reading_or_none(value: object, kind: str) -> None:
    body = {"ENERGY": {"Total": value}} if kind == "tasmota" else {"aenergy": {"total": value}}
    payload = json.dumps(body, allow_nan=True).encode()
    got = parse_energy_total(kind, payload)  # type: ignore[arg-type]
    if got is not None:
        assert got >= 0 and not math.isnan(got)
        m = machine()
        m.energy_read(0.0)
        tap(m, "0000000A", T0)
        if math.isfinite(got):
            m.energy_read(got)
        # Whatever the plug said, the event the session ends with is one the hub accepts
        # (the journal clamps a reading past the protocol's bound, as for any plug value).
        ended = tap(m, "0000000A", T0 + timedelta(minutes=1), fit=True)
        assert ended[0]["energy_kwh"] == pytest.approx(got if math.isfinite(got) else 0.0)
