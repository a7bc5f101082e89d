"""Reports at the scale of one lab-year, each next to a bare SELECT of its rows in the same run.

A generated year (2,000 members, 100 machines, 500,000 sessions with their busy periods and
print jobs) is bulk-loaded into SQLite and, when ATELIER_TEST_DATABASE_URL is set, into a
throwaway PostgreSQL database. Then, on each:
- a bare SELECT reading the year's rows (sessions; then sessions, busy periods and jobs),
- the usage statistics for the year (hub.reports.usage.usage_report),
- the yearly review (the same, plus trainings and maintenance, written as PDF and XLSX),
- the statistics page's figures (hub.services.statistics.overview, one pass) next to what the
  page computed before issue 18 (the year's report, then one more report per month),
- `billing close` of one month next to a bare SELECT of that month's sessions, and of them with
  their busy periods (what the close reads), and the pure pricing alone (when
  hub/services/billing/ is there), rolled back afterwards,
- the one-row-per-session CSV export in a child process (`atelier hub export usage --format
  csv --detail`): its time and its peak RSS, for a month and for the year (flat = the same).

Run: ATELIER_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
     .venv/bin/python -m bench.bench_reports [--sessions 500000] [--billing-only] [--stats-page]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.core.db import make_engine, migrate
from hub.models import (
    Machine,
    MachineKind,
    MachineType,
    Member,
    MemberCategory,
    Training,
    UTCDateTime,
)
from hub.reports.review import write_review_pdf, write_review_xlsx, yearly_review
from hub.reports.usage import usage_report
from hub.services.statistics import months, overview
from tests.support.databases import throwaway_postgres_database

PARIS = ZoneInfo("Europe/Paris")
YEAR = 2026
START, END = date(YEAR, 1, 1), date(YEAR + 1, 1, 1)
TYPES = [  # code, kind, machines
    ("laser", MachineKind.LASER, 20),
    ("printer", MachineKind.PRINTER, 50),
    ("cnc", MachineKind.CNC, 10),
    ("vinyl", MachineKind.OTHER, 10),
    ("embroidery", MachineKind.OTHER, 10),
]
CATEGORIES = [
    (MemberCategory.INDIVIDUAL, 50),
    (MemberCategory.STUDENT, 30),
    (MemberCategory.PROFESSIONAL, 12),
    (MemberCategory.COMPANY, 5),
    (MemberCategory.STAFF, 3),
]
SESSION_COLS = (
    "id, site, machine, member_ref, badge, mode, supervisor_ref, started_at, ended_at, "
    "end_reason, duration_s, busy_s"
)
BUSY_COLS = "site, machine, source, session_id, member_ref, started_at, ended_at, busy_s"
JOB_COLS = (
    "id, site, machine, job_id, file, session_id, member_ref, started_at, ended_at, "
    "duration_s, state"
)
BATCH = 20_000


# --- one lab-year -------------------------------------------------------------------------
def _small_tables(engine: Engine, members: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Machine types, machines, members and trainings through the ORM (a few thousand rows)."""
    with Session(engine) as session:
        types = [MachineType(code=c, name=c.title(), kind=k) for c, k, _ in TYPES]
        session.add_all(types)
        session.flush()
        machines: list[Machine] = []
        for mtype, (code, kind, count) in zip(types, TYPES, strict=True):
            machines += [
                Machine(
                    code=f"{code}-{n:02d}",
                    name=f"{code} {n}",
                    site="lab",
                    kind=kind,
                    machine_type_id=mtype.id,
                )
                for n in range(1, count + 1)
            ]
        session.add_all(machines)
        cats = [c for c, _ in CATEGORIES]
        weights = [w for _, w in CATEGORIES]
        people = [
            Member(
                ref=f"m-{n:08x}",
                name=f"Member {n}",
                email=f"member{n}@example.org",
                category=rng.choices(cats, weights)[0],
                created_at=datetime(2023, 1, 1, tzinfo=UTC),
            )
            for n in range(members)
        ]
        session.add_all(people)
        session.flush()
        for person in people:
            for mtype in rng.sample(types, rng.randint(1, 3)):
                granted = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
                    days=rng.randrange(3 * 365), hours=rng.randrange(24)
                )
                session.add(
                    Training(member_id=person.id, machine_type_id=mtype.id, granted_at=granted)
                )
        session.commit()
        return [m.code for m in machines], [p.ref for p in people]


