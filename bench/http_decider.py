"""The baseline of the latency benchmark: the decision asked of a hub over HTTP.

A separate process on loopback serving POST /decide the way an online-only system would:
each request looks the badge, its member and their training up in a real hub database
(SQLite, the hub's own schema and demo data plus 500 members), then answers.
Run by bench_edge_latency: python -m bench.http_decider PORT DATABASE_URL
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI
from sqlmodel import Session, select

from hub.core.db import make_engine
from hub.models import Badge, Machine, Member, MemberStatus, Training


def build_app(database_url: str, machine_code: str = "laser-1") -> FastAPI:
    engine = make_engine(database_url)
    app = FastAPI()

    @app.post("/decide")
    def decide_badge(body: dict[str, str]) -> dict[str, object]:
        with Session(engine) as session:
            machine = session.exec(select(Machine).where(Machine.code == machine_code)).one()
            row = session.exec(
                select(Badge, Member)
                .join(Member, Badge.member_id == Member.id)  # type: ignore[arg-type]
                .where(Badge.uid == body["badge"], Badge.revoked_at.is_(None))  # type: ignore[union-attr]
            ).first()
            if row is None:
                return {"granted": False, "reason": "unknown_badge"}
            _, member = row
            if member.status != MemberStatus.ACTIVE:
                return {"granted": False, "reason": "member_inactive"}
            now = datetime.now(UTC)
            for training in session.exec(
                select(Training).where(
                    Training.member_id == member.id,
                    Training.machine_type_id == machine.machine_type_id,
                )
            ):
                if training.expires_at is None or training.expires_at > now:
                    return {"granted": not machine.locked, "reason": None}
            return {"granted": False, "reason": "not_trained"}

    return app


if __name__ == "__main__":
    uvicorn.run(
        build_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning"
    )
