"""The yearly review as a funder reads it: the lab's name, totals per machine type with each
machine in an annex, each public, the month-by-month trend, and utilisation measured against
the lab's opening hours and capped at them.

Plain values in, plain values out (the web page, the XLSX): the figures are the review's own
(hub/reports/review.py); this only groups, names and caps them.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from hub.reports.review import Review


@dataclass(frozen=True)
class Row:
    key: str  # the code, for links and sorting
    name: str  # what people call it
    sessions: int
    session_hours: float
    busy_hours: float
    members: int
    utilisation: float | None  # None where it means nothing (a public, a month)
    machines: int = 0
    group: str = ""  # a machine's type, by name


@dataclass(frozen=True)
class FunderReview:
    year: int
    lab_name: str
    lab_address: str
    opening_spec: str
    opening_hours: float
    sessions: int
    session_hours: float
    busy_hours: float
    members: int
    trainings: int
    new_members_trained: int
    jobs: int
    utilisation: float
    by_type: list[Row]
    machines: list[Row]
    by_public: list[Row]
    by_month: list[Row]


def capped(busy_hours: float, opening_hours: float, machines: int = 1) -> float:
    """Busy hours over the hours the lab was open (times the machines), never above 1: a
    print running on overnight does not make a machine more than fully used."""
    open_time = opening_hours * machines
    if not open_time > 0 or math.isnan(busy_hours) or busy_hours <= 0:
        return 0.0
    return min(busy_hours, open_time) / open_time


def funder_review(
    review: Review,
    *,
    lab_name: str,
    lab_address: str,
    machine_names: dict[str, str],
    type_names: dict[str, str],
) -> FunderReview:
    usage = review.usage
    opened = float(usage.opening_hours)
    machines = [
        Row(
            key=code,
            name=machine_names.get(code, code),
            sessions=int(v["sessions"]),
            session_hours=float(v["session_hours"]),
            busy_hours=float(v["machine_busy_hours"]),
            members=int(v["members"]),
            utilisation=capped(float(v["machine_busy_hours"]), opened),
            machines=1,
            group=type_names.get(str(v["machine_type"]), str(v["machine_type"])),
        )
        for code, v in usage.by_machine.items()
    ]
    machines.sort(key=lambda r: (r.group.lower(), r.name.lower()))
    by_type: list[Row] = []
    for code, figures in usage.by_machine_type.items():
        mine = [r for r in machines if _type(usage, r.key) == code]
        busy = sum(r.busy_hours for r in mine)
        by_type.append(
            Row(
                key=code,
                name=type_names.get(code, code),
                sessions=int(figures["sessions"]),
                session_hours=float(figures["session_hours"]),
                busy_hours=busy,
                members=int(figures["members"]),
                utilisation=capped(busy, opened, len(mine)) if mine else 0.0,
                machines=len(mine),
            )
        )
    by_type.sort(key=lambda r: -r.session_hours)
    by_public = sorted(
        (
            Row(
                key=category,
                name=category,
                sessions=int(v["sessions"]),
                session_hours=float(v["session_hours"]),
                busy_hours=float(v["busy_hours"]),
                members=int(v["members"]),
                utilisation=None,
            )
            for category, v in usage.by_category.items()
        ),
        key=lambda r: -r.session_hours,
    )
    seen = usage.by_period
    by_month = [
        Row(
            key=month,
            name=month,
            sessions=int(seen.get(month, {}).get("sessions", 0)),
            session_hours=float(seen.get(month, {}).get("session_hours", 0.0)),
            busy_hours=float(seen.get(month, {}).get("busy_hours", 0.0)),
            members=int(seen.get(month, {}).get("members", 0)),
            utilisation=None,
        )
        for month in (f"{review.year:04d}-{m:02d}" for m in range(1, 13))
    ]
    totals = usage.totals
    busy_total = float(totals["machine_busy_hours"])
    return FunderReview(
        year=review.year,
        lab_name=lab_name,
        lab_address=lab_address,
        opening_spec=usage.opening_spec,
        opening_hours=opened,
        sessions=int(totals["sessions"]),
        session_hours=float(totals["session_hours"]),
        busy_hours=busy_total,
        members=int(totals["unique_members"]),
        trainings=int(totals["trainings_delivered"]),
        new_members_trained=int(totals["new_members_trained"]),
        jobs=int(totals["jobs"]),
        utilisation=(
            sum(capped(r.busy_hours, opened) for r in machines) / len(machines) if machines else 0.0
        ),
        by_type=by_type,
        machines=machines,
        by_public=by_public,
        by_month=by_month,
    )


def _type(usage: Any, machine: str) -> str:
    return str(usage.by_machine.get(machine, {}).get("machine_type", ""))


def bar_chart(
    bars: list[tuple[str, float, str]], *, title: str, width: int = 640, bar: int = 22
) -> str:
    """A horizontal bar chart as inline SVG, drawn on the server (no script, no CDN): each
    bar is (label, value, the value as the reader writes it). Every text is escaped here."""
    from html import escape as _escape

    def escape(text: str) -> str:
        # Control characters and lone surrogates are not XML: an SVG holding one is broken.
        kept = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs"))
        return _escape(kept)

    gap, label_w, value_w = 6, 190, 90
    height = max(1, len(bars)) * (bar + gap) + gap
    top = max((v for _, v, _ in bars if math.isfinite(v)), default=0.0) or 1.0
    span = width - label_w - value_w
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, value, shown) in enumerate(bars):
        y = gap + i * (bar + gap)
        w = value / top * span if math.isfinite(value) and value > 0 else 0.0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end">'
            f"{escape(label[:32])}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" class="bar"></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + bar * 0.7:.1f}">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
