"""Fleet: one hub process, N simulated machines on a real Mosquitto; hub CPU and live-state lag.

The machines are lightweight: one paho connection each speaking the wire contract (the
envelopes and messages of protocol/), not N full agents (no journal, relay or reader), so the
figures are the hub's. Each machine sends telemetry once a second (QoS 0), its retained status
every 30 s, and a badge session every few minutes (badge.granted + session.started, then
session.ended, QoS 1, each followed by the status that shows it, as an agent does).

Measured over the window, after a warm-up:
- the hub's CPU (`atelier hub serve` in its own process: HTTP, ingest, allow-lists; SQLite is
  in-process, so its work counts; PostgreSQL's server would not), from /proc, as a share of
  one core; beside it, in the same run, a bare paho subscriber taking the same stream;
- the lag from a session leaving a machine to the hub's live state showing it: the machine's
  `last_status` (what GET /api/v1/machines reads) carrying the new session, or no longer
  carrying the ended one; and to the session's row existing (the event path). The database
  is polled every 50 ms from this process, which adds up to 50 ms to each lag.

Run: .venv/bin/python -m bench.bench_fleet [--machines 300] [--seconds 120] [--session-every 180]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import bindparam, text
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.models import Machine, MachineType, Member
from protocol import EventType, encode_envelope, new_envelope
from protocol.messages import Status, Telemetry
from protocol.topics import TopicKind, topic
from tests.support.mosquitto import MosquittoBroker, free_port
from tests.support.processes import Proc, wait_until

SITE = "lab"
HEARTBEAT_S = 30.0
WARM_UP_S = 10.0
POLL_S = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the simulated machines ---------------------------------------------------------------


@dataclass
class SimMachine:
    code: str
    client: mqtt.Client
    seq: int = 0
    session: dict[str, Any] | None = None
    started_mono: float = field(default_factory=time.monotonic)

    def publish_event(self, kind: EventType, data: dict[str, Any]) -> None:
        self.seq += 1
        env = new_envelope(machine=self.code, type=kind, seq=self.seq, data=data)
        self.client.publish(topic(SITE, self.code, TopicKind.EVENT), encode_envelope(env), qos=1)

    def publish_status(self) -> None:
        status = Status(
            machine=self.code,
            state="online",
            ts=datetime.now(UTC),
            version="bench",
            uptime_s=round(time.monotonic() - self.started_mono, 1),
            relay="closed" if self.session else "open",
            session=self.session,
            busy=bool(self.session),
            locked=False,
            reader_ok=True,
            backlog=0,
            acl_version=1,
        )
        self.client.publish(
            topic(SITE, self.code, TopicKind.STATUS), status.encode(), qos=1, retain=True
        )

    def publish_telemetry(self, rng: random.Random) -> None:
        working = self.session is not None
        values: dict[str, Any] = {
            "power_w": round(rng.uniform(600, 900), 1) if working else round(rng.uniform(2, 6), 1),
            "power_busy": working,
            "power_meter_online": True,
            "tool0_actual": round(rng.uniform(205, 212), 1),
            "bed_actual": round(rng.uniform(59, 61), 1),
        }
        sample = Telemetry(machine=self.code, ts=datetime.now(UTC), values=values)
        self.client.publish(topic(SITE, self.code, TopicKind.TELEMETRY), sample.encode(), qos=0)


@dataclass
class Transition:
    machine: str
    session_id: str | None  # what the live state must show: the new session, or none
    sent: float
    event_session: str | None = None  # a session.started whose row must appear
    live_lag: float | None = None
    event_lag: float | None = None


class Fleet:
    def __init__(
        self, broker: MosquittoBroker, codes: list[str], members: list[str], session_every: float
    ) -> None:
        self.broker = broker
        self.rng = random.Random(42)
        self.members = members
        self.session_every = session_every
        self.machines = [SimMachine(code, self._client(code)) for code in codes]
        self.transitions: list[Transition] = []
        self.counts = {"telemetry": 0, "events": 0, "statuses": 0}
        self.lock = threading.Lock()
        self.measuring = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)

    def _client(self, code: str) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-{code}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        # One account for all: 300 broker accounts would only cost the broker, not the hub.
        client.username_pw_set(self.broker.hub_user, self.broker.hub_password)
        client.max_inflight_messages_set(100)
        client.connect_async(self.broker.host, self.broker.port, keepalive=60)
        client.loop_start()
        return client

    def connect(self) -> None:
        wait_until(
            lambda: all(m.client.is_connected() for m in self.machines),
            timeout=60,
            what="every simulated machine to connect",
        )

    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        """Nothing more is sent; the connections stay."""
        self._stop.set()
        self._thread.join(timeout=10)

    def stop(self) -> None:
        self.pause()
        for machine in self.machines:
            machine.client.disconnect()
            machine.client.loop_stop()

    def _run(self) -> None:
        now = time.monotonic()
        due: list[tuple[float, int, str]] = []
        for index, _machine in enumerate(self.machines):
            # Staggered as real agents are: each started at its own moment.
            due.append((now + self.rng.uniform(0, 1), index, "telemetry"))
            due.append((now + self.rng.uniform(0, HEARTBEAT_S), index, "status"))
            due.append((now + self.rng.uniform(0, self.session_every), index, "session"))
        heapq.heapify(due)
        for machine in self.machines:
            machine.publish_status()
        while not self._stop.is_set():
            at, index, kind = heapq.heappop(due)
            wait = at - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            machine = self.machines[index]
            if kind == "telemetry":
                machine.publish_telemetry(self.rng)
                self._count("telemetry")
                heapq.heappush(due, (at + 1.0, index, kind))
            elif kind == "status":
                machine.publish_status()
                self._count("statuses")
                heapq.heappush(due, (at + HEARTBEAT_S, index, kind))
            elif machine.session is None:
                self._start_session(machine)
                length = self.rng.uniform(0.1, 0.5) * self.session_every
                heapq.heappush(due, (at + length, index, kind))
            else:
                self._end_session(machine)
                gap = self.rng.expovariate(1 / self.session_every)
                heapq.heappush(due, (at + max(5.0, gap), index, kind))

    def _count(self, kind: str, n: int = 1) -> None:
        if self.measuring:
            self.counts[kind] += n

    def _start_session(self, machine: SimMachine) -> None:
        session_id = str(uuid.uuid4())
        member = self.rng.choice(self.members)
        badge = f"04{self.rng.randrange(16**6):06X}"
        sent = time.monotonic()
        machine.publish_event(
            EventType.BADGE_GRANTED,
            {"badge": badge, "member": member, "session_id": session_id, "level": "user"},
        )
        machine.publish_event(
            EventType.SESSION_STARTED,
            {"session_id": session_id, "member": member, "badge": badge, "mode": "normal"},
        )
        machine.session = {
            "session_id": session_id,
            "member": member,
            "badge": badge,
            "mode": "normal",
            "started_at": datetime.now(UTC).isoformat(),
        }
        machine.publish_status()
        self._count("events", 2)
        self._count("statuses")
        self._record(Transition(machine.code, session_id, sent, event_session=session_id))

    def _end_session(self, machine: SimMachine) -> None:
        assert machine.session is not None
        sent = time.monotonic()
        started = datetime.fromisoformat(machine.session["started_at"])
        machine.publish_event(
            EventType.SESSION_ENDED,
            {
                "session_id": machine.session["session_id"],
                "member": machine.session["member"],
                "reason": "badge-out",
                "duration_s": (datetime.now(UTC) - started).total_seconds(),
                "busy_s": 0.0,
            },
        )
        machine.session = None
        machine.publish_status()
        self._count("events")
        self._count("statuses")
        self._record(Transition(machine.code, None, sent))

    def _record(self, transition: Transition) -> None:
        if self.measuring:
            with self.lock:
                self.transitions.append(transition)


# -- watching the hub's live state ---------------------------------------------------------


class LiveStateWatcher:
    """Polls the hub database (from this process) for the transitions the fleet sent."""

    def __init__(self, database_url: str, fleet: Fleet) -> None:
        self.engine = make_engine(database_url)
        self.fleet = fleet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            with self.fleet.lock:
                pending = [
                    t
                    for t in self.fleet.transitions
                    if t.live_lag is None or (t.event_session and t.event_lag is None)
                ]
            if not pending:
                continue
            with self.engine.connect() as conn:
                statuses = dict(conn.execute(text("SELECT code, last_status FROM machine")).all())
                wanted = [
                    t.event_session for t in pending if t.event_session and t.event_lag is None
                ]
                rows = set()
                if wanted:
                    rows = {
                        r[0]
                        for r in conn.execute(
                            text("SELECT id FROM session WHERE id IN :ids").bindparams(
                                bindparam("ids", expanding=True)
                            ),
                            {"ids": wanted},
                        )
                    }
            seen = time.monotonic()
            latest: dict[str, Transition] = {}
            for t in pending:
                latest[t.machine] = t  # an older transition overtaken is never matched
            for t in pending:
                if t.live_lag is None and latest[t.machine] is t:
                    status = statuses.get(t.machine)
                    if isinstance(status, str):
                        status = json.loads(status)
                    live = ((status or {}).get("session") or {}).get("session_id")
                    if live == t.session_id:
                        t.live_lag = seen - t.sent
                if t.event_session and t.event_lag is None and t.event_session in rows:
                    t.event_lag = seen - t.sent


# -- the run -------------------------------------------------------------------------------


BARE_SUBSCRIBER = """
import sys, threading, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
count = [0]
c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-bare",
                protocol=MQTTProtocolVersion.MQTTv5)
