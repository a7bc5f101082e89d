"""What a person asks a report for (days, formats, opening hours), checked: InvalidValue names
the field (`from`, `to`, `format`, `period`, `opening_hours`, `under_used`, `year`), never a
front end's words; the CLI turns the field into its flag, the API and the web into theirs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, time

from hub.core.errors import InvalidValue
from hub.domain.statistics import OpeningInterval

OPENING_HOURS_DEFAULT = "tue-sat 14:00-19:00"
UNDER_USED_DEFAULT = 0.05
FORMATS = ("csv", "xlsx", "json")
REVIEW_FORMATS = ("pdf", "xlsx")
PERIODS = ("day", "week", "month")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The days a report may cover: far outside, arithmetic on a day (a year back, a time zone)
# overflows Python's datetime and the databases' types.
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(3000, 1, 1)
MAX_WINDOW_DAYS = 3660
FIRST_YEAR, LAST_YEAR = 2000, 2999
_EXAMPLE = "tue-fri 14:00-19:00; sat 10:00-18:00"


def parse_day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidValue("stats.not_a_day", field=field, params={"text": text}) from None


def check_day(day: date, field: str) -> date:
    """A day a report may name (1970-01-01 to 3000-01-01)."""
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise InvalidValue(
            "stats.day_out_of_range",
            field=field,
            params={
                "day": day.isoformat(),
                "earliest": EARLIEST_DAY.isoformat(),
                "latest": LATEST_DAY.isoformat(),
            },
        )
    return day


def check_window(start: date, end: date) -> None:
    """[start, end): `end` is the day after the last, at most ten years after `start`."""
    check_day(start, "from")
    check_day(end, "to")
    if end <= start:
        raise InvalidValue(
            "stats.window_backwards",
            field="to",
            params={"start": start.isoformat(), "end": end.isoformat()},
        )
    if (end - start).days > MAX_WINDOW_DAYS:
        raise InvalidValue("stats.window_too_long", field="to", params={"years": 10})


def check_choice(value: str, choices: Iterable[str], field: str) -> str:
    allowed = tuple(choices)
    if value not in allowed:
        raise InvalidValue(
            "stats.not_a_choice",
            field=field,
            params={"value": value, "allowed": ", ".join(allowed)},
        )
    return value


def check_share(value: float, field: str) -> float:
    """A share of the opening hours, from 0 to 1 (NaN is none)."""
    if not 0 <= value <= 1:
        raise InvalidValue("stats.share_out_of_range", field=field, params={"value": str(value)})
    return value


def check_year(year: int) -> int:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidValue(
            "stats.not_a_year",
            field="year",
            params={"year": year, "first": FIRST_YEAR, "last": LAST_YEAR},
        )
    return year


_SLOT = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day_index(name: str, spec: str) -> int:
    word = name.lower()
    if word in DAYS:
        return DAYS.index(word)
    if word in _FULL_DAYS:
        return _FULL_DAYS.index(word)
    raise InvalidValue(
        "stats.opening_not_a_day",
        field="opening_hours",
        params={"name": name, "spec": spec, "days": ", ".join(DAYS)},
    )


def parse_opening_hours(spec: str) -> list[OpeningInterval]:
    """'tue-fri 14:00-19:00; sat 10:00-12:00 13:00-18:00' into weekly slots (0 = Monday)."""
    slots: list[OpeningInterval] = []
    for entry in (part.strip() for part in spec.split(";")):
        if not entry:
            continue
        days_text, *times = entry.split()
        if not times:
            raise InvalidValue(
                "stats.opening_no_times",
                field="opening_hours",
                params={"entry": entry, "example": _EXAMPLE},
            )
        days: list[int] = []
        for item in days_text.split(","):
            first, _, last = item.partition("-")
            a = _day_index(first, spec)
            b = _day_index(last, spec) if last else a
            days.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
        for text in times:
            match = _SLOT.match(text)
            if not match:
                raise InvalidValue(
                    "stats.opening_not_a_range",
                    field="opening_hours",
                    params={"text": text, "example": _EXAMPLE},
                )
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h2, m2) <= (h1, m1):
                raise InvalidValue(
                    "stats.opening_closes_first",
                    field="opening_hours",
                    params={"text": text, "example": _EXAMPLE},
                )
            slots.extend(OpeningInterval(d, time(h1, m1), time(h2, m2)) for d in days)
    if not slots:
        raise InvalidValue(
            "stats.opening_empty",
            field="opening_hours",
            params={"spec": spec, "example": _EXAMPLE},
        )
    return slots
