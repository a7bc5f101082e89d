"""Billing's refusals from generated bad input, and its kept balances against the domain's draw
rule: the services raise HubError (a code of the catalogue, the field at fault), the CLI names
the flag and exits 2 without a traceback, and a close draws what hub.domain.billing says."""

from __future__ import annotations

import math
import string
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.errors import MESSAGES, HubError, InvalidValue
from hub.domain.billing import apply_prepaid
from hub.models import Member
from hub.services.billing import (
    RATE_FIELDS,
    account_of,
    balances,
    check_rate,
    close_month,
    import_rates,
    month_statements,
    parse_euros,
    parse_month,
    top_up,
)
from tests.integration.test_billing_store import (  # noqa: F401
    NOW,
    PARIS,
    billing,
    cli_env,
    engine,
)

FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

# Text a person (or a spreadsheet) may type: NUL and other controls, signs, separators,
# non-ASCII digits, huge numbers, far dates, NaN and infinities.
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(string.digits + "-.,€ \x00\n\t+e", max_size=24),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
    st.sampled_from(["", " ", "\x00", "٣", "²", "2026-10\n", "2026-00", "2026-13", "10000-01"]),
)


@settings(max_examples=300, deadline=None)
@given(text=ODD_TEXT)
def test_months_and_amounts_are_taken_or_refused_by_their_field(text: str) -> None:
    for parse, field, code in (
        (parse_month, "month", "billing.month_format"),
        (parse_euros, "amount", "billing.amount_format"),
    ):
        try:
            value = parse(text)
        except InvalidValue as refused:
            assert (refused.code, refused.field) == (code, field)
            assert refused.code in MESSAGES and str(refused)
            continue
        if parse is parse_month:
            first, nxt = value  # type: ignore[misc]
            assert first.day == 1 and nxt.day == 1 and first < nxt <= first + timedelta(days=31)
            assert first.strftime("%Y-%m") == text
        else:
            assert isinstance(value, int) and 0 <= value < 10**9


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(
    values=st.fixed_dictionaries(
        {"machine_type": st.sampled_from(["laser", "printer", "plasma", ""])},
        optional={name: ODD_TEXT for name in RATE_FIELDS if name != "machine_type"},
    )
)
def test_a_rate_is_refused_only_by_a_field_it_has(
    engine: Engine,  # noqa: F811
    values: dict[str, str],
) -> None:
    with Session(engine) as session:
        try:
            rate = check_rate(session, values)
        except HubError as refused:
            assert refused.code in MESSAGES, refused.code
            assert refused.field in RATE_FIELDS, refused
            return
        finally:
            session.rollback()
    assert rate.machine_type in ("laser", "printer")
    assert rate.cents_per_hour >= 0 and rate.rounding_minutes >= 1


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURES)
@given(
    rows=st.lists(
        st.lists(ODD_TEXT.filter(lambda s: "\n" not in s and "\r" not in s), max_size=6),
        max_size=4,
    )
)
def test_a_csv_of_rates_is_imported_whole_or_refused_with_its_line(
    engine: Engine,  # noqa: F811
    rows: list[list[str]],
) -> None:
    header = ",".join(RATE_FIELDS[:6])
    text = "\n".join([header, *(",".join(cell.replace(",", "") for cell in r) for r in rows)])
    with Session(engine) as session:
        try:
            added, replaced = import_rates(session, text)
        except HubError as refused:
            assert refused.code in MESSAGES
            assert refused.field == "file" or refused.field in RATE_FIELDS
            if refused.code != "rates.empty":
                assert 2 <= refused.params["line"] <= len(rows) + 1
        else:
            assert added + replaced >= 1
        finally:
            session.rollback()


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=FIXTURES)
@given(month=ODD_TEXT.filter(lambda s: "\x00" not in s and not s.startswith("-")))
def test_cli_close_refuses_a_bad_month_naming_the_flag(
    cli_env: str,  # noqa: F811
    month: str,
) -> None:
    code, output = billing("close", "--month", month)
    if code == 0:  # a well-formed past month: closed
        assert parse_month(month) and "closed" in output
        return
    assert code == 2, output
    assert output.startswith("--month: ") and "Traceback" not in output


@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURES)
@given(topped=st.one_of(st.none(), st.integers(min_value=1, max_value=6000)))
def test_a_close_draws_by_the_domain_rule_and_the_kept_balance_is_the_movements(
    engine: Engine,  # noqa: F811
    topped: int | None,
) -> None:
    """The close writes balances with set-based SQL (increments, bulk rows): what it drew is
    apply_prepaid's answer, and the kept balance equals the sum of the movements."""
    with Session(engine) as session:
        try:
            alice = session.exec(select(Member).where(Member.ref == "alice")).one()
            if topped is not None:
                top_up(session, alice, topped, actor="test")
            before = account_of(session, alice).balance_cents
            close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
            statement = next(
                s for s in month_statements(session, "2026-10") if s.payer_ref == "alice"
            )
            left, due = apply_prepaid(before, statement.total_cents)
            assert statement.prepaid_cents == before - left
            assert statement.due_cents == due
            session.expire_all()
            kept = account_of(session, alice).balance_cents
            assert kept == left == balances(session).get(alice.id or 0, 0)
        finally:
            session.rollback()


def test_far_amounts_and_months_are_refused_not_overflows() -> None:
    """Seven digits of euros at most; a month whose first day or next month's is not a date
    (year 0, after 9999-11) is refused by its field, not a traceback."""
    assert parse_euros("9999999,99") == 999_999_999
    for text in ("10000000", "1e3", "nan", "inf", str(math.pi)):
        with pytest.raises(InvalidValue):
            parse_euros(text)
    assert parse_month("9999-11") == (date(9999, 11, 1), date(9999, 12, 1))
    for month in ("9999-12", "0000-01"):
        with pytest.raises(InvalidValue) as refused:
            parse_month(month)
        assert refused.value.field == "month"
