"""Billing rules, their edges, and the worked example of docs/billing.md recomputed."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain.billing import (
    Charge,
    ChargeLine,
    DutyRole,
    NoRateError,
    PrepaidPlan,
    Rate,
    RateBook,
    UsageRecord,
    _parts_by_midnight,
    _price_pieces,
    apply_prepaid,
    bill_month,
    credit_note,
    may_start,
    price_session,
    rate_on,
)
from protocol.envelope import DenyReason

PARIS = ZoneInfo("Europe/Paris")
DOC = Path(__file__).resolve().parents[2] / "docs" / "billing.md"


def paris(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=PARIS)


def rec(
    start: datetime,
    minutes: float,
    *,
    sid: str = "s1",
    member: str = "m1",
    mtype: str = "laser",
    category: str = "individual",
    busy_s: int = 0,
    duty: DutyRole = DutyRole.NONE,
    payer: str | None = None,
) -> UsageRecord:
    return UsageRecord(
        session_id=sid,
        member_ref=member,
        machine=f"{mtype}-1",
        machine_type=mtype,
        category=category,
        started_at=start,
        ended_at=start + timedelta(minutes=minutes),
        busy_seconds=busy_s,
        duty=duty,
        payer_ref=payer,
    )


def rate(**kw: object) -> Rate:
    base: dict[str, object] = {
        "machine_type": "laser",
        "category": "individual",
        "effective_from": date(2026, 1, 1),
        "cents_per_hour": 1200,
    }
    base.update(kw)
    return Rate(**base)  # type: ignore[arg-type]


def price(
    r: UsageRecord, rates: list[Rate], used: int = 0, today: dict[date, int] | None = None
) -> Charge:
    return price_session(
        r, rates, tz=PARIS, already_used_included_minutes=used, charged_today_cents=today or {}
    )


def test_per_started_minute() -> None:
    # 10 min 1 s is 11 started minutes at 12 €/h = 2.20 €.
    charge = price(rec(paris(2026, 10, 5, 10), 10 + 1 / 60), [rate()])
    assert charge.billed_minutes == 11
    assert charge.cents == 220


def test_rounding_unit_bills_per_started_quarter_hour() -> None:
    charge = price(rec(paris(2026, 10, 5, 10), 16), [rate(rounding_minutes=15)])
    assert charge.billed_minutes == 30
    assert charge.cents == 600


def test_start_fee_and_minimum() -> None:
    r = [rate(start_fee_cents=100, minimum_cents=500)]
    assert price(rec(paris(2026, 10, 5, 10), 5), r).cents == 500  # 100 + 100 -> topped up
    assert price(rec(paris(2026, 10, 5, 10), 60), r).cents == 1300  # above the minimum
    lines = price(rec(paris(2026, 10, 5, 10), 5), r).lines
    assert any("Minimum" in line.explanation and line.cents == 300 for line in lines)


def test_busy_basis_uses_busy_time_not_session_time() -> None:
    r = [rate(basis="busy")]
    charge = price(rec(paris(2026, 10, 5, 10), 60, busy_s=20 * 60 + 5), r)
    assert charge.billed_minutes == 21
    assert charge.cents == 420
    assert "busy time" in charge.lines[0].explanation


def test_zero_length_session_costs_nothing_not_even_the_minimum() -> None:
    r = [rate(start_fee_cents=100, minimum_cents=500)]
    charge = price(rec(paris(2026, 10, 5, 10), 0), r)
    assert charge.cents == 0 and charge.billed_minutes == 0


def test_session_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="before started_at"):
        price(rec(paris(2026, 10, 5, 10), -1), [rate()])


def test_trainer_and_maintainer_on_duty_are_free() -> None:
    r = [rate(start_fee_cents=100, minimum_cents=500)]
    for duty in (DutyRole.TRAINER, DutyRole.MAINTAINER):
        charge = price(rec(paris(2026, 10, 5, 10), 90, duty=duty), r)
        assert charge.cents == 0
        assert duty.value in charge.lines[0].explanation


def test_included_minutes_come_off_first_and_are_counted() -> None:
    r = [rate(included_minutes_per_month=30)]
    charge = price(rec(paris(2026, 10, 5, 10), 50), r, used=10)
    assert charge.included_minutes_used == 20
    assert charge.cents == 30 * 1200 // 60
    assert price(rec(paris(2026, 10, 5, 10), 50), r, used=30).cents == 1000


def test_daily_cap_counts_what_was_already_charged_that_day() -> None:
    r = [rate(daily_cap_cents=3000)]
    charge = price(rec(paris(2026, 10, 5, 10), 120), r, today={date(2026, 10, 5): 2000})
    assert charge.cents == 1000
    assert charge.cents_by_day == {date(2026, 10, 5): 1000}
    assert price(rec(paris(2026, 10, 5, 10), 120), r, today={date(2026, 10, 5): 3500}).cents == 0


def test_session_crossing_midnight_is_capped_per_day() -> None:
    # 22:00 -> 02:00 at 12 €/h with a 30 € cap: 24 € on each day, no cap hit; with a 20 € cap,
    # each day is capped separately (40 € total), not the session as one day (20 €).
    r = [rate(daily_cap_cents=2000)]
    charge = price(rec(paris(2026, 10, 5, 22), 240), r)
    assert charge.cents_by_day == {date(2026, 10, 5): 2000, date(2026, 10, 6): 2000}
    assert charge.cents == 4000


def test_session_crossing_a_rate_change_takes_each_rate_by_minute() -> None:
    rates = [rate(), rate(effective_from=date(2026, 10, 15), cents_per_hour=1800)]
    charge = price(rec(paris(2026, 10, 14, 23, 30), 60), rates)
    assert charge.cents == 30 * 1200 // 60 + 30 * 1800 // 60
    assert [line.explanation.split(" at ")[1] for line in charge.lines] == [
        "12,00 €/h",
        "18,00 €/h",
    ]


def test_plan_change_mid_month_keeps_history() -> None:
    rates = [rate(), rate(effective_from=date(2026, 10, 15), cents_per_hour=1800)]
    before = price(rec(paris(2026, 10, 14, 10), 60), rates).cents
    after = price(rec(paris(2026, 10, 16, 10), 60), rates).cents
    assert (before, after) == (1200, 1800)


def test_no_rate_names_what_is_missing() -> None:
    with pytest.raises(NoRateError, match="'cnc'.*'individual'"):
        price(rec(paris(2026, 10, 5, 10), 10, mtype="cnc"), [rate()])


def test_dst_day_bills_the_real_hours() -> None:
    # On 2026-10-25 Paris clocks go back: 01:00 -> 04:00 local lasts 4 real hours.
    start = paris(2026, 10, 25, 1)
    end = datetime(2026, 10, 25, 4, tzinfo=PARIS)
    r = UsageRecord("dst", "m1", "laser-1", "laser", "individual", start, end)
    charge = price(r, [rate()])
    assert charge.billed_minutes == 240
    assert charge.cents == 4800


def test_utc_timestamps_are_cut_at_the_lab_midnight() -> None:
    start = datetime(2026, 10, 5, 21, 30, tzinfo=UTC)  # 23:30 in Paris
    charge = price(rec(start, 60), [rate(daily_cap_cents=500)])
    assert charge.cents_by_day == {date(2026, 10, 5): 500, date(2026, 10, 6): 500}


@given(
    minutes=st.integers(min_value=1, max_value=24 * 60 * 3),
    offset=st.integers(min_value=0, max_value=24 * 60 - 1),
    fee=st.integers(min_value=0, max_value=500),
    minimum=st.integers(min_value=0, max_value=5000),
)
def test_total_never_below_minimum(minutes: int, offset: int, fee: int, minimum: int) -> None:
    start = paris(2026, 10, 5, 0) + timedelta(minutes=offset)
    charge = price(rec(start, minutes), [rate(start_fee_cents=fee, minimum_cents=minimum)])
    assert charge.cents >= minimum


@given(
    minutes=st.integers(min_value=1, max_value=24 * 60 * 3),
    offset=st.integers(min_value=0, max_value=24 * 60 - 1),
    cph=st.integers(min_value=0, max_value=6000),
)
def test_splitting_at_midnight_never_changes_total_with_constant_rate(
    minutes: int, offset: int, cph: int
) -> None:
    start = paris(2026, 10, 5, 0) + timedelta(minutes=offset)
    charge = price(rec(start, minutes), [rate(cents_per_hour=cph)])
    assert charge.billed_minutes == minutes
    # One rate across days: only the per-piece cent rounding may differ from the whole.
    assert abs(charge.cents - (minutes * cph + 30) // 60) <= 3
    # With a whole number of cents per minute there is no rounding at all: exactly equal.
    whole = price(rec(start, minutes), [rate(cents_per_hour=cph // 60 * 60)])
    assert whole.cents == minutes * (cph // 60)


def test_prepaid_draws_down_and_denies_when_empty() -> None:
    charges = [
        Charge("a", (ChargeLine("x", 700),), 35, 0),
        Charge("b", (ChargeLine("y", 500),), 25, 0),
    ]
    due = sum(c.cents for c in charges)
    assert apply_prepaid(1000, due) == (0, 200)
    assert apply_prepaid(2000, due) == (800, 0)
    assert apply_prepaid(-100, due) == (-100, 1200)
    assert may_start(0, PrepaidPlan(prepaid_only=True)) is DenyReason.BALANCE
    assert may_start(1, PrepaidPlan(prepaid_only=True)) is None
    assert may_start(-500, PrepaidPlan(prepaid_only=False)) is None


CENTS = st.integers(min_value=-(10**12), max_value=10**12)  # far past any lab's money


@settings(max_examples=200, deadline=None)
@given(balance=CENTS, due=st.integers(min_value=0, max_value=10**12), parts=st.integers(1, 6))
def test_the_draw_takes_what_the_balance_holds_and_nothing_more(
    balance: int, due: int, parts: int
) -> None:
    """The one draw rule, which the month's close (a whole statement) and the drawdown at
    each session's end (one session at a time) both run: the two ways agree."""
    left_balance, uncovered = apply_prepaid(balance, due)
    drawn = balance - left_balance
    assert 0 <= drawn <= max(balance, 0) and drawn <= due
    assert uncovered == due - drawn
    assert drawn == min(max(balance, 0), due)  # all it can: never less than both allow
    assert left_balance >= min(balance, 0)  # a draw never makes a balance negative
    # Session by session (the drawdown) leaves the same balance as the whole at once (close).
    pieces = [due // parts] * (parts - 1)
    pieces.append(due - sum(pieces))
    step = balance
    for cents in pieces:
        step = apply_prepaid(step, cents)[0]
    assert step == left_balance


# The worked example of docs/billing.md. The doc's table is parsed and compared below,
# so the doc and this data cannot drift apart.
EXAMPLE_RATES = [
    Rate("laser", "individual", date(2026, 1, 1), 1200, "session", 100, 300, 5, 6000, 0),
    Rate("laser", "individual", date(2026, 10, 15), 1500, "session", 100, 300, 5, 6000, 0),
    Rate("laser", "student", date(2026, 1, 1), 600, "busy", 0, 200, 1, None, 0),
    Rate("laser", "professional", date(2026, 1, 1), 3000, "session", 0, 0, 15, 15000, 0),
    Rate("printer", "individual", date(2026, 1, 1), 150, "busy", 0, 0, 1, None, 300),
    Rate("printer", "student", date(2026, 1, 1), 100, "busy", 0, 0, 1, None, 0),
    Rate("printer", "professional", date(2026, 1, 1), 300, "busy", 0, 0, 1, 2000, 0),
]


def _ex(
    sid: str,
    member: str,
    cat: str,
    machine: str,
    start: datetime,
    minutes: int,
    busy_min: int,
    duty: DutyRole = DutyRole.NONE,
    payer: str | None = None,
) -> UsageRecord:
    return UsageRecord(
        sid, member, machine, machine.split("-")[0], cat, start,
        start + timedelta(minutes=minutes), busy_min * 60, duty, payer,
    )  # fmt: skip


EXAMPLE_SESSIONS = [
    _ex("S01", "alice", "individual", "laser-1", paris(2026, 10, 3, 14), 47, 30),
    _ex("S02", "alice", "individual", "printer-1", paris(2026, 10, 3, 15), 400, 380),
    _ex("S03", "alice", "individual", "laser-1", paris(2026, 10, 14, 23, 40), 40, 25),
    _ex("S04", "alice", "individual", "laser-1", paris(2026, 10, 20, 18), 8, 2),
    _ex("S05", "alice", "individual", "laser-1", paris(2026, 10, 21, 18), 90, 60, DutyRole.TRAINER),
    _ex("S06", "bruno", "student", "laser-1", paris(2026, 10, 7, 10), 60, 12, payer="ecole-design"),
    _ex(
        "S07",
        "bruno",
        "student",
        "printer-1",
        paris(2026, 10, 7, 11),
        180,
        170,
        payer="ecole-design",
    ),
    _ex(
        "S08",
        "chloe",
        "professional",
        "laser-1",
        paris(2026, 10, 9, 9),
        200,
        150,
        payer="bois-sarl",
    ),
    _ex(
        "S09",
        "chloe",
        "professional",
        "laser-1",
        paris(2026, 10, 9, 14),
        200,
        160,
        payer="bois-sarl",
    ),
    _ex(
        "S10",
        "chloe",
        "professional",
        "printer-1",
        paris(2026, 10, 22, 20),
        720,
        700,
        payer="bois-sarl",
    ),
    _ex(
        "S11", "chloe", "professional", "laser-1", paris(2026, 11, 2, 9), 60, 50, payer="bois-sarl"
    ),
]


def example_table() -> list[tuple[str, str, str, int, int]]:
    """(payer, session, member, billed minutes, cents) for every statement line, in order."""
    return [
        (st_.payer_ref, line.session_id, line.member_ref, line.billed_minutes, line.cents)
        for st_ in bill_month(EXAMPLE_SESSIONS, EXAMPLE_RATES, "2026-10", PARIS)
        for line in st_.lines
    ]


def _cents(text: str) -> int:
    euros, cents = text.replace("€", "").strip().split(",")
    return int(euros) * 100 + int(cents)


def test_worked_example_in_the_doc_is_what_the_code_computes() -> None:
    doc = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\S+) \| (S\d\d) \| (\w+) \| (\d+) \| ([\d,]+ €) \|", doc, re.MULTILINE)
    assert rows, "docs/billing.md lost its worked-example table"
    parsed = [(p, s, m, int(mins), _cents(c)) for p, s, m, mins, c in rows]
    assert parsed == example_table()
    totals = dict(
        re.findall(r"^\| \*\*(\S+) total\*\* \| +\| +\| +\| \*\*([\d,]+ €)\*\* \|", doc, re.M)
    )
    computed = {
        s.payer_ref: s.total_cents
        for s in bill_month(EXAMPLE_SESSIONS, EXAMPLE_RATES, "2026-10", PARIS)
    }
    assert {p: _cents(v) for p, v in totals.items()} == computed


