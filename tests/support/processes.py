"""Start `atelier ...` as real subprocesses with logs captured and bounded waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def atelier_command() -> list[str]:
    exe = Path(sys.executable).with_name("atelier")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, str(REPO / "atelier_cli.py")]


def agent_command() -> list[str]:
    """`atelier-agent`, the agent as systemd runs it (edge/service.py)."""
    exe = Path(sys.executable).with_name("atelier-agent")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "edge.service"]


class Proc:
    def __init__(
        self,
        args: list[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        program: list[str] | None = None,
    ) -> None:
        self.args = args
        self.log = log
        full_env = os.environ.copy()
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self._terminated = False
        self._log_handle = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [*(program or atelier_command()), *args],
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)
            if sig == signal.SIGTERM:
                self._terminated = True

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        if not self._log_handle.closed:
            self._log_handle.close()

    def stop(self, timeout: float = 15) -> int:
        # One SIGTERM only, as systemd sends: a second one arriving while Python shuts down
        # (it restores the default handlers then) would kill the process outright.
        if self.alive() and not self._terminated:
            self.popen.send_signal(signal.SIGTERM)
        if self.alive():
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        if not self._log_handle.closed:
            self._log_handle.close()
        return int(self.popen.returncode)


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    proc: Proc | None = None,
    interval: float = 0.1,
) -> T:
    """Poll `check` until it returns something truthy; fail with the process log otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing polled may not be up yet
            last_error = exc
        if proc is not None and not proc.alive():
            raise AssertionError(f"process exited while waiting for {what}:\n{proc.output()}")
        time.sleep(interval)
    log = f"\n--- log ---\n{proc.output()[-4000:]}" if proc else ""
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what} (last: {last_error}){log}"
    )
