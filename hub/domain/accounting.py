"""The month's books as double-entry journal entries: statements (sales), credit notes and
prepaid top-ups, on the accounts the lab chose. Pure: plain values in, entries out.

A statement of total T of which P came from the prepaid balance: debit the members' account
with T - P, the prepaid balance's account (419, customers in credit) with P, credit sales
(706) with T. A credit note gives back X of which B goes back to the prepaid balance: debit
sales with X, credit 419 with B and the members' account with X - B. A top-up of C: debit
the bank (512) with C, credit 419 with C. Every entry balances; amounts are integer cents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class Accounts:
    sales: str = "706"
    members: str = "411"
    prepaid: str = "419"
    bank: str = "512"
    sales_journal: str = "VT"
    bank_journal: str = "BQ"


@dataclass(frozen=True, slots=True)
class Document:
    """A statement or credit note as the books need it."""

    number: str
    day: date
    payer: str
    total_cents: int  # negative for a credit note
    prepaid_cents: int  # drawn from the prepaid balance (negative: given back)
    credit_note: bool = False


@dataclass(frozen=True, slots=True)
class TopUp:
    reference: str
    day: date
    payer: str
    cents: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One movement from `debit` to `credit` of `cents` (> 0): Paheko's simple entry."""

    number: int
    journal: str
    day: date
    piece: str
    label: str
    debit: str
    credit: str
    cents: int


def journal_entries(
    documents: list[Document], top_ups: list[TopUp], accounts: Accounts
) -> list[Entry]:
    """The entries, numbered from 1 in date then piece order; pairs of zero are left out."""
    pairs: list[tuple[str, date, str, str, str, str, int]] = []
    for doc in documents:
        if doc.credit_note:
            given_back = -doc.total_cents
            to_balance = -doc.prepaid_cents
            label = f"Avoir {doc.number} {doc.payer}"
            pairs.append(
                (
                    accounts.sales_journal,
                    doc.day,
                    doc.number,
                    label,
                    accounts.sales,
                    accounts.prepaid,
                    to_balance,
                )
            )
            pairs.append(
                (
                    accounts.sales_journal,
                    doc.day,
                    doc.number,
                    label,
                    accounts.sales,
                    accounts.members,
                    given_back - to_balance,
                )
            )
        else:
            label = f"Relevé {doc.number} {doc.payer}"
            pairs.append(
                (
                    accounts.sales_journal,
                    doc.day,
                    doc.number,
                    label,
                    accounts.members,
                    accounts.sales,
                    doc.total_cents - doc.prepaid_cents,
                )
            )
            pairs.append(
                (
                    accounts.sales_journal,
                    doc.day,
                    doc.number,
                    label,
                    accounts.prepaid,
                    accounts.sales,
                    doc.prepaid_cents,
                )
            )
    for top_up in top_ups:
        pairs.append(
            (
                accounts.bank_journal,
                top_up.day,
                top_up.reference,
                f"Recharge prépayée {top_up.payer}",
                accounts.bank,
                accounts.prepaid,
                top_up.cents,
            )
        )
    kept = sorted((p for p in pairs if p[6] != 0), key=lambda p: (p[1], p[0], p[2]))
    return [
        Entry(number, journal, day, piece, label, debit, credit, cents)
        if cents > 0
        # A negative pair (a credit note giving back more than it drew): the same movement
        # the other way round.
        else Entry(number, journal, day, piece, label, credit, debit, -cents)
        for number, (journal, day, piece, label, debit, credit, cents) in enumerate(kept, 1)
    ]


def balance_of(entries: list[Entry], account: str) -> int:
    """Credits minus debits of `account`, in cents."""
    return sum(e.cents for e in entries if e.credit == account) - sum(
        e.cents for e in entries if e.debit == account
    )