def test_example_statements_group_by_payer_and_are_stable() -> None:
    first = bill_month(EXAMPLE_SESSIONS, EXAMPLE_RATES, "2026-10", PARIS)
    again = bill_month(list(reversed(EXAMPLE_SESSIONS)), EXAMPLE_RATES, "2026-10", PARIS)
    assert first == again
    assert [s.payer_ref for s in first] == ["alice", "bois-sarl", "ecole-design"]
    assert "S11" not in {line.session_id for s in first for line in s.lines}  # November


def test_credit_note_negates_lines_and_leaves_the_statement_alone() -> None:
    statement = bill_month(EXAMPLE_SESSIONS, EXAMPLE_RATES, "2026-10", PARIS)[0]
    before = statement.total_cents
    credit = credit_note(statement, ["S01"], "laser lens was dirty")
    assert credit.total_cents == -statement.lines[0].cents
    assert statement.total_cents == before
    assert credit.lines[0].explanation == "Credit: laser lens was dirty"
    with pytest.raises(ValueError, match="S99"):
        credit_note(statement, ["S99"], "typo")
    with pytest.raises(ValueError, match="reason"):
        credit_note(statement, ["S01"], " ")


def test_bad_month_names_the_expected_form() -> None:
    with pytest.raises(ValueError, match="2026-10"):
        bill_month([], EXAMPLE_RATES, "October", PARIS)


