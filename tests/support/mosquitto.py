"""A real Mosquitto on a free loopback port, with a generated config, password file and ACL."""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from protocol.limits import BROKER_MESSAGE_SIZE_LIMIT

MOSQUITTO_HINT = (
    "Mosquitto is not installed: run `apt-get install mosquitto` (make test does it as root)"
)


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/usr/bin"):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answers on {host}:{port} after {timeout} s")


# Each agent account may only publish its own machine's event/telemetry/status and read its
# own acl/cmd: the username is the machine id (%u), whatever the site.
ACL_TEMPLATE = """\
user {hub_user}
topic readwrite atelier/v1/#
topic readwrite $share/#
topic readwrite homeassistant/#

pattern write atelier/v1/+/%u/event
pattern write atelier/v1/+/%u/telemetry
pattern write atelier/v1/+/%u/status
pattern read atelier/v1/+/%u/acl
pattern read atelier/v1/+/%u/cmd
"""


class MosquittoBroker:
    """One broker process; `stop()`/`start()` restart it on the same port and data."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        tls: dict[str, object] | None = None,
    ) -> None:
        binary = find_binary("mosquitto")
        self._passwd_tool = find_binary("mosquitto_passwd")
        if binary is None or self._passwd_tool is None:
            raise FileNotFoundError(MOSQUITTO_HINT)
        self.binary = binary
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.hub_user = "hub"
        self.hub_password = secrets.token_urlsafe(12)
        self._agents: dict[str, str] = {}
        self._accounts_lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self._external = password_file is not None
        # {"cafile", "certfile", "keyfile", "require_certificate": bool}
        self.tls = tls
        self.password_file = password_file or workdir / "passwd"
        self.acl_file = acl_file or workdir / "acl"
        self.config_file = workdir / "mosquitto.conf"
        self.log_file = workdir / "mosquitto.log"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self._write_files()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _write_files(self) -> None:
        if not self._external:  # otherwise the test brings its own password file and ACL
            self._set_password(self.hub_user, self.hub_password, create=True)
            self.acl_file.write_text(ACL_TEMPLATE.format(hub_user=self.hub_user))
        user = getpass.getuser()
        tls_lines: list[str] = []
        if self.tls:
            tls_lines = [
                f"cafile {self.tls['cafile']}",
                f"certfile {self.tls['certfile']}",
                f"keyfile {self.tls['keyfile']}",
            ]
            if self.tls.get("require_certificate"):
                # The client certificate's common name (the machine id) is the username.
                tls_lines += ["require_certificate true", "use_identity_as_username true"]
        self.config_file.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    *tls_lines,
                    "allow_anonymous false",
                    f"password_file {self.password_file}",
                    f"acl_file {self.acl_file}",
                    "persistence true",
                    f"persistence_location {self.workdir / 'data'}/",
                    "autosave_interval 1",
                    # Bursts in the tests must never be dropped by the broker.
                    "max_queued_messages 1000000",
                    "max_inflight_messages 1000",
                    # As deploy/mosquitto/mosquitto.conf.j2.
                    f"message_size_limit {BROKER_MESSAGE_SIZE_LIMIT}",
                    f"log_dest file {self.log_file}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "log_type subscribe",
                    "connection_messages true",
                    # When started as root Mosquitto drops to the `mosquitto` user, which cannot
                    # read a test's private temporary directory.
                    f"user {user}",
                    "",
                ]
            )
        )

    def _set_password(self, user: str, password: str, *, create: bool = False) -> None:
        args = [self._passwd_tool, "-b"]
        if create:
            args.insert(1, "-c")
        subprocess.run(
            [*args, str(self.password_file), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        os.chmod(self.password_file, 0o600)

    def agent_credentials(self, machine: str) -> tuple[str, str]:
        """An account confined to this machine's topics (created and loaded on first use)."""
        with self._accounts_lock:
            return self._agent_credentials(machine)

    def _agent_credentials(self, machine: str) -> tuple[str, str]:
        if machine not in self._agents:
            password = secrets.token_urlsafe(12)
            self._set_password(machine, password)
            self._agents[machine] = password
            if self.process and self.process.poll() is None:
                self.process.send_signal(signal.SIGHUP)  # reloads password file and ACL
                time.sleep(0.2)
        return machine, self._agents[machine]

    def start(self) -> None:
        if self.process and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start; its log:\n{self.log_text()}") from None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
