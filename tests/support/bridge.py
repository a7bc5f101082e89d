"""Sites on loopback: site brokers bridged (deploy/mosquitto/bridge.conf.j2) to a regional one."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import threading
from pathlib import Path

import jinja2

from hub.core.db import make_engine
from hub.services.broker_accounts import bridge_accounts, secret_path, write_credentials
from tests.support.mosquitto import ACL_TEMPLATE, MosquittoBroker, find_binary, free_port

REPO = Path(__file__).resolve().parents[2]
BRIDGE_TEMPLATE = REPO / "deploy" / "mosquitto" / "bridge.conf.j2"


class TcpLink:
    """A TCP relay standing for the network between a site and the region: `cut()` drops it
    (the open connection and new ones), `restore()` brings it back on the same port."""

    def __init__(self, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.target_port = target_port
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.host, self.port))
        server.listen(8)
        server.settimeout(0.2)
        self._server = server
        self._thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                near, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                far = socket.create_connection((self.host, self.target_port), timeout=5)
            except OSError:
                near.close()
                continue
            far.settimeout(None)
            with self._lock:
                self._open.update((near, far))
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def regional_broker(workdir: Path, sites: list[str]) -> tuple[MosquittoBroker, dict[str, str]]:
    """The region's broker: the hub's account (everything) and one bridge account per site
    with the ACL `atelier hub mqtt-credentials --bridges` gives it, made here without a hub
    database. Returns the broker and each site's bridge password."""
    workdir.mkdir(parents=True, exist_ok=True)
    passwd, acl = workdir / "passwd", workdir / "acl"
    tool = find_binary("mosquitto_passwd")
    assert tool is not None
    hub_password = secrets.token_urlsafe(12)
    accounts = {"hub": hub_password} | {f"bridge-{s}": secrets.token_urlsafe(12) for s in sites}
    passwd.touch(mode=0o600)
    for user, password in accounts.items():
        subprocess.run(
            [tool, "-b", str(passwd), user, password], check=True, capture_output=True, timeout=30
        )
    acl.write_text(
        ACL_TEMPLATE.format(hub_user="hub")
        + "".join("\n" + "\n".join(b.acl_lines()) + "\n" for b in bridge_accounts(sites))
    )
    broker = MosquittoBroker(workdir, password_file=passwd, acl_file=acl)
    broker.hub_password = hub_password
    return broker, {s: accounts[f"bridge-{s}"] for s in sites}


def regional_broker_from_hub(
    workdir: Path, database_url: str
) -> tuple[MosquittoBroker, dict[str, str]]:
    """The region's broker on the files `mqtt-credentials --bridges --no-agents` writes from
    the hub's machines: the hub's account and one bridge account per site, no agent's (every
    agent connects to its site's broker). Returns the broker and each site's bridge password
    (from the secrets directory, as a deploy reads it)."""
    passwd, acl, secrets_dir = workdir / "passwd", workdir / "acl", workdir / "secrets"
    hub_password = secrets.token_urlsafe(12)
    engine = make_engine(database_url)
    try:
        written = write_credentials(
            engine,
            password_file=passwd,
            acl_file=acl,
            secrets_dir=secrets_dir,
            hub_user="hub",
            hub_password=hub_password,
            bridges=True,
            agents=False,
        )
    finally:
        engine.dispose()
    broker = MosquittoBroker(workdir, password_file=passwd, acl_file=acl)
    broker.hub_password = hub_password
    return broker, {
        b.site: secret_path(secrets_dir, b.username).read_text().strip() for b in written.bridges
    }


def render_bridge(**values: object) -> str:
    template = jinja2.Template(BRIDGE_TEMPLATE.read_text(), trim_blocks=True)
    return template.render(ansible_managed="rendered by tests/support/bridge.py", **values)


def site_broker(workdir: Path, site: str, *, regional_port: int, password: str) -> MosquittoBroker:
    """A site's broker (agent accounts as usual) with the deploy bridge to `regional_port`."""
    broker = MosquittoBroker(workdir)
    bridge = render_bridge(
        broker_bridge_name=f"atelier-{site}",
        broker_bridge_site=site,
        broker_bridge_address="127.0.0.1",
        broker_bridge_port=regional_port,
        broker_bridge_username=f"bridge-{site}",
        broker_bridge_password=password,
        broker_bridge_cafile="",
        # Quick to come back in a test; the role's default backs off from 5 s to a minute.
        broker_bridge_restart_timeout="1 2",
    )
    (workdir / "bridge.conf").write_text(bridge)
    broker.config_file.write_text(broker.config_file.read_text() + "\n" + bridge)
    return broker