def _year_rows(
    sessions: int, machines: list[str], refs: list[str], rng: random.Random
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...] | None]]:
    """(session, busy period, job or None) rows, in UTC, spread over the year's afternoons."""
    day0 = datetime(YEAR, 1, 1)
    for n in range(sessions):
        local = day0 + timedelta(
            days=rng.randrange(365), hours=rng.randint(9, 21), minutes=rng.randrange(60)
        )
        start = local.replace(tzinfo=PARIS).astimezone(UTC)
        seconds = float(rng.randint(5, 240) * 60)
        end = start + timedelta(seconds=seconds)
        busy = round(seconds * rng.uniform(0.2, 0.9), 1)
        machine = rng.choice(machines)
        ref = refs[int(len(refs) * rng.random() ** 2)]  # a few heavy users, a long tail
        roll = rng.random()
        mode, supervisor = ("supervised", refs[0]) if roll < 0.05 else ("normal", None)
        sid = f"s-{n:08d}"
        session = (
            "lab",
            machine,
            ref,
            "",
            mode,
            supervisor,
            start,
            end,
            "badge_out",
            seconds,
            busy,
        )
        period = (
            "lab",
            machine,
            "input",
            sid,
            ref,
            start + timedelta(seconds=30),
            start + timedelta(seconds=30 + busy),
            busy,
        )
        job = None
        if machine.startswith("printer"):
            state = "failed" if roll > 0.95 else "finished"
            job = (f"{machine}:{n}", "lab", machine, str(n), "part.gcode", sid, ref)
            job += (
                start + timedelta(seconds=30),
                start + timedelta(seconds=30 + busy),
                busy,
                state,
            )
        yield (sid, *session), period, job


