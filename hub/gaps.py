"""Gap repair: when an agent's sequence has holes, ask it to send again from the first one.

The agent keeps its last 10,000 sent events in its journal, so whatever the hub missed (a
first start before its subscription existed, a broker that lost a queue) comes back; the
envelope id makes the repeats harmless.

A hole in the middle shows in the sequence numbers the hub has. A hole at the tail (the
agent's last events, sent and acknowledged by a broker that then lost them) does not: no
later event arrives to reveal it. The agent's heartbeat (its retained status) carries its
newest sequence number, `last_seq`; when that stays above the highest the hub has stored,
with nothing waiting in the agent's backlog, the tail is asked for like any other hole.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.models import AgentSeq, Machine

log = logging.getLogger(__name__)


def first_missing_seq(session: Session, site: str, machine: str, max_seq: int) -> int | None:
    """The lowest sequence number below `max_seq` that the hub has not stored."""
    row = session.execute(
        text("SELECT MIN(seq) FROM event WHERE site = :site AND machine = :machine"),
        {"site": site, "machine": machine},
    ).one()
    if row[0] is None:
        return None
    if row[0] > 1:
        return 1
    hole = session.execute(
        text(
            "SELECT MIN(e.seq) + 1 FROM event e WHERE e.site = :site AND e.machine = :machine "
            "AND e.seq < :max_seq AND NOT EXISTS (SELECT 1 FROM event n WHERE n.site = e.site "
            "AND n.machine = e.machine AND n.seq = e.seq + 1)"
        ),
        {"site": site, "machine": machine, "max_seq": max_seq},
    ).one()
    return int(hole[0]) if hole[0] is not None else None


def gaps_to_repair(
    engine: Engine, *, now: datetime, settle: timedelta
) -> list[tuple[str, str, int]]:
    """(site, machine, from_seq) for agents with holes that have had time to fill by themselves."""
    found = []
    with Session(engine) as session:
        for row in session.exec(select(AgentSeq)):
            if row.missing <= 0 or row.last_event_at is None or now - row.last_event_at < settle:
                continue
            start = first_missing_seq(session, row.site, row.machine, row.max_seq)
            if start is not None:
                found.append((row.site, row.machine, start))
    return found


def tail_gaps(engine: Engine) -> dict[tuple[str, str], tuple[int, int]]:
    """(site, machine) -> (highest seq stored, agent's last_seq) for online agents whose
    heartbeat reports events the hub has not stored and nothing left to send."""
    found: dict[tuple[str, str], tuple[int, int]] = {}
    with Session(engine) as session:
        stored = {(r.site, r.machine): r.max_seq for r in session.exec(select(AgentSeq))}
        for machine in session.exec(select(Machine).where(Machine.online == True)):  # noqa: E712
            status = machine.last_status if isinstance(machine.last_status, dict) else {}
            last_seq, backlog = status.get("last_seq"), status.get("backlog")
            if not isinstance(last_seq, int) or isinstance(last_seq, bool):
                continue
            if isinstance(backlog, int) and backlog > 0:
                continue  # still sending: the events are on their way
            top = stored.get((machine.site, machine.code), 0)
            if last_seq > top:
                found[(machine.site, machine.code)] = (top, last_seq)
    return found


class GapRepairer:
    """Checks every `period_s` and sends `sync` with `from_seq` through `send_command`."""

    def __init__(
        self, engine: Engine, send_command: object, *, period_s: float = 60, settle_s: float = 30
    ) -> None:
        self.engine = engine
        self.send_command = send_command
        self.period_s, self.settle = period_s, timedelta(seconds=settle_s)
        # Tail gaps as first seen: (highest seq stored then, when). Asked for once the same
        # tail has stayed missing for `settle` (a status can overtake its last events).
        self._tails: dict[tuple[str, str], tuple[int, datetime]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gap-repair", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check_once(self) -> int:
        now = datetime.now(UTC)
        asks = {
            (site, machine): from_seq
            for site, machine, from_seq in gaps_to_repair(self.engine, now=now, settle=self.settle)
        }
        tails = tail_gaps(self.engine)
        for key, (top, last_seq) in tails.items():
            seen = self._tails.get(key)
            if seen is None or seen[0] != top:
                self._tails[key] = seen = (top, now)  # new, or events arrived since
            if key not in asks and now - seen[1] >= self.settle:
                log.warning(
                    "%s/%s reports events up to seq %d, the hub has up to %d: asking for the "
                    "tail again",
                    key[0],
                    key[1],
                    last_seq,
                    top,
                )
                asks[key] = top + 1
        for key in set(self._tails) - set(tails):
            del self._tails[key]
        for (site, machine), from_seq in sorted(asks.items()):
            log.info("asking %s/%s to send its events again from seq %d", site, machine, from_seq)
            self.send_command(site, machine, "sync", {"from_seq": from_seq})  # type: ignore[operator]
        return len(asks)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.check_once()
            except Exception:
                log.exception("gap repair failed; will retry")
