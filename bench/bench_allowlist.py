"""Allow-list: time to rebuild and sign one machine's list with 5,000 members, next to a bare
SELECT of the same rows in the same run, on SQLite (and PostgreSQL when configured).

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
from hub.models import Badge, Machine, MachineType, Member, Training
from hub.services.allowlists import allowlist_body
from protocol.allowlist import sign_body, verify_allowlist
from tests.support.databases import throwaway_postgres_database

RUNS = 20


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
            body = allowlist_body(session, machine, now=datetime.now(UTC), ttl=timedelta(days=7))
            payload = sign_body(body, key)
            build.append(time.perf_counter() - started)
            size = len(payload)
            assert len(body["entries"]) == len(rows)
        session.rollback()
    verify_allowlist(payload, key.public_key())
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
                f"{kind:<9} rebuild + sign {build * 1000:6.1f} ms   bare SELECT of the same "
                f"rows {bare * 1000:5.1f} ms   ratio {build / bare:4.1f}x   "
                f"list {size / 1024:.0f} kB   (goal: < 50 ms)"
            )


if __name__ == "__main__":
    main()
