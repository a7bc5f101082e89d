"""`atelier demo`: hub + embedded broker + simulated machines, on http://127.0.0.1:8000."""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

log = logging.getLogger("atelier.demo")


def _agent_toml(
    *,
    site: str,
    machine: str,
    machine_type: str,
    state_dir: Path,
    public_key: str,
    host: str,
    port: int,
    protocol: str,
    relay_pin: int,
) -> str:
    return f"""# Written by `atelier demo`: a simulated agent (mock GPIO, sim reader).
[agent]
site = "{site}"
machine = "{machine}"
machine_type = "{machine_type}"
state_dir = "{state_dir}"
hub_public_key = "{public_key}"
heartbeat_s = 15

[mqtt]
host = "{host}"
port = {port}
protocol = "{protocol}"

[gpio]
pin_factory = "mock"

[relay]
pin = {relay_pin}

[reader]
type = "sim"

[session]
idle_timeout_s = 120
warning_s = 20
"""


class Scheduler:
    """Members badging in and out at a pace a person can watch."""

    def __init__(
        self,
        agents: dict[str, Any],
        badges: list[tuple[str, str]],
        pace: float,
        seed: int | None = None,
    ) -> None:
        self.agents = agents
        self.badges = badges
        self.pace = pace
        self.random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-members", daemon=True)
        self._busy_until: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _name(self, uid: str) -> str:
        return dict(self.badges).get(uid, uid)

    def _run(self) -> None:
        while not self._stop.wait(self.pace * self.random.uniform(0.6, 1.4)):
            try:
                self._step()
            except Exception:  # the demo goes on whatever one step did
                log.exception("demo step failed")

    def _step(self) -> None:
        now = time.monotonic()
        code = self.random.choice(sorted(self.agents))
        agent = self.agents[code]
        state = agent.state()
        session = state.get("session")
        if state.get("busy") and now >= self._busy_until.get(code, 0):
            agent.set_busy(False)
            log.info("%s: the job is done", code)
            return
        if session:
            if not state.get("busy") and self.random.random() < 0.35:
                agent.set_busy(True)
                self._busy_until[code] = now + self.pace * self.random.uniform(2, 5)
                log.info("%s: %s starts a job", code, self._name(session["badge"]))
            elif not state.get("busy") and self.random.random() < 0.5:
                agent.tap(session["badge"])
                log.info("%s: %s badges out", code, self._name(session["badge"]))
            return
        uid, name = self.random.choice(self.badges)
        reply = agent.tap(uid)
        if reply.get("decision") == "granted":
            log.info("%s: %s badges in — granted, relay closed", code, name)
        else:
            log.info("%s: %s badges in — denied (%s)", code, name, reply.get("reason"))


