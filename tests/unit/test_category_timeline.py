"""The category in force on a day, from a member's changes and their current category."""

from __future__ import annotations

from datetime import date

from hub.domain.billing import CategoryChange, CategoryTimeline


def test_no_change_means_the_current_category_every_day() -> None:
    timeline = CategoryTimeline("professional", [])
    assert timeline.on(date(2020, 1, 1)) == timeline.on(date(2030, 1, 1)) == "professional"


def test_each_day_takes_the_category_of_its_part_of_the_history() -> None:
    timeline = CategoryTimeline(
        "company",
        [  # given out of order: sorted by day, same-day changes kept in recorded order
            CategoryChange(date(2026, 11, 2), "professional", "company"),
            CategoryChange(date(2026, 10, 15), "student", "individual"),
            CategoryChange(date(2026, 10, 15), "individual", "professional"),
        ],
    )
    assert timeline.on(date(2026, 10, 1)) == "student"
    assert timeline.on(date(2026, 10, 14)) == "student"
    # Two changes on the 15th: the day's last one is in force from it.
    assert timeline.on(date(2026, 10, 15)) == "professional"
    assert timeline.on(date(2026, 11, 1)) == "professional"
    assert timeline.on(date(2026, 11, 2)) == "company"
    assert timeline.on(date(2027, 1, 1)) == "company"
