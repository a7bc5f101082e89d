"""An embedded MQTT broker (amqtt) for `atelier demo` only: loopback, anonymous, MQTT 3.1.1."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """amqtt in a thread with its own event loop. Never for production: no auth, no TLS."""

    def __init__(self, host: str = "127.0.0.1", port: int = 18830) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the embedded demo broker only listens on loopback")
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15) -> None:
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the embedded broker did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the embedded broker did not start: {self._error}")
        log.info("embedded MQTT broker (amqtt) on %s:%s", self.host, self.port)

    def _run(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

        async def boot() -> None:
            self._broker = Broker(config)
            await self._broker.start()

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        try:
            future.result(timeout=10)
        except Exception:
            log.warning("the embedded broker did not shut down cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
