"""The CSV writer's two dialects against a bare csv.writer of the same rows, in one run.

Rows shaped like the per-session usage export (hub/reports/usage_files.py): text, a local
time, floats. Prints each dialect's time and its ratio to the bare writer: `standard` takes
the rows as they are (`plain`), `excel-fr` converts every cell (decimal comma, formulas).

Run: PYTHONPATH=. .venv/bin/python -m bench.bench_csv_dialects [--rows 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import time
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

from hub.reports.csv_files import EXCEL_FR, STANDARD, csv_chunks

PARIS = ZoneInfo("Europe/Paris")


def rows(count: int) -> list[list[Any]]:
    rng = random.Random(7)
    return [
        [
            f"s{i}",
            f"laser-{i % 7}",
            "laser",
            f"m-{rng.getrandbits(32):08x}",
            "student",
            "2026-10-06T14:30:00+02:00",
            "2026-10-06T15:12:00+02:00",
            round(rng.random() * 4, 4),
            round(rng.random() * 2, 4),
            "normal",
            "",
        ]
        for i in range(count)
    ]


def bare(data: Iterable[list[Any]]) -> int:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in data:
        writer.writerow(row)
    return len(out.getvalue())


def best(run: Callable[[], int], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = rows(args.rows)
    header = [f"c{i}" for i in range(11)]
    baseline = best(lambda: bare(data), args.repeat)
    print(f"{args.rows} rows; bare csv.writer {baseline:.3f} s")  # noqa: T201
    for dialect in (STANDARD, EXCEL_FR):

        def written(dialect: Any = dialect) -> int:
            chunks = csv_chunks(header, data, dialect=dialect, tz=PARIS, plain=True)
            return sum(len(c) for c in chunks)

        took = best(written, args.repeat)
        print(f"{dialect.name:<9} {took:.3f} s  x{took / baseline:.2f} the bare writer")  # noqa: T201


if __name__ == "__main__":
    main()
