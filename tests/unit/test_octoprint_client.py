"""The OctoPrint client gives every octorest call a time bound (octorest sets none)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from edge.integrations.octoprint import OctoPrintClient


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers, like a wedged OctoPrint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_a_server_that_never_answers_is_offline_within_the_timeout(silent_server: int) -> None:
    client = OctoPrintClient(f"http://127.0.0.1:{silent_server}", "KEY", timeout_s=0.5)
    started = time.monotonic()
    poll = client.poll()
    assert time.monotonic() - started < 3
    assert not poll.online
    assert "Timeout" in poll.reason


def test_a_refused_connection_is_offline_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])  # closed again: nothing listens there
    poll = OctoPrintClient(f"http://127.0.0.1:{port}", "KEY", timeout_s=5).poll()
    assert not poll.online
    assert "ConnectionError" in poll.reason


def test_building_a_client_does_not_call_octoprint() -> None:
    # octorest's own key loading calls /api/version at once; an agent must start without it.
    OctoPrintClient("http://127.0.0.1:9", "KEY", timeout_s=0.1)
