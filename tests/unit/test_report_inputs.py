"""What a person asks a report for: any text, day, share or year is taken or refused with
InvalidValue naming the field, with a code that has a message, never another exception."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.errors import MESSAGES, InvalidValue, describe
from hub.reports.inputs import (
    EARLIEST_DAY,
    LATEST_DAY,
    MAX_WINDOW_DAYS,
    check_share,
    check_window,
    check_year,
    parse_day,
    parse_opening_hours,
)
from hub.services.statistics import usage_query

# Opening hours as people write them, and broken: days, ranges, separators, NUL, huge numbers.
pieces = st.one_of(
    st.sampled_from(["mon", "tue", "Saturday", "sun", "tues", "", "-", ",", ";", " "]),
    st.sampled_from(["14:00-19:00", "9:00-12:30", "19:00-14:00", "24:00-25:00", "14:00"]),
    st.from_regex(r"\d{1,4}:\d{1,3}-\d{1,4}:\d{1,3}", fullmatch=True),
    st.text(max_size=12),
)
specs = st.lists(pieces, max_size=8).map(" ".join)


def _refused(error: InvalidValue, field: str) -> None:
    assert error.field == field
    assert error.code in MESSAGES
    assert describe(error) and not describe(error).startswith(error.code)


@settings(max_examples=200, deadline=None)
@given(spec=specs)
def test_opening_hours_are_taken_or_refused_by_name(spec: str) -> None:
    try:
        slots = parse_opening_hours(spec)
    except InvalidValue as error:
        _refused(error, "opening_hours")
        return
    assert slots
    assert all(0 <= s.weekday <= 6 and s.opens < s.closes for s in slots)


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(st.text(max_size=20), st.dates().map(date.isoformat)))
def test_a_day_is_taken_or_refused_by_name(text: str) -> None:
    try:
        day = parse_day(text, "from")
    except InvalidValue as error:
        _refused(error, "from")
        return
    assert day.isoformat() == text or date.fromisoformat(text) == day


@settings(max_examples=150, deadline=None)
@given(start=st.dates(), length=st.integers(min_value=-5000, max_value=5000))
def test_a_window_is_taken_or_refused_naming_the_end_at_fault(start: date, length: int) -> None:
    try:
        end = start + timedelta(days=length)
    except OverflowError:
        end = date.max if length > 0 else date.min
    try:
        check_window(start, end)
    except InvalidValue as error:
        if not EARLIEST_DAY <= start <= LATEST_DAY:
            _refused(error, "from")
        else:
            _refused(error, "to")
        return
    assert EARLIEST_DAY <= start < end <= LATEST_DAY
    assert (end - start).days <= MAX_WINDOW_DAYS


@settings(max_examples=100, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_a_share_is_from_0_to_1(value: float) -> None:
    try:
        assert check_share(value, "under_used") == value and 0 <= value <= 1
    except InvalidValue as error:
        _refused(error, "under_used")
        assert not 0 <= value <= 1


@settings(max_examples=100, deadline=None)
@given(year=st.integers(min_value=-(2**63), max_value=2**63))
def test_a_year_is_from_2000_to_2999(year: int) -> None:
    try:
        assert check_year(year) == year and 2000 <= year <= 2999
    except InvalidValue as error:
        _refused(error, "year")
        assert not 2000 <= year <= 2999


@settings(max_examples=100, deadline=None)
@given(fmt=st.text(max_size=8), period=st.text(max_size=8))
def test_a_usage_export_s_choices_are_named(fmt: str, period: str) -> None:
    try:
        query = usage_query(start=date(2026, 1, 1), end=date(2027, 1, 1), period=period, fmt=fmt)
    except InvalidValue as error:
        assert error.field == ("format" if fmt not in ("csv", "xlsx", "json") else "period")
        _refused(error, error.field)
        return
    assert fmt in ("csv", "xlsx", "json") and query.period == period