c.username_pw_set(user, password)
c.on_connect = lambda c, *a: c.subscribe([("atelier/v1/+/+/event", 1),
    ("atelier/v1/+/+/status", 1), ("atelier/v1/+/+/telemetry", 0)])
def on_message(c, u, m):
    count[0] += 1
c.on_message = on_message
c.connect(host, port)
c.loop_start()
sys.stdin.read()
print(count[0])
"""


def prepare_database(url: str, machines: int) -> tuple[list[str], list[str], str | None]:
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site=SITE)
        laser = session.exec(select(MachineType).where(MachineType.code == "laser")).one()
        assert laser.id is not None
        codes = [f"fleet-{i:03d}" for i in range(1, machines + 1)]
        for code in codes:
            session.add(
                Machine(
                    code=code,
                    name=f"Fleet machine {code}",
                    site=SITE,
                    kind=laser.kind,
                    machine_type_id=laser.id,
                    agent_id=code,
                )
            )
        session.commit()
        members = [m.ref for m in session.exec(select(Member))]
        token = _api_token(session)
    engine.dispose()
    return codes, members, token


def _api_token(session: Session) -> str | None:
    """A manager's token for GET /api/v1/machines (None where the hub has no accounts)."""
    try:
        from hub.auth import create_user, issue_token
        from hub.models import Role
    except ImportError:
        return None
    user = create_user(
        session, username="bench", password="bench-" + uuid.uuid4().hex, role=Role.MANAGER
    )
    raw, _ = issue_token(session, user, name="bench_fleet")
    session.commit()
    return str(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--session-every", type=float, default=180, help="mean gap, seconds")
    args = parser.parse_args()
    if args.machines < 1 or args.seconds <= 0 or args.session_every <= 0:
        parser.error("--machines, --seconds and --session-every must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="atelier-fleet-"))
    broker = MosquittoBroker(workdir / "broker")
    broker.start()
    url = f"sqlite:///{workdir / 'hub.db'}"
    http_port = free_port()
    hub: Proc | None = None
    bare: subprocess.Popen[str] | None = None
    fleet: Fleet | None = None
    watcher: LiveStateWatcher | None = None
    try:
        codes, members, token = prepare_database(url, args.machines)
        env = {
            "ATELIER_DATABASE_URL": url,
            "ATELIER_DATA_DIR": str(workdir / "hub"),
            "ATELIER_SITE": SITE,
            "ATELIER_MQTT_HOST": broker.host,
            "ATELIER_MQTT_PORT": str(broker.port),
            "ATELIER_MQTT_USERNAME": broker.hub_user,
            "ATELIER_MQTT_PASSWORD": broker.hub_password,
            "ATELIER_HTTP_PORT": str(http_port),
        }
        hub = Proc(["hub", "serve", "--log-level", "warning"], log=workdir / "hub.log", env=env)
        base = f"http://127.0.0.1:{http_port}"
        wait_until(
            lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200,
            timeout=60,
            what="the hub to answer /health",
            proc=hub,
        )
        bare = subprocess.Popen(
            [
                sys.executable,
                "-c",
                BARE_SUBSCRIBER,
                broker.host,
                str(broker.port),
                broker.hub_user,
                broker.hub_password,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        fleet = Fleet(broker, codes, members, args.session_every)
        fleet.connect()
        fleet.start()
        watcher = LiveStateWatcher(url, fleet)
        watcher.start()
        time.sleep(WARM_UP_S)  # retained statuses, first allow-lists, caches

        hub_cpu0, bare_cpu0, own_cpu0 = (
            cpu_seconds(hub.popen.pid),
            cpu_seconds(bare.pid),
            time.process_time(),
        )
        wall0 = time.monotonic()
        fleet.measuring = True
        time.sleep(args.seconds)
        fleet.measuring = False
        wall = time.monotonic() - wall0
        hub_share = (cpu_seconds(hub.popen.pid) - hub_cpu0) / wall
        bare_share = (cpu_seconds(bare.pid) - bare_cpu0) / wall
        own_share = (time.process_time() - own_cpu0) / wall
        fleet.pause()
        time.sleep(3)  # let the last transitions of the window be seen
        watcher.stop()

        with fleet.lock:
            transitions = list(fleet.transitions)
        live = [t.live_lag for t in transitions if t.live_lag is not None]
        events = [t.event_lag for t in transitions if t.event_lag is not None]
        started = sum(1 for t in transitions if t.event_session)

        api_ms: list[float] = []
        api_note = ""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=base, timeout=10, headers=headers) as http:
            for _ in range(10):
                begun = time.perf_counter()
                response = http.get("/api/v1/machines")
                api_ms.append((time.perf_counter() - begun) * 1000)
                if response.status_code != 200:
                    api_note = f" (answered {response.status_code}: not checked)"
                    break
            if not api_note:
                shown = {m["code"]: m["session_id"] for m in response.json()}
                expected = {m.code: (m.session or {}).get("session_id") for m in fleet.machines}
                agree = all(shown.get(code) == sid for code, sid in expected.items())
                api_note = f", agrees with the fleet: {'yes' if agree else 'NO'}"
    finally:
        if watcher is not None and watcher._thread.is_alive():
            watcher.stop()
        if fleet is not None:
            fleet.stop()
        if bare is not None:
            bare.communicate("", timeout=10)
        if hub is not None:
            hub.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    counts = fleet.counts
    print(
        f"fleet: {args.machines} simulated machines (one paho connection each speaking the "
        f"protocol, not full agents), telemetry 1/s, status every {HEARTBEAT_S:.0f} s, a session "
        f"every ~{args.session_every:.0f} s each; {wall:.0f} s measured after {WARM_UP_S:.0f} s "
        "warm-up; hub on SQLite"
    )
    print(
        f"in the window: {counts['telemetry']} telemetry ({counts['telemetry'] / wall:.0f}/s), "
        f"{counts['events']} events, {counts['statuses']} statuses; "
        f"{started} sessions started, {len(transitions) - started} ended"
    )
    print(
        f"hub CPU: {100 * hub_share:.1f}% of one core; a bare subscriber on the same stream: "
        f"{100 * bare_share:.1f}% (ratio {hub_share / bare_share:.1f}x); "
        f"the fleet and watcher process: {100 * own_share:.0f}%"
    )
    for name, lags, n in (
        ("live state (status -> machine.last_status)", live, len(transitions)),
        ("event stored (session.started -> its row)", events, started),
    ):
        if lags:
            print(
                f"lag, {name}: n={len(lags)}/{n}  p50 {1000 * statistics.median(lags):.0f} ms  "
                f"p95 {1000 * percentile(lags, 0.95):.0f} ms  max {1000 * max(lags):.0f} ms"
            )
        else:
            print(f"lag, {name}: nothing seen of {n}")
    print(
        f"GET /api/v1/machines ({len(codes) + 4} machines): p50 "
        f"{statistics.median(api_ms):.0f} ms{api_note}"
    )
    p95 = percentile(live, 0.95) if live else float("inf")
    print(
        f"goal: hub CPU < 30% of a core ({'met' if hub_share < 0.30 else 'NOT met'}), "
        f"p95 live-state lag < 1 s ({'met' if p95 < 1.0 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
