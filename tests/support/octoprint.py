"""A real OctoPrint with its virtual printer on a loopback port, installed in its own venv.

`python -m tests.support.octoprint install` installs the pinned OctoPrint into
.tools/octoprint-venv (skipped when that version is already there); `make test` runs it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
OCTOPRINT_VERSION = "1.11.2"
VENV = REPO / ".tools" / "octoprint-venv"
OCTOPRINT = VENV / "bin" / "octoprint"
MARKER = VENV / f".atelier-octoprint-{OCTOPRINT_VERSION}"
USER = "atelier"

CONFIG_TEMPLATE = """\
server:
  firstRun: false
  onlineCheck:
    enabled: false
  pluginBlacklist:
    enabled: false
  seenWizards:
    corewizard: 4
    tracking: null
    backup: null
serial:
  autoconnect: true
  port: VIRTUAL
  baudrate: 115200
  timeout:
    connection: 5
plugins:
  virtual_printer:
    enabled: true
    # Fast enough that a small print ends in seconds; busy/dwell timing stays real.
    throttle: 0.001
    waitInterval: 0.5
    hasChamber: true
  tracking:
    enabled: false
  announcements:
    enabled_channels: []
  softwareupdate:
    check_overlay_url: ""
  pluginmanager:
    repository: ""
    notices: ""
"""


def installed() -> bool:
    return MARKER.exists() and OCTOPRINT.exists()


def install() -> None:
    """Install the pinned OctoPrint into its own venv (idempotent)."""
    if installed():
        return
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "--quiet", f"OctoPrint=={OCTOPRINT_VERSION}"],
        check=True,
    )
    MARKER.write_text(OCTOPRINT_VERSION + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OctoPrintServer:
    """`octoprint serve` on 127.0.0.1 with a fresh basedir, an admin user and an API key."""

    def __init__(self, basedir: Path, port: int | None = None) -> None:
        self.basedir = basedir
        self.port = port or free_port()
        self.api_key = secrets.token_hex(16).upper()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = basedir / "serve.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False

    def _base_args(self) -> list[str]:
        return [str(OCTOPRINT), "--basedir", str(self.basedir)]

    def prepare(self) -> None:
        self.basedir.mkdir(parents=True, exist_ok=True)
        # OctoPrint 1.11 still honours a global key in api.key (its "master" API user); the
        # admin user below completes access control so no setup wizard stands in the way.
        config = CONFIG_TEMPLATE + f"api:\n  key: {self.api_key}\n"
        (self.basedir / "config.yaml").write_text(config)
        password = secrets.token_hex(12)
        subprocess.run(
            [*self._base_args(), "user", "add", USER, "--password", password, "--admin"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._prepared = True

    def start(self, timeout: float = 90) -> None:
        if not self._prepared:
            self.prepare()
        # --basedir must follow `serve`: given before it, serve silently uses ~/.octoprint.
        args = [str(OCTOPRINT), "serve", "--basedir", str(self.basedir)]
        args += ["--host", "127.0.0.1", "--port", str(self.port)]
        if os.geteuid() == 0:
            args.append("--iknowwhatimdoing")
        handle = open(self.log, "ab")  # noqa: SIM115 - the child keeps it; closed in stop()
        self._proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        headers = {"X-Api-Key": self.api_key}
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"octoprint exited ({self._proc.returncode}):\n{self.tail()}")
            try:
                conn = requests.get(f"{self.url}/api/connection", headers=headers, timeout=2)
                if conn.status_code == 200:
                    state = conn.json()["current"]["state"]
                    if state == "Operational":
                        return
                    if state in ("Closed", "Offline", "Error") or "Error" in state:
                        requests.post(
                            f"{self.url}/api/connection",
                            headers=headers,
                            json={"command": "connect", "port": "VIRTUAL", "autoconnect": True},
                            timeout=2,
                        )
                    last = state
                else:
                    last = f"HTTP {conn.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise TimeoutError(f"octoprint not operational after {timeout}s ({last}):\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def main(argv: list[str]) -> int:
    if argv[1:] == ["install"]:
        started = time.monotonic()
        install()
        sys.stderr.write(
            f"OctoPrint {OCTOPRINT_VERSION} ready in {VENV} ({time.monotonic() - started:.0f}s)\n"
        )
        return 0
    sys.stderr.write("usage: python -m tests.support.octoprint install\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
