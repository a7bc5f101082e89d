"""The fault suite's lab: a real Mosquitto, `atelier hub serve` as a process, a fleet of agents.

Agents run in this process (`Agent`, with the `sim` reader and, where a scenario needs it, an
injected clock) or as `atelier-agent` processes (to be SIGKILLed). An agent may reach the
broker through a `Link`, a TCP relay the test can cut like a pulled cable. Each scenario
reports events produced (the agents' sequence numbers), stored and duplicated (the hub's
rows) and the time to recover; the figures are printed, collected into
`<pytest basetemp>/fault-results.json` and summed up at the end of the run.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from edge.agent import Agent
from edge.config import parse_config
from edge.hardware.sim_reader import request
from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.models import Event, Machine, MachineType
from tests.support.databases import postgres_url, throwaway_postgres_database
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import Proc, agent_command, wait_until

HUGO = "04C3D4E5"  # trained on lasers in the demo data; every fleet machine is a laser
ALLOWLIST_TTL_HOURS = 12
RESULTS: list[dict[str, Any]] = []
_RESULTS_FILE: list[Path] = []


# -- results --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def results_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "fault-results.json"
    _RESULTS_FILE[:] = [path]
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault suite figures")
    for row in sorted(RESULTS, key=lambda r: str(r["scenario"])):
        terminalreporter.write_line(_line(row))
    if _RESULTS_FILE:
        terminalreporter.write_line(f"results: {_RESULTS_FILE[0]}")


def _line(row: dict[str, Any]) -> str:
    extra = {
        k: v
        for k, v in row.items()
        if k not in ("scenario", "produced", "stored", "duplicated", "recover_s")
    }
    return (
        f"{row['scenario']}: produced={row['produced']} stored={row['stored']} "
        f"duplicated={row['duplicated']} recover_s={row['recover_s']} {json.dumps(extra)}"
    )


# -- a cable the test can pull -------------------------------------------------------------
class Link:
    """A TCP relay from a local port to the broker; `cut()` drops every connection and refuses
    new ones until `restore()`, as a network outage would."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = int(self._server.getsockname()[1])
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="link", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._sockets -= {src, dst}

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self._closed.set()
        self._server.close()
        self._thread.join(timeout=2)


