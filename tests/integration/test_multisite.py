"""Two sites bridged to a regional broker, one hub for both; a link cut and back, nothing lost."""

# Real processes on loopback: a regional Mosquitto with the hub (`atelier hub serve`) on it,
# two site Mosquittos bridged to it with deploy/mosquitto/bridge.conf.j2 (each through a TCP
# relay standing for its network link), and one agent (`atelier edge run`) per site badging
# sessions on and off the whole time. North's link is cut while its agent keeps working, then
# restored; south's broker is restarted. Every event of both sites must be stored exactly once.
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import Session, select

from edge.hardware.sim_reader import request
from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.models import Event, Machine
from tests.support.bridge import (
    BRIDGE_TEMPLATE,
    TcpLink,
    regional_broker_from_hub,
    site_broker,
)
from tests.support.hub import HubSettings, start_hub
from tests.support.mosquitto import MOSQUITTO_HINT, MosquittoBroker, find_binary
from tests.support.processes import Proc, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

HUGO = "04C3D4E5"  # trained on laser and printer in the demo data
MACHINES = {"north": "laser-1", "south": "printer-1"}
log = logging.getLogger(__name__)


@dataclass
class Site:
    name: str
    machine: str
    broker: MosquittoBroker
    link: TcpLink
    agent: Proc
    state_dir: Path
    taps: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.state_dir / "sim-reader.sock"

    def state(self) -> dict:
        return request(self.socket, {"op": "state"})

    def produced(self) -> int:
        """The agent's own count: the highest seq in its journal."""
        db = sqlite3.connect(f"file:{self.state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM event").fetchone()[0])
        finally:
            db.close()


@dataclass
class Network:
    sites: dict[str, Site]
    regional: MosquittoBroker
    hub: Proc
    database_url: str

    def seqs(self, site: str) -> list[int]:
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as session:
                rows = session.exec(select(Event.seq).where(Event.site == site)).all()
                return sorted(int(s) for s in rows)
        finally:
            engine.dispose()

    def has_all(self, site: str, upto: int) -> bool:
        return set(range(1, upto + 1)) <= set(self.seqs(site))


def agent_config(path: Path, site: str, machine: str, broker: MosquittoBroker, key: str) -> None:
    user, _ = broker.agent_credentials(machine)
    path.write_text(f"""
[agent]
site = "{site}"
machine = "{machine}"
state_dir = "{path.parent / machine}"
hub_public_key = "{key}"
heartbeat_s = 2
[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{user}"
[gpio]
pin_factory = "mock"
[relay]
pin = 17
[reader]
type = "sim"
""")


@pytest.fixture
def network(tmp_path: Path, database_url: str) -> Iterator[Network]:
    if find_binary("mosquitto") is None:
        pytest.skip(MOSQUITTO_HINT)
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="north")
        printer = session.exec(select(Machine).where(Machine.code == MACHINES["south"])).one()
        printer.site = "south"
        session.add(printer)
        session.commit()
    engine.dispose()

    # The region's accounts as `atelier hub mqtt-credentials --bridges --no-agents` writes them.
    regional, bridge_passwords = regional_broker_from_hub(tmp_path / "regional", database_url)
    assert set(bridge_passwords) == set(MACHINES)
    started: list[MosquittoBroker | TcpLink | Proc] = []
    try:
        regional.start()
        started.append(regional)
        links: dict[str, TcpLink] = {}
        brokers: dict[str, MosquittoBroker] = {}
        for site in MACHINES:
            links[site] = TcpLink(regional.port)
            links[site].restore()
            started.append(links[site])
            brokers[site] = site_broker(
                tmp_path / f"site-{site}",
                site,
                regional_port=links[site].port,
                password=bridge_passwords[site],
            )
            brokers[site].start()
            started.append(brokers[site])
        settings = HubSettings(
            tmp_path / "hub",
            database_url,
            "north",
            regional,
            extra_env={"ATELIER_INGEST_BATCH_MS": "20"},
        )
        public_key = settings.public_key()
        hub = start_hub(settings, log=tmp_path / "hub.log")
        started.append(hub)
        sites: dict[str, Site] = {}
        for site, machine in MACHINES.items():
            config = tmp_path / "agents" / f"{machine}.toml"
            config.parent.mkdir(exist_ok=True)
            agent_config(config, site, machine, brokers[site], public_key)
            _, password = brokers[site].agent_credentials(machine)
            agent = Proc(
                ["edge", "run", "--config", str(config)],
                log=tmp_path / f"agent-{site}.log",
                env={"ATELIER_EDGE_MQTT_PASSWORD": password},
            )
            started.append(agent)
            sites[site] = Site(
                site, machine, brokers[site], links[site], agent, config.parent / machine
            )
        for site in sites.values():
            # The hub's signed allow-list crossed the bridge inwards, from the region to the site.
            wait_until(
                lambda site=site: site.state()["acl_version"],
                timeout=45,
                what=f"{site.name}'s agent to receive its allow-list over the bridge",
                proc=site.agent,
            )
        yield Network(sites, regional, hub, database_url)
    finally:
        for part in reversed(started):
            if isinstance(part, TcpLink):
                part.cut()
            else:
                part.stop()


