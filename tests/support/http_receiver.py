"""A webhook receiver on loopback: verifies each post's signature and records it by id."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, secret: str, port: int) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.port = port
        self.posts: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                message_id = self.headers.get("webhook-id", "")
                timestamp = self.headers.get("webhook-timestamp", "")
                signed = f"{message_id}.{timestamp}.".encode() + body
                expected = base64.b64encode(
                    hmac.new(receiver.key, signed, hashlib.sha256).digest()
                ).decode()
                given = [
                    p.partition(",")[2] for p in self.headers.get("webhook-signature", "").split()
                ]
                with receiver.lock:
                    if expected not in given:
                        receiver.bad_signatures += 1
                        self.send_response(401)
                    else:
                        receiver.posts.append(
                            {"id": message_id, "timestamp": int(timestamp), **json.loads(body)}
                        )
                        self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self.lock:
            return [p["id"] for p in self.posts]
