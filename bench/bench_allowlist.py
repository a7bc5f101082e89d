"""Allow-list: time to rebuild and sign one machine's list with 5,000 members, next to a bare
SELECT of the same rows in the same run, on SQLite (and PostgreSQL when configured); then the
same list once every machine holds a month of bookings (eight a day, each a member's), which
the list carries for its whole validity (31 days here), with its ratio to the list without.

Run: ATELIER_TEST_DATABASE_URL=... .venv/bin/python -m bench.bench_allowlist [--members 5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.models import Badge, Booking, Machine, MachineType, Member, Training
from hub.services.allowlists import allowlist_body
from protocol.allowlist import sign_body, verify_allowlist
from tests.support.databases import throwaway_postgres_database

RUNS = 20
TTL = timedelta(days=31)  # the list carries a month of bookings
BOOKINGS_A_DAY = 8


def populate(url: str, members: int) -> None:
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        laser = session.exec(select(MachineType).where(MachineType.code == "laser")).one()
        now = datetime.now(UTC)
        for i in range(members):
            member = Member(name=f"Member {i}", email=f"m{i}@example.org")
            session.add(member)
            session.flush()
            session.add(Badge(uid=f"{0x20000000 + i:08X}", member_id=member.id))
            if i % 4:  # three in four trained on the laser
                session.add(
                    Training(
                        member_id=member.id,
                        machine_type_id=laser.id,
                        expires_at=now + timedelta(days=365),
                    )
                )
        session.commit()
    engine.dispose()


def add_bookings(url: str, days: int = 31) -> int:
    """A month of bookings on every machine from now: eight one-hour slots a day, each of a
    different member."""
    engine = make_engine(url)
    with Session(engine) as session:
        machines = [m.id for m in session.exec(select(Machine))]
        members = [m.id for m in session.exec(select(Member).limit(BOOKINGS_A_DAY * days))]
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        rows = []
        for machine_id in machines:
            for day in range(days):
                for slot in range(BOOKINGS_A_DAY):
                    begins = start + timedelta(days=day, hours=9 + slot)
                    rows.append(
                        Booking(
                            machine_id=machine_id,
                            member_id=members[(day * BOOKINGS_A_DAY + slot) % len(members)],
                            starts_at=begins,
                            ends_at=begins + timedelta(hours=1),
                        )
                    )
        session.add_all(rows)
        session.commit()
    engine.dispose()
    return len(rows)


def measure(url: str) -> tuple[float, float, int]:
    engine = make_engine(url)
    key = Ed25519PrivateKey.generate()
    build, bare = [], []
    size = 0
    with Session(engine) as session:
        machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        for _ in range(RUNS):
            started = time.perf_counter()
            rows = session.execute(
                text(
                    "SELECT b.uid, m.ref, m.status, t.level, t.expires_at, t.supervised_only "
                    "FROM badge b JOIN member m ON m.id = b.member_id "
                    "LEFT JOIN training t ON t.member_id = m.id AND t.machine_type_id = :mt "
                    "WHERE b.revoked_at IS NULL"
                ),
                {"mt": machine.machine_type_id},
            ).all()
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            body = allowlist_body(session, machine, now=datetime.now(UTC), ttl=TTL)
            payload = sign_body(body, key)
            build.append(time.perf_counter() - started)
            size = len(payload)
            assert len(body["entries"]) == len(rows)
        session.rollback()
    verify_allowlist(payload, key.public_key())
    print(f"          ({len(body.get('bookings', []))} bookings in the list)")
    engine.dispose()
    return statistics.median(build), statistics.median(bare), size


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'allowlist.db'}"
        return
    with throwaway_postgres_database() as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=5000)
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgres"] if os.environ.get("ATELIER_TEST_DATABASE_URL") else [])
    print(f"allow-list for one machine, {args.members} members (+ demo), median of {RUNS}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            with database(kind, Path(tmp)) as url:
                populate(url, args.members)
                build, bare, size = measure(url)
                print(
                    f"{kind:<9} rebuild + sign {build * 1000:6.1f} ms   bare SELECT of the "
                    f"same rows {bare * 1000:5.1f} ms   ratio {build / bare:4.1f}x   "
                    f"list {size / 1024:.0f} kB   (goal: < 50 ms)"
                )
                made = add_bookings(url)
                booked, _, booked_size = measure(url)
                print(
                    f"{kind:<9} with {made} bookings (a month on every machine): rebuild + "
                    f"sign {booked * 1000:6.1f} ms   list {booked_size / 1024:.0f} kB   "
                    f"ratio to without {booked / build:4.2f}x   (goal: within 2x)"
                )


if __name__ == "__main__":
    main()
