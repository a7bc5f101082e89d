"""The books' pure rule: every entry balances, sales carry exactly the statements' totals,
the prepaid account exactly what was topped up less what was drawn."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from hub.domain.accounting import Accounts, Document, TopUp, balance_of, journal_entries

ACCOUNTS = Accounts()
DAY = date(2026, 11, 23)


def test_a_statement_a_credit_note_and_a_top_up() -> None:
    entries = journal_entries(
        [
            Document("2026-000001", DAY, "Alice", 2650, 2000),
            Document("2026-000004", DAY, "Alice", -1100, -1100, credit_note=True),
        ],
        [TopUp("R1", date(2026, 10, 2), "Alice", 2000)],
        ACCOUNTS,
    )
    assert [(e.journal, e.debit, e.credit, e.cents) for e in entries] == [
        ("BQ", "512", "419", 2000),
        ("VT", "411", "706", 650),
        ("VT", "419", "706", 2000),
        ("VT", "706", "419", 1100),
    ]
    assert [e.number for e in entries] == [1, 2, 3, 4]
    assert balance_of(entries, "706") == 2650 - 1100
    assert balance_of(entries, "419") == 2000 - 2000 + 1100
    assert balance_of(entries, "411") == -650


documents = st.lists(
    st.builds(
        lambda total, share, note: Document(
            "N",
            DAY,
            "P",
            -total if note else total,
            -(total * share // 100) if note else total * share // 100,
            note,
        ),
        st.integers(0, 10**9),
        st.integers(0, 100),
        st.booleans(),
    ),
    max_size=20,
)
top_ups = st.lists(st.builds(lambda c: TopUp("R", DAY, "P", c), st.integers(1, 10**9)), max_size=5)


@given(documents, top_ups)
def test_the_books_always_balance(docs: list[Document], ups: list[TopUp]) -> None:
    entries = journal_entries(docs, ups, ACCOUNTS)
    assert all(e.cents > 0 and e.debit != e.credit for e in entries)
    assert balance_of(entries, "706") == sum(d.total_cents for d in docs)
    assert balance_of(entries, "419") == sum(u.cents for u in ups) - sum(
        d.prepaid_cents for d in docs
    )
    assert balance_of(entries, "512") == -sum(u.cents for u in ups)
    assert sum(balance_of(entries, a) for a in ("706", "419", "411", "512")) == 0
