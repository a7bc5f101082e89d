"""The windows a hub command opens (maintenance, enrolment), on an injected monotonic clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.commands import ENROL_WINDOW_MAX_S, ENROL_WINDOW_S, MAINTENANCE_WINDOW_S, Windows


class Mono:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


windows_s = st.floats(min_value=0.001, max_value=1e6, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(window=windows_s)
def test_maintenance_is_open_for_its_window_then_shuts(window: float) -> None:
    mono = Mono()
    windows = Windows(mono)
    assert not windows.maintenance
    assert windows.open_maintenance({"window_s": window}) == window
    assert windows.maintenance
    mono.now += window
    assert not windows.maintenance


def test_maintenance_opens_the_machine_once() -> None:
    windows = Windows(Mono())
    assert windows.open_maintenance({}) == MAINTENANCE_WINDOW_S
    windows.close_maintenance()
    assert not windows.maintenance


@settings(max_examples=40, deadline=None)
@given(window=windows_s, request_id=st.text(max_size=40))
def test_enrolment_takes_one_card_within_a_capped_window(window: float, request_id: str) -> None:
    mono = Mono()
    windows = Windows(mono)
    opened = windows.open_enrolment({"window_s": window, "request_id": request_id})
    assert opened == min(window, ENROL_WINDOW_MAX_S)
    assert windows.enrolling
    assert windows.take_enrolment() == request_id
    assert not windows.enrolling  # one card per request
    windows.open_enrolment({"request_id": request_id})
    mono.now += ENROL_WINDOW_S
    assert not windows.enrolling  # expired unused