def test_daily_cap_is_per_machine_type_in_a_month() -> None:
    rates = [
        rate(daily_cap_cents=1000),
        rate(machine_type="printer", cents_per_hour=600, daily_cap_cents=1000),
    ]
    day = paris(2026, 10, 5, 9)
    records = [
        rec(day, 90, sid="a"),
        rec(day + timedelta(hours=2), 60, sid="b"),
        rec(day + timedelta(hours=4), 120, sid="c", mtype="printer"),
    ]
    [statement] = bill_month(records, rates, "2026-10", PARIS)
    assert [line.cents for line in statement.lines] == [1000, 0, 1000]


# The fast path of price_session (a session within one local day) must charge exactly what
# the cut at every midnight charges, on every rule: fees, minimum, unit, cap, included
# minutes, busy basis, duty, rate changes, and a zone whose clocks change at midnight.
SANTIAGO = ZoneInfo("America/Santiago")


@settings(max_examples=400, deadline=None)
@given(
    zone=st.sampled_from([PARIS, SANTIAGO, ZoneInfo("UTC")]),
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
    start_s=st.integers(min_value=0, max_value=24 * 3600 - 1),
    length_s=st.integers(min_value=0, max_value=26 * 3600),
    near_midnight=st.none() | st.integers(min_value=-5400, max_value=5400),
    micro=st.integers(min_value=0, max_value=999_999),
    in_utc=st.booleans(),
    busy_s=st.integers(min_value=0, max_value=26 * 3600),
    duty=st.sampled_from([DutyRole.NONE] * 4 + list(DutyRole)),
    cph=st.integers(min_value=0, max_value=6000),
    basis=st.sampled_from(["session", "busy"]),
    fee=st.integers(min_value=0, max_value=300),
    minimum=st.integers(min_value=0, max_value=3000),
    unit=st.integers(min_value=1, max_value=30),
    cap=st.none() | st.integers(min_value=0, max_value=5000),
    included=st.integers(min_value=0, max_value=300),
    used=st.integers(min_value=0, max_value=400),
    today=st.integers(min_value=0, max_value=6000),
    change=st.none() | st.integers(min_value=0, max_value=3),
)
def test_fast_path_charges_exactly_what_the_cut_at_midnight_charges(
    zone: ZoneInfo,
    day: date,
    start_s: int,
    length_s: int,
    near_midnight: int | None,
    micro: int,
    in_utc: bool,
    busy_s: int,
    duty: DutyRole,
    cph: int,
    basis: str,
    fee: int,
    minimum: int,
    unit: int,
    cap: int | None,
    included: int,
    used: int,
    today: int,
    change: int | None,
) -> None:
    local = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(seconds=start_s)
    start = (local.astimezone(UTC) if in_utc else local) + timedelta(microseconds=micro)
    if near_midnight is not None:  # end around the next local midnight, where the paths part
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
        to_midnight = (midnight.astimezone(UTC) - start.astimezone(UTC)).total_seconds()
        length_s = max(0, int(to_midnight) + near_midnight)
    record = UsageRecord(
        "s", "m1", "laser-1", "laser", "individual", start,
        start + timedelta(seconds=length_s), busy_s, duty,
    )  # fmt: skip
    terms: dict[str, object] = {
        "basis": basis,
        "start_fee_cents": fee,
        "minimum_cents": minimum,
        "rounding_minutes": unit,
        "daily_cap_cents": cap,
        "included_minutes_per_month": included,
    }
    rates = [rate(effective_from=date(2025, 1, 1), cents_per_hour=cph, **terms)]
    if change is not None:  # a new price from a day around the session's
        later = day + timedelta(days=change - 1)
        rates.append(rate(effective_from=later, cents_per_hour=cph + 600, **terms))
    charged = {day: today, day + timedelta(days=1): today // 2}
    book = RateBook(rates)
    fast = price_session(
        record, rates, tz=zone, already_used_included_minutes=used, charged_today_cents=charged
    )
    cut = _price_pieces(record, _parts_by_midnight(record, book, zone), used, charged)
    assert fast == cut


@given(
    days=st.lists(st.integers(min_value=-3, max_value=3), min_size=0, max_size=5),
    ask=st.integers(min_value=-4, max_value=4),
)
def test_rate_book_finds_what_rate_on_finds(days: list[int], ask: int) -> None:
    base = date(2026, 10, 15)
    rates = [
        rate(effective_from=base + timedelta(days=d), cents_per_hour=100 * i)
        for i, d in enumerate(days)
    ] + [rate(category="student", effective_from=base - timedelta(days=9))]
    wanted = base + timedelta(days=ask)
    try:
        expected: Rate | None = rate_on(rates, "laser", "individual", wanted)
    except NoRateError:
        expected = None
    if expected is None:
        with pytest.raises(NoRateError, match="'laser'.*'individual'"):
            RateBook(rates).on("laser", "individual", wanted)
    else:
        assert RateBook(rates).on("laser", "individual", wanted) is expected


# -- issue 21 item 5: busy time that outlives its session -----------------------------------


def test_a_print_left_running_is_billed_whole_on_a_busy_rate() -> None:
    # Badge in at 10:00, print from 10:05, badge out at 10:15; the print ends at 16:05.
    start = paris(2026, 10, 5, 10)
    left = rec(start, 15, busy_s=6 * 3600)._replace(busy_until=paris(2026, 10, 5, 16, 5))
    charge = price(left, [rate(basis="busy", cents_per_hour=150)])
    assert charge.billed_minutes == 360 and charge.cents == 900
    # Without the run-on the old rule capped it at the session's 15 minutes.
    capped = price(left._replace(busy_until=None), [rate(basis="busy", cents_per_hour=150)])
    assert capped.billed_minutes == 15


def test_a_run_on_is_not_billed_on_a_session_rate() -> None:
    start = paris(2026, 10, 5, 10)
    left = rec(start, 15, busy_s=6 * 3600)._replace(busy_until=paris(2026, 10, 5, 16, 5))
    assert price(left, [rate()]).billed_minutes == 15


def test_a_run_on_past_midnight_is_priced_and_capped_on_its_own_day() -> None:
    # 20 min session from 23:00, a 3 h print from 23:10 to 02:10: the priced span is 190 min,
    # 60 on the 5th and 130 on the 6th.
    r = [
        rate(basis="busy", cents_per_hour=300, daily_cap_cents=200),
        rate(basis="busy", cents_per_hour=600, effective_from=date(2026, 10, 6)),
    ]
    left = rec(paris(2026, 10, 5, 23), 20, busy_s=3 * 3600)._replace(
        busy_until=paris(2026, 10, 6, 2, 10)
    )
    charge = price(left, r)
    assert charge.billed_minutes == 180
    by_day = {day.isoformat(): cents for day, cents in charge.cents_by_day.items()}
    # 180 billed minutes shared by time: 180 x 60 / 190 -> 56 on the 5th (2,80 € capped at
    # 2,00 €), 124 on the 6th at the new price (12,40 €).
    assert by_day == {"2026-10-05": 200, "2026-10-06": 1240}
    assert any("Daily cap of 2,00 € reached on 2026-10-05" in x.explanation for x in charge.lines)


@given(
    session_min=st.integers(min_value=0, max_value=600),
    run_on_min=st.integers(min_value=0, max_value=3000),
    busy_min=st.integers(min_value=0, max_value=4000),
)
@settings(max_examples=200, deadline=None)
def test_a_run_on_never_bills_more_than_the_busy_time_nor_less_than_before(
    session_min: int, run_on_min: int, busy_min: int
) -> None:
    start = paris(2026, 10, 5, 9)
    plain = rec(start, session_min, busy_s=busy_min * 60)
    left = plain._replace(busy_until=plain.ended_at + timedelta(minutes=run_on_min))
    r = [rate(basis="busy")]
    before, after = price(plain, r), price(left, r)
    assert before.billed_minutes <= after.billed_minutes <= busy_min
    assert after.billed_minutes == min(busy_min, session_min + run_on_min)