def badge_on_and_off(site: Site, stop: threading.Event) -> None:
    """Hugo starts and ends sessions, three events each time, until told to stop."""
    while not stop.is_set():
        for expected in ("granted", "ended"):
            reply = request(site.socket, {"op": "tap", "uid": HUGO})
            if reply.get("decision") != expected:
                site.errors.append(f"tap {site.taps}: expected {expected}, got {reply}")
                return
            site.taps += 1
        time.sleep(0.05)


def test_two_sites_one_hub_and_a_link_down_loses_nothing(network: Network) -> None:
    north, south = network.sites["north"], network.sites["south"]
    stop = threading.Event()
    producers = [
        threading.Thread(target=badge_on_and_off, args=(site, stop), daemon=True)
        for site in network.sites.values()
    ]
    for thread in producers:
        thread.start()
    try:
        # Both sites' events reach the one hub through the regional broker.
        for site in network.sites.values():
            wait_until(
                lambda site=site: len(network.seqs(site.name)) >= 10,
                timeout=30,
                what=f"{site.name}'s events at the hub",
                proc=network.hub,
            )

        north.link.cut()
        time.sleep(1)  # what was in flight when the link went lands or stays queued
        stalled_at = len(network.seqs("north"))
        south_before = len(network.seqs("south"))
        produced_before = north.produced()
        time.sleep(4)
        # North goes on working: its broker takes every event (nothing waits in the agent's
        # journal), the bridge keeps them, and none reaches the hub while the link is down.
        assert north.produced() > produced_before + 10
        # The agent taps all the time, so a read can catch the one event between its journal
        # and the local broker's acknowledgement: what matters is that nothing piles up.
        wait_until(
            lambda: north.state()["backlog"] == 0,
            timeout=5,
            what="north's journal emptied into its own broker while the link is down",
            proc=network.hub,
        )
        assert len(network.seqs("north")) == stalled_at
        assert len(network.seqs("south")) > south_before + 10  # the other site is unaffected
        north.link.restore()
        # The bridge hands over its queue as soon as it is back (the hub's gap repair, which
        # would also bring lost events back in the end, waits longer than this).
        queued_upto = north.produced()
        wait_until(
            lambda: network.has_all("north", queued_upto),
            timeout=15,
            what="north's queued events once the link is back",
            proc=network.hub,
        )

        # South's broker restarts (a Pi reboot, an upgrade): its agent journals meanwhile.
        south.broker.restart()
        time.sleep(3)
    finally:
        stop.set()
        for thread in producers:
            thread.join(timeout=15)
    assert not north.errors and not south.errors, north.errors + south.errors

    for site in network.sites.values():
        produced = site.produced()
        assert produced > 40, f"{site.name} produced only {produced} events"
        wait_until(
            lambda site=site, produced=produced: network.has_all(site.name, produced),
            timeout=20,
            what=f"all {produced} events of {site.name} at the hub",
            proc=network.hub,
        )
        seqs = network.seqs(site.name)
        # Stored = produced, each once: no event lost in the bridge's queue, none twice.
        assert seqs == list(range(1, produced + 1)), (site.name, produced, len(seqs))
        log.info("%s: %d events produced and stored once (%d taps)", site.name, produced, site.taps)
    # Nothing had to be asked for again: the bridges and brokers lost nothing on their own.
    assert "send its events again" not in network.hub.output()


def test_the_bridge_template_in_deploy_is_the_one_the_broker_role_writes() -> None:
    role_copy = Path("ansible/roles/broker/templates/bridge.conf.j2")
    assert (BRIDGE_TEMPLATE.parents[2] / role_copy).read_text() == BRIDGE_TEMPLATE.read_text()
