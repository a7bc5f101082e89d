"""A real SMTP server in the test process (aiosmtpd) on loopback, recording what it accepts."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """aiosmtpd handler: keeps every accepted message; may hold DATA for `delay_s` first."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.in_data = threading.Event()
        self.delay_s = 0.0

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.endswith("@refused.invalid"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.in_data.set()
        if self.delay_s:
            import asyncio

            await asyncio.sleep(self.delay_s)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def ids(self) -> list[str]:
        with self.lock:
            return [str(m["X-Atelier-Notification"]) for m in self.messages]

    def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return
            time.sleep(0.02)
        raise AssertionError(f"{len(self.messages)} messages received, {count} expected")


class Credentials:
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and (
            data.login.decode() == self.username and data.password.decode() == self.password
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def start_smtp(
    recorder: Recorder,
    *,
    port: int | None = None,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    credentials: Credentials | None = None,
) -> Controller:
    kwargs: dict[str, Any] = {}
    if starttls is not None:
        kwargs.update(tls_context=starttls, require_starttls=True)
    if implicit_tls is not None:
        # aiosmtpd only counts STARTTLS as TLS for AUTH; the whole connection is TLS here.
        kwargs.update(ssl_context=implicit_tls, auth_require_tls=False)
    if credentials is not None:
        kwargs.update(authenticator=credentials, auth_required=True)
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port or free_port(),
        server_hostname="localhost",
        **kwargs,
    )
    controller.start()
    return controller