def _sqlite_text(value: Any) -> Any:
    # The storage format of SQLAlchemy's SQLite DATETIME, which UTCDateTime writes in UTC.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def load_year(url: str, sessions: int, members: int) -> None:
    rng = random.Random(YEAR)
    migrate(url)
    engine = make_engine(url)
    try:
        machines, refs = _small_tables(engine, members, rng)
        raw = engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            rows = _year_rows(sessions, machines, refs, rng)
            if engine.dialect.name == "sqlite":
                _load_sqlite(driver, rows)
            else:
                _load_postgres(driver, rows)
            raw.commit()
        finally:
            raw.close()
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def _batches(rows: Iterator[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _load_sqlite(conn: Any, rows: Iterator[Any]) -> None:
    def marks(cols: str) -> str:
        return ", ".join("?" for _ in cols.split(","))

    for batch in _batches(rows):
        conn.executemany(
            f"INSERT INTO session ({SESSION_COLS}) VALUES ({marks(SESSION_COLS)})",
            [tuple(map(_sqlite_text, s)) for s, _, _ in batch],
        )
        conn.executemany(
            f"INSERT INTO busy_period ({BUSY_COLS}) VALUES ({marks(BUSY_COLS)})",
            [tuple(map(_sqlite_text, b)) for _, b, _ in batch],
        )
        conn.executemany(
            f"INSERT INTO print_job ({JOB_COLS}) VALUES ({marks(JOB_COLS)})",
            [tuple(map(_sqlite_text, j)) for _, _, j in batch if j],
        )


def _load_postgres(conn: Any, rows: Iterator[Any]) -> None:
    with conn.cursor() as cur:
        for batch in _batches(rows):
            for table, cols, index in (
                ("session", SESSION_COLS, 0),
                ("busy_period", BUSY_COLS, 1),
                ("print_job", JOB_COLS, 2),
            ):
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in batch:
                        if row[index] is not None:
                            copy.write_row(row[index])


# --- what is timed ------------------------------------------------------------------------
def _utc(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=PARIS).astimezone(UTC)


def bare_select(engine: Engine, tables: tuple[str, ...], start: date, end: date) -> int:
    """Read the rows as they are, no conversion, no work: the floor a report is held to."""
    columns = {"session": SESSION_COLS, "busy_period": BUSY_COLS, "print_job": JOB_COLS}
    count = 0
    with engine.connect() as conn:
        for table in tables:
            query = sa.text(
                f"SELECT {columns[table]} FROM {table} WHERE started_at >= :a AND started_at < :b"
            ).bindparams(
                sa.bindparam("a", _utc(start), type_=UTCDateTime()),
                sa.bindparam("b", _utc(end), type_=UTCDateTime()),
            )
            result = conn.execution_options(yield_per=5_000).execute(query)
            for part in result.partitions():
                count += len(part)
    return count


def timed(work: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        out = work()
        best = min(best, time.perf_counter() - began)
    return best, out


def review_both(engine: Engine) -> int:
    review = yearly_review(engine, YEAR, tz=PARIS, site="lab")
    pdf, xlsx = io.BytesIO(), io.BytesIO()
    write_review_pdf(review, pdf)
    write_review_xlsx(review, xlsx)
    return review.usage.totals["sessions"]


def billing_close(engine: Engine, month: str) -> tuple[float, float, int] | None:
    """Close one month with flat rates, then roll back: (seconds of the close itself, seconds
    of its pricing alone by the pure rules, statements); None if billing is absent."""
    try:
        from hub.domain.billing import bill_month
        from hub.services.billing import BillingRate, all_rates, close_month, parse_month
        from hub.services.billing.usage import _people, _usage
    except ImportError:
        return None
    with Session(engine) as session:
        for code, _, _ in TYPES:
            for category, _ in CATEGORIES:
                session.add(
                    BillingRate(
                        machine_type=code,
                        category=category.value,
                        effective_from=date(2025, 1, 1),
                        cents_per_hour=1200,
                        rounding_minutes=15,
                    )
                )
        session.flush()
        began = time.perf_counter()
        closing = close_month(
            session, month, tz=PARIS, now=datetime(YEAR + 1, 2, 1, tzinfo=UTC), actor="bench"
        )
        session.flush()
        seconds = time.perf_counter() - began
        # Where the time goes: the pure rules on the same records, timed on their own.
        first, nxt = parse_month(month)
        records = _usage(session, first, nxt, PARIS, _people(session))
        rates = all_rates(session)
        began = time.perf_counter()
        bill_month(records, rates, month, PARIS)
        pricing = time.perf_counter() - began
        session.rollback()
    return seconds, pricing, len(closing.statements)


# The real command, then the process's own high-water mark. VmHWM belongs to the new
# program's memory; ru_maxrss would also count the benchmark's pages from before exec.
CHILD = """
import sys
from atelier_cli import app
try:
    app()
finally:
    with open("/proc/self/status") as status:
        hwm = [line.split()[1] for line in status if line.startswith("VmHWM")]
    print("VmHWM", hwm[0], file=sys.stderr)
"""


def export_in_child(url: str, start: date, end: date, out: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, rows) of the CSV session export run as the real command."""
    env = {
        **os.environ,
        "ATELIER_DATABASE_URL": url,
        "ATELIER_DATA_DIR": str(out.parent / "data"),
        "ATELIER_TIMEZONE": "Europe/Paris",
    }
    command = [
        sys.executable, "-c", CHILD,
        "hub", "export", "usage", "--from", str(start), "--to", str(end),
        "--format", "csv", "--detail", "--out", str(out),
    ]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"export failed: {done.stderr[-2000:]}")
    peak_kb = int(done.stderr.split("VmHWM")[-1].split()[0])
    with out.open() as handle:
        rows = sum(1 for _ in handle) - 1
    return seconds, peak_kb / 1024, rows


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'year.db'}"
    else:
        with throwaway_postgres_database() as url:
            yield url


def year_reports(kind: str, engine: Engine, repeat: int, t_bare_s: float, n_sessions: int) -> None:
    """The usage statistics and the yearly review of the year, next to its bare SELECTs."""
    t_bare_all, n_all = timed(
        lambda: bare_select(engine, ("session", "busy_period", "print_job"), START, END),
        repeat,
    )
    t_usage, report = timed(lambda: usage_report(engine, start=START, end=END, tz=PARIS), repeat)
    t_review, reviewed = timed(lambda: review_both(engine), repeat)
    assert report.totals["sessions"] == reviewed == n_sessions, "the figures cover every row"
    print(f"{kind:9} bare SELECT sessions+busy+jobs      {t_bare_all:7.2f} s  ({n_all} rows)")
    for name, seconds in (
        ("usage statistics", t_usage),
        ("yearly review (PDF+XLSX)", t_review),
    ):
        print(
            f"{kind:9} {name:34} {seconds:7.2f} s  ratio {seconds / t_bare_all:4.1f}x "
            f"the rows it covers, {seconds / t_bare_s:4.1f}x the sessions alone "
            "(goal: within 3x)"
        )


def stats_page(kind: str, engine: Engine, repeat: int) -> None:
    """The statistics page's figures for the default window (a year to today), in one pass,
    next to the page before issue 18: the same report, then one report per month drawn."""
    today = END - timedelta(days=1)

    def before() -> Any:
        seen = overview(engine, start=None, end=None, today=today, tz=PARIS)
        return [
            usage_report(engine, start=first, end=nxt, tz=PARIS).by_category
            for first, nxt in months(seen.start, seen.end)
        ]

    t_before, per_month = timed(before, repeat)
    t_now, seen = timed(
        lambda: overview(engine, start=None, end=None, today=today, tz=PARIS), repeat
    )
    assert [cats for _, cats in seen.by_month] == per_month, "the same table either way"
    print(
        f"{kind:9} statistics page figures              {t_now:7.2f} s  ratio "
        f"{t_now / t_before:4.2f}x the page before (report + {len(per_month)} monthly "
        f"reports: {t_before:.2f} s)"
    )


def run(kind: str, url: str, args: argparse.Namespace, workdir: Path) -> None:
    began = time.perf_counter()
    load_year(url, args.sessions, args.members)
    print(f"{kind:9} loaded in {time.perf_counter() - began:.1f} s")
    engine = make_engine(url)
    repeat = args.repeat
    try:
        bare_select(engine, ("session",), START, END)  # warm the cache for everyone
        t_bare_s, n_sessions = timed(lambda: bare_select(engine, ("session",), START, END), repeat)
        print(
            f"{kind:9} bare SELECT of the year's sessions   {t_bare_s:7.2f} s  ({n_sessions} rows)"
        )
        if args.stats_page:
            stats_page(kind, engine, repeat)
            return
        if not args.billing_only:
            year_reports(kind, engine, repeat, t_bare_s, n_sessions)
            stats_page(kind, engine, repeat)
        month, month_from, month_to = "2026-10", date(YEAR, 10, 1), date(YEAR, 11, 1)
        t_bare_month, n_month = timed(
            lambda: bare_select(engine, ("session",), month_from, month_to), repeat
        )
        t_bare_read, n_read = timed(
            lambda: bare_select(engine, ("session", "busy_period"), month_from, month_to), repeat
        )
        closes = [billing_close(engine, month) for _ in range(repeat)]
        best = min(c for c in closes if c is not None) if closes[0] is not None else None
        if best is None:
            print(f"{kind:9} billing close: hub/services/billing/ is not there; not measured")
        else:
            t_bill, t_price, statements = best
            print(
                f"{kind:9} billing close --month {month}       {t_bill:7.2f} s  ratio "
                f"{t_bill / t_bare_read:4.1f}x the rows it reads, {t_bill / t_bare_month:4.1f}x "
                "the sessions alone (goal: within 3x)"
            )
            print(
                f"{kind:9}   {statements} statements, {n_month} sessions; bare SELECT of the "
                f"sessions {t_bare_month:.2f} s, with their busy periods {t_bare_read:.2f} s "
                f"({n_read} rows); the pure rules alone price them in {t_price:.2f} s "
                f"({t_price / t_bare_month:.1f}x the sessions)"
            )
        for label, start, end in (
            ()
            if args.billing_only
            else (
                ("a month", date(YEAR, 10, 1), date(YEAR, 11, 1)),
                ("the year", START, END),
            )
        ):
            seconds, peak, rows = export_in_child(url, start, end, workdir / f"{kind}.csv")
            print(
                f"{kind:9} CSV export, {label:9} {rows:7d} rows  {seconds:6.2f} s  "
                f"peak RSS {peak:6.1f} MB (goal: < 100 MB, flat)"
            )
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=500_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=1, help="best of N for each timing")
    parser.add_argument(
        "--billing-only",
        action="store_true",
        help="only `billing close` and its bare SELECTs (no year reports, no CSV export)",
    )
    parser.add_argument(
        "--stats-page",
        action="store_true",
        help="only the statistics page's figures, next to the page before issue 18",
    )
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgres"] if os.environ.get("ATELIER_TEST_DATABASE_URL") else [])
    print(
        f"reports over one lab-year: {args.members} members, 100 machines, "
        f"{args.sessions} sessions (+ busy periods, print jobs); best of {args.repeat}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="atelier-reports-"))
    try:
        for kind in kinds:
            with database(kind, workdir) as url:
                run(kind, url, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
