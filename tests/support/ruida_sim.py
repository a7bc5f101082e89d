"""A Ruida laser controller on 127.0.0.1: a real UDP server speaking the swizzled protocol.

It checks each datagram's checksum (a wrong one is refused with 0xCD, as the controllers do),
answers ACK then the memory reply, and keeps a laser-on counter that grows while a job runs
with the beam on. `silent = True` makes it stop answering (cable pulled, controller off).
It implements the framing on its own, from the description in edge/integrations/ruida.py,
so a mistake in the agent's client is not mirrored here.
"""

from __future__ import annotations

import socket
import threading
import time

ACK, REFUSED = 0xCC, 0xCD
STATUS_ADDRESS = (0x04, 0x00)
LASER_ON_ADDRESS = (0x04, 0x11)


def _swizzle_byte(b: int, magic: int) -> int:
    low, high = b & 0x01, (b >> 7) & 0x01
    b = (b & 0x7E) | (low << 7) | high
    return ((b ^ magic) + 1) & 0xFF


def _unswizzle_byte(b: int, magic: int) -> int:
    b = ((b - 1) & 0xFF) ^ magic
    low, high = b & 0x01, (b >> 7) & 0x01
    return (b & 0x7E) | (low << 7) | high


class RuidaSim:
    def __init__(self, *, magic: int = 0x88, laser_on_s: float = 3600.0) -> None:
        self.magic = magic
        self.silent = False
        self.requests = 0
        self.bad_checksums = 0
        self._lock = threading.Lock()
        self._laser_on_s = laser_on_s
        self._running = False
        self._beam_on = False
        self._beam_since = 0.0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ruida-sim", daemon=True)

    def __enter__(self) -> RuidaSim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    # -- the laser ------------------------------------------------------------------------
    def start_job(self, *, beam: bool = True) -> None:
        with self._lock:
            self._running = True
            self._set_beam(beam)

    def end_job(self) -> None:
        with self._lock:
            self._set_beam(False)
            self._running = False

    @property
    def laser_on_s(self) -> int:
        with self._lock:
            return self._counter()

    def _set_beam(self, on: bool) -> None:
        now = time.monotonic()
        if self._beam_on:
            self._laser_on_s += now - self._beam_since
        self._beam_on, self._beam_since = on, now

    def _counter(self) -> int:
        extra = time.monotonic() - self._beam_since if self._beam_on else 0.0
        return int(self._laser_on_s + extra)

    def _memory(self, address: tuple[int, int]) -> int:
        with self._lock:
            if address == STATUS_ADDRESS:
                # Bit 0: a job runs; bit 24: the head moves (while the beam cuts, it does).
                return (0x01 if self._running else 0) | (0x01000000 if self._beam_on else 0)
            if address == LASER_ON_ADDRESS:
                return self._counter()
        return 0

    # -- the wire -------------------------------------------------------------------------
    def _encode(self, data: bytes) -> bytes:
        return bytes(_swizzle_byte(b, self.magic) for b in data)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                datagram, sender = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.silent:
                continue
            self.requests += 1
            if (
                len(datagram) < 3
                or int.from_bytes(datagram[:2], "big") != sum(datagram[2:]) & 0xFFFF
            ):
                self.bad_checksums += 1
                self._sock.sendto(self._encode(bytes([REFUSED])), sender)
                continue
            command = bytes(_unswizzle_byte(b, self.magic) for b in datagram[2:])
            self._sock.sendto(self._encode(bytes([ACK])), sender)
            if len(command) >= 4 and command[:2] == b"\xda\x00":
                address = (command[2], command[3])
                value = self._memory(address)
                septets = bytes((value >> s) & 0x7F for s in (28, 21, 14, 7, 0))
                self._sock.sendto(self._encode(b"\xda\x01" + command[2:4] + septets), sender)