# -- agents -----------------------------------------------------------------------------------
class OffsetClock:
    """The wall clock plus an offset the test moves: a clock jump, or a simulated day."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class FleetAgent:
    """An agent in this process."""

    def __init__(self, agent: Agent, link: Link | None = None) -> None:
        self.agent = agent
        self.machine = agent.config.agent.machine
        self.link = link
        self.produced_at_stop: int | None = None

    def tap(self, uid: str = HUGO) -> dict[str, Any]:
        return self.agent.tap(uid)

    def state(self) -> dict[str, Any]:
        return self.agent.state()

    def produced(self) -> int:
        if self.produced_at_stop is not None:
            return self.produced_at_stop
        assert self.agent.journal is not None
        return self.agent.journal.last_seq

    def stop(self) -> None:
        if self.produced_at_stop is None and self.agent.journal is not None:
            self.produced_at_stop = self.agent.journal.last_seq
        self.agent.stop()
        if self.link is not None:
            self.link.close()


class ProcessAgent:
    """`atelier-agent` (what systemd runs) as a process, tapped through its sim socket."""

    def __init__(self, lab: FaultLab, machine: str, config: Path, link: Link | None) -> None:
        self.lab = lab
        self.machine = machine
        self.config = config
        self.link = link
        self.state_dir = lab.state_dir(machine)
        self.socket = self.state_dir / "sim-reader.sock"
        self.runs = 0
        self.proc: Proc | None = None

    def start(self) -> None:
        self.runs += 1
        self.proc = Proc(
            ["--config", str(self.config)],
            log=self.lab.tmp / f"{self.machine}-{self.runs}.log",
            program=agent_command(),
        )
        wait_until(
            lambda: request(self.socket, {"op": "state"})["acl_version"],
            timeout=30,
            what=f"{self.machine} to be ready with its allow-list",
            proc=self.proc,
        )

    def tap(self, uid: str = HUGO) -> dict[str, Any]:
        return request(self.socket, {"op": "tap", "uid": uid})

    def state(self) -> dict[str, Any]:
        return request(self.socket, {"op": "state"})

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def produced(self) -> int:
        """The newest sequence number in the journal (read beside the running agent)."""
        db = sqlite3.connect(f"file:{self.state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
        try:
            meta = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
            top = db.execute("SELECT COALESCE(MAX(seq), 0) FROM event").fetchone()[0]
        finally:
            db.close()
        return max(int(meta[0]) - 1 if meta else 0, int(top))

    def stop(self) -> None:
        if self.proc is not None and self.proc.alive():
            self.proc.stop()
        if self.link is not None:
            self.link.close()


# -- the hub ----------------------------------------------------------------------------------
@dataclass
class FaultLab:
    tmp: Path
    broker: MosquittoBroker
    database_url: str
    hub_settings: HubSettings
    public_key: str
    machines: list[str]
    hub: Proc | None = None
    hub_runs: int = 0
    agents: list[FleetAgent | ProcessAgent] = field(default_factory=list)

    # hub
    def start_hub(self) -> None:
        self.hub_runs += 1
        self.hub = start_hub(
            self.hub_settings, log=self.tmp / f"hub-{self.hub_runs}.log", timeout=60
        )

    def kill_hub(self) -> None:
        assert self.hub is not None
        self.hub.kill()

    # agents
    def state_dir(self, machine: str) -> Path:
        return self.tmp / "a" / machine

    def agent_config(self, machine: str, *, port: int | None = None) -> dict[str, Any]:
        user, password = self.broker.agent_credentials(machine)
        return {
            "agent": {
                "site": "lab",
                "machine": machine,
                "machine_type": "laser",
                "state_dir": str(self.state_dir(machine)),
                "hub_public_key": self.public_key,
                "heartbeat_s": 2,
            },
            "mqtt": {
                "host": self.broker.host,
                "port": port or self.broker.port,
                "username": user,
                "password": password,
                "keepalive_s": 5,
            },
            "gpio": {"pin_factory": "mock"},
            "relay": {"pin": 17},
            "reader": {"type": "sim"},
        }

    def start_agent(
        self, machine: str, *, clock: Callable[[], datetime] | None = None, linked: bool = False
    ) -> FleetAgent:
        link = Link(self.broker.host, self.broker.port) if linked else None
        cfg = self.agent_config(machine, port=link.port if link else None)
        agent = Agent(parse_config(cfg), clock=clock)
        fleet_agent = FleetAgent(agent, link)
        self.agents.append(fleet_agent)
        agent.start()
        wait_until(
            lambda: agent.state()["acl_version"],
            timeout=30,
            what=f"{machine} to receive its allow-list",
        )
        return fleet_agent

    def start_fleet(self, count: int) -> list[FleetAgent]:
        return [self.start_agent(m) for m in self.machines[:count]]

    def spawn_agent(self, machine: str, *, linked: bool = False) -> ProcessAgent:
        link = Link(self.broker.host, self.broker.port) if linked else None
        cfg = self.agent_config(machine, port=link.port if link else None)
        path = self.tmp / f"{machine}.toml"
        path.write_text(_toml(cfg))
        agent = ProcessAgent(self, machine, path, link)
        self.agents.append(agent)
        agent.start()
        return agent

    # counting
    def engine_rows(self, query: Any) -> Any:
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as session:
                return session.exec(query).all()
        finally:
            engine.dispose()

    def stored_seqs(self, machines: list[str]) -> dict[str, list[int]]:
        rows = self.engine_rows(
            select(Event.machine, Event.seq).where(Event.machine.in_(machines))  # type: ignore[attr-defined]
        )
        out: dict[str, list[int]] = {m: [] for m in machines}
        for machine, seq in rows:
            out[machine].append(int(seq))
        return out

    def count(self, model: type, *where: Any) -> int:
        return int(self.engine_rows(select(func.count()).select_from(model).where(*where))[0])

    def tally(self, agents: list[Any]) -> dict[str, int]:
        """produced (the agents' sequence numbers), stored and duplicated (the hub's rows)."""
        produced = {a.machine: a.produced() for a in agents}
        seqs = self.stored_seqs(list(produced))
        stored = sum(len(s) for s in seqs.values())
        # A duplicate is a row the agent never produced once: a seq twice, or out of range.
        duplicated = sum(
            len(s) - len({q for q in s if 1 <= q <= produced[m]}) for m, s in seqs.items()
        )
        missing = sum(len(set(range(1, produced[m] + 1)) - set(s)) for m, s in seqs.items())
        return {
            "produced": sum(produced.values()),
            "stored": stored,
            "duplicated": duplicated,
            "missing": missing,
        }

    def converged(self, agents: list[Any]) -> bool:
        if not all(a.state()["backlog"] == 0 for a in agents):
            return False
        tally = self.tally(agents)
        return tally["missing"] == 0 and tally["stored"] == tally["produced"]

    def wait_converged(self, agents: list[Any], *, since: float, timeout: float = 90) -> float:
        """Seconds from `since` (time.monotonic) until every event produced is stored."""
        wait_until(
            lambda: self.converged(agents),
            timeout=timeout,
            what=f"every event stored: {self.tally(agents)}",
            proc=self.hub,
            interval=0.25,
        )
        return round(time.monotonic() - since, 2)


def _toml(cfg: dict[str, Any]) -> str:
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


FLEET = [f"bench-{i}" for i in range(1, 9)]


@pytest.fixture
def hub_database(tmp_path: Path) -> Iterator[str]:
    """PostgreSQL when ATELIER_TEST_DATABASE_URL names one (as `make test` does), else SQLite."""
    if postgres_url():
        with throwaway_postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def lab(tmp_path: Path, mosquitto: MosquittoBroker, hub_database: str) -> Iterator[FaultLab]:
    database_url = hub_database
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        laser = session.exec(select(MachineType).where(MachineType.code == "laser")).one()
        for code in FLEET:
            session.add(
                Machine(code=code, name=f"Bench laser {code}", site="lab", machine_type_id=laser.id)
            )
        session.commit()
    engine.dispose()
    for machine in FLEET:
        mosquitto.agent_credentials(machine)  # every account before the run: no SIGHUP later
    settings = HubSettings(
        tmp_path / "hub",
        database_url,
        "lab",
        mosquitto,
        extra_env={
            "ATELIER_INGEST_BATCH_MS": "20",
            "ATELIER_ALLOWLIST_TTL_HOURS": str(ALLOWLIST_TTL_HOURS),
        },
    )
    fault_lab = FaultLab(
        tmp=tmp_path,
        broker=mosquitto,
        database_url=database_url,
        hub_settings=settings,
        public_key=settings.public_key(),
        machines=list(FLEET),
    )
    try:
        fault_lab.start_hub()
        yield fault_lab
    finally:
        for agent in reversed(fault_lab.agents):
            try:
                agent.stop()
            except Exception as exc:  # the next agent must still be stopped
                print(f"stopping {agent.machine} failed: {exc!r}")
        if fault_lab.hub is not None and fault_lab.hub.alive():
            fault_lab.hub.stop()


@pytest.fixture
def report(results_file: Path, request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """Print a scenario's figures and add them to the results file."""

    def _report(scenario: str, **figures: Any) -> dict[str, Any]:
        row = {
            "scenario": scenario,
            **figures,
            "database": "postgresql" if postgres_url() else "sqlite",
        }
        RESULTS.append(row)
        results_file.write_text(json.dumps(RESULTS, indent=2, default=str) + "\n")
        print(_line(row))
        return row

    return _report


class Traffic:
    """Badge taps on agents from one thread per agent until stopped (bounded by `max_taps`)."""

    def __init__(self, agents: list[Any], *, pause_s: float = 0.05, max_taps: int = 400) -> None:
        self.agents = agents
        self.pause_s = pause_s
        self.max_taps = max_taps
        self.taps = 0
        self.decisions: dict[str, int] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(a,), name=f"taps-{a.machine}", daemon=True)
            for a in agents
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, agent: Any) -> None:
        for _ in range(self.max_taps):
            if self._stop.is_set():
                return
            try:
                decision = agent.tap()["decision"]
            except Exception as exc:  # a tap that got no answer is a finding, not a crash
                with self._lock:
                    self.errors.append(f"{agent.machine}: {exc!r}")
                decision = "error"
            with self._lock:
                self.taps += 1
                self.decisions[decision] = self.decisions.get(decision, 0) + 1
            time.sleep(self.pause_s)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        # Leave no session open: a last badge-out where one is running.
        for agent in self.agents:
            with contextlib.suppress(Exception):
                if agent.state()["session"] is not None:
                    agent.tap()