def demo_command(
    broker: Annotated[
        str | None,
        typer.Option(
            help="use this broker (host:port, MQTT 5, anonymous) instead of the embedded one"
        ),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its data")] = Path(
        ".atelier-demo"
    ),
    port: Annotated[int, typer.Option(help="HTTP port of the dashboard")] = 8000,
    broker_port: Annotated[int, typer.Option(help="port of the embedded broker")] = 18830,
    pace: Annotated[float, typer.Option(help="seconds between simulated badge taps")] = 4.0,
    log_format: Annotated[
        str | None,
        typer.Option(help="text or json (one object per line); default ATELIER_LOG_FORMAT"),
    ] = None,
) -> None:
    """Hub + embedded broker + simulated machines; Ctrl-C stops everything."""
    import importlib.util

    # The simulated machines are real agents: they need the agent's packages as well.
    missing = [name for name in ("gpiozero", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        typer.echo(
            f"the demo runs the hub and simulated agents, and {', '.join(missing)} is not "
            "installed: pip install 'atelier[hub,edge]' (or run `make demo`)",
            err=True,
        )
        raise typer.Exit(2)
    import uvicorn
    from sqlmodel import Session

    from edge.agent import Agent
    from edge.config import load_config
    from edge.logs import LogSetupError, setup_logging
    from hub.app import create_app
    from hub.core.db import make_engine, migrate
    from hub.core.security import load_or_create_signing_key
    from hub.core.settings import get_settings
    from hub.demo.embedded_broker import EmbeddedBroker
    from hub.demo.seed import (
        DEMO_PASSWORD,
        MACHINE_TYPES,
        MACHINES,
        demo_badges,
        seed_demo,
        seed_demo_users,
    )
    from protocol.allowlist import public_key_b64

    try:
        setup_logging("info", log_format, quiet=("amqtt", "transitions", "uvicorn.access"))
    except LogSetupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    embedded: EmbeddedBroker | None = None
    if broker:
        host, _, port_text = broker.rpartition(":")
        if not host or not port_text.isdigit():
            typer.echo(f"--broker {broker!r}: give host:port, e.g. 127.0.0.1:1883", err=True)
            raise typer.Exit(2)
        mqtt_host, mqtt_port, protocol = host, int(port_text), "5"
    else:
        embedded = EmbeddedBroker("127.0.0.1", broker_port)
        try:
            embedded.start()
        except RuntimeError as exc:
            typer.echo(f"{exc}; is port {broker_port} taken? try --broker-port", err=True)
            raise typer.Exit(2) from None
        mqtt_host, mqtt_port, protocol = "127.0.0.1", broker_port, "3.1.1"

    site = "demo-lab"
    settings = get_settings(
        None,
        data_dir=data_dir,
        site=site,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        mqtt_protocol=protocol,
        http_port=port,
        database_url=f"sqlite:///{data_dir / 'atelier.db'}",
        mqtt_client_id="atelier-demo-hub",
    )
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        seed_demo(session, site=site)
        seed_demo_users(session)
        badges = demo_badges(session)
    engine.dispose()
    public_key = public_key_b64(load_or_create_signing_key(data_dir).public_key())
    type_of = {code: type_code for code, _, type_code, _ in MACHINES}
    known_types = {code for code, _, _ in MACHINE_TYPES}
    agents: dict[str, Agent] = {}
    configs = []
    for index, (code, _, _, _) in enumerate(MACHINES):
        assert type_of[code] in known_types
        toml_path = data_dir / "agents" / f"{code}.toml"
        toml_path.parent.mkdir(parents=True, exist_ok=True)
        toml_path.write_text(
            _agent_toml(
                site=site,
                machine=code,
                machine_type=type_of[code],
                state_dir=data_dir / "agents" / code,
                public_key=public_key,
                host=mqtt_host,
                port=mqtt_port,
                protocol=protocol,
                relay_pin=17 + index,
            )
        )
        configs.append(load_config(toml_path))
    app = create_app(settings)
    stopping = threading.Event()
    scheduler: list[Scheduler] = []

    def start_fleet() -> None:
        # The hub subscribes first: on a first start the broker holds no session for it yet,
        # and events published before it exists would reach nobody.
        while not stopping.wait(0.2):
            consumer = getattr(app.state, "consumer", None)
            if consumer is not None and consumer.connected:
                break
        else:
            return
        for cfg in configs:
            if stopping.is_set():
                return
            agent = Agent(cfg)
            agent.start()
            agents[cfg.agent.machine] = agent
            # One machine connects at a time: amqtt 0.12 can fail a connection
            # ("dictionary changed size during iteration") when several arrive together.
            deadline = time.monotonic() + 10
            while not agent.state()["connected"] and time.monotonic() < deadline:
                if stopping.wait(0.05):
                    return
        scheduler.append(Scheduler(agents, badges, pace))
        scheduler[0].start()
        log.info("dashboard on http://127.0.0.1:%s — Ctrl-C stops the demo", port)
        log.info(
            "sign in as admin, manager, camille (trainer) or hugo (member), password %r "
            "(demo logins: never use them in a real lab)",
            DEMO_PASSWORD,
        )
        log.info(
            "tap a badge yourself: atelier edge tap --config %s --uid 04A1B2C3",
            data_dir / "agents" / "laser-1.toml",
        )

    fleet = threading.Thread(target=start_fleet, name="demo-fleet", daemon=True)
    fleet.start()
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", log_config=None)
    finally:
        stopping.set()
        fleet.join(timeout=30)
        for sched in scheduler:
            sched.stop()
        for agent in agents.values():
            agent.stop()
        if embedded is not None:
            embedded.stop()
        log.info("demo stopped; its data stays in %s for the next start", data_dir)
