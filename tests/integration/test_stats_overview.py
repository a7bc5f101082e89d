"""The statistics page's figures (hub/services/statistics.py `overview`) in one pass: its
month-by-public table is what the pure `usage_by` gives month by month, and the page costs
the queries of one report, not one more report per month (issue 18 item 5), on generated
sessions, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.statistics import usage_by
from hub.reports.usage import usage_report
from hub.services.statistics import months, overview
from tests.integration.test_statistics_sql import (  # noqa: F401  (lab is a fixture)
    END,
    PARIS,
    SETTINGS,
    START,
    Generated,
    Lab,
    _figures,
    _published,
    _pure_rows,
    _store,
    lab,
    sessions,
)


class Queries:
    """Counts the statements an engine runs while it is attached (a real count, no mock)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.count = 0

    def _seen(self, *_: Any) -> None:
        self.count += 1

    def __enter__(self) -> Queries:
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_: Any) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


@SETTINGS
@given(
    rows=st.lists(sessions(), max_size=30),
    start=st.sampled_from([START, date(2026, 3, 15), date(2026, 10, 1)]),
    days=st.sampled_from([1, 40, 200, 365]),
)
def test_the_month_by_public_table_is_usage_by_month_by_month_in_one_pass(
    lab: Lab,  # noqa: F811  (the fixture imported above)
    rows: list[Generated],
    start: date,
    days: int,
) -> None:
    _store(lab, rows, [], [])
    end = min(start + timedelta(days=days), END)
    with Queries(lab.engine) as page:
        seen = overview(lab.engine, start=start, end=end, today=end, tz=PARIS)
    with Queries(lab.engine) as one:
        usage_report(lab.engine, start=start, end=end, tz=PARIS, period="month")
    assert page.count == one.count
    assert [first for first, _ in seen.by_month] == [first for first, _ in months(start, end)]
    pure = [r for r in _pure_rows(rows) if start <= r.started_at.astimezone(PARIS).date() < end]
    for (first, nxt), (_, ours) in zip(months(start, end), seen.by_month, strict=True):
        in_month = [r for r in pure if first <= r.started_at.astimezone(PARIS).date() < nxt]
        assert _figures(ours) == _published(usage_by(in_month, "category", tz=PARIS)), first
