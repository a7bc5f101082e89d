"""Statement and credit-note numbers: one continuous series per year, with no gap.

A number is drawn from the year's counter in the very transaction that writes its document,
with the lab's books held (lock_books): if that transaction fails or the process dies, the
counter goes back with everything else, so no number is ever given to nothing. Statements and
credit notes share the series, so a credit note never reuses a number.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from hub.models import DocumentCounter


def document_number(year: int, sequence: int) -> str:
    """`2026-000042`: the year of issue and the place in that year's series (sorts as text)."""
    return f"{year:04d}-{sequence:06d}"


def issue_year(now: datetime, tz: ZoneInfo) -> int:
    """The year a document issued at `now` belongs to, in the lab's zone (a statement issued
    on 1 January at 00:30 in Paris is numbered in the new year)."""
    return now.astimezone(tz).year


def reserve_numbers(session: Session, year: int, count: int) -> list[str]:
    """The next `count` numbers of `year`'s series. The caller holds the lab's books
    (lock_books) and writes the documents in the same transaction."""
    if count <= 0:
        return []
    counter = session.get(DocumentCounter, year, with_for_update=True)
    if counter is None:
        counter = DocumentCounter(year=year, last_number=0)
    first = counter.last_number + 1
    counter.last_number += count
    session.add(counter)
    session.flush()
    return [document_number(year, n) for n in range(first, first + count)]
