"""A simulated badge reader: taps arrive on a local Unix socket (JSON lines).

The socket `{state_dir}/sim-reader.sock` exists only while a `sim` reader runs, so a real
machine never has a back door for badges. Requests: `{"op": "tap", "uid": "04A1B2C3"}`,
`{"op": "remove", "uid": ...}` (card-present mode) and `{"op": "state"}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.hardware.readers import BadgeRead, OnBadge
from protocol.badges import normalise_uid

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]


Tap = Callable[..., dict[str, Any]]  # Agent.tap(uid, present=...)
State = Callable[[], dict[str, Any]]  # Agent.state()


def answer(request: dict[str, Any], *, tap: Tap, state: State) -> dict[str, Any]:
    """One request on the socket, answered by the agent's `tap` or `state`."""
    op = request.get("op")
    if op == "state":
        return state()
    if op in ("tap", "remove"):
        try:
            uid = normalise_uid(str(request.get("uid", "")))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return tap(uid, present=op == "tap")
    return {"ok": False, "error": f"unknown op {op!r}: use tap, remove or state"}


class SimReader:
    kind = "sim"

    def __init__(self, socket_path: Path, handler: Handler) -> None:
        self.socket_path = socket_path
        self._handler = handler
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._on_badge: OnBadge | None = None

    @property
    def healthy(self) -> bool:
        return self._server is not None and not self._stop.is_set()

    def start(self, on_badge: OnBadge) -> None:
        self._on_badge = on_badge
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            self.socket_path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o660)
        server.listen(8)
        server.settimeout(0.2)
        self._server = server
        self._thread = threading.Thread(target=self._serve, name="sim-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.socket_path.exists():
            self.socket_path.unlink()

    def _serve(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    line = conn.makefile("rb").readline()
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("request must be a JSON object")
                    reply = self._handler(request)
                except Exception as exc:  # a bad request must not stop the reader
                    reply = {"ok": False, "error": str(exc)}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def report(self, read: BadgeRead) -> None:
        if self._on_badge is not None:
            self._on_badge(read)


def request(socket_path: Path, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Send one request to a running sim reader (used by `atelier edge tap`)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = sock.makefile("rb").readline()
    reply: dict[str, Any] = json.loads(data)
    return reply
