"""Busy and beam hours from a Ruida laser controller, read over its UDP protocol.

The controller listens on UDP 50200 and answers on 40200. Every byte it takes or gives is
"swizzled" with a per-model key (0x88 on the RDC644x family): the bit 7 and bit 0 of a byte
are swapped, the byte is XORed with the key, then 1 is added. A datagram to the controller is
a 16-bit big-endian checksum (the sum of the swizzled bytes) followed by the swizzled command;
the controller first answers one swizzled byte, ACK (0xCC, 0xC6 on the wire with key 0x88)
or a refusal (0xCD, 0x46 on the wire, e.g. for a bad checksum; some firmware sends 0xCF), then,
for a read, a datagram of the swizzled reply with no checksum.

Reading memory: `DA 00 <address: 2 bytes>`; the reply is `DA 01 <address> <value>`, the value
in 5 bytes of 7 bits (most significant first). Two addresses are read each poll:
- 0x04 0x00, the machine status: bit 0 set while a job runs (bit 24 while the head moves);
- 0x04 0x11, the total laser-on ("laser work") time, seconds, kept by the controller.

A running job makes the machine busy (`machine.busy` with source `ruida`); telemetry carries
`beam_s_total` (the controller's counter) and `beam_s_job` (its growth since the job began;
the last job's while idle),
so the hub sees beam time next to the busy time the session machine counts.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import RuidaOptions
from edge.errors import RuidaError as RuidaError  # re-exported: its first home
from edge.integrations.busy import BusyReport, EmitEvent, EmitTelemetry

log = logging.getLogger(__name__)

SOURCE = "ruida"
ACK = 0xCC
REFUSED = 0xCD
NAK = 0xCF
READ_MEMORY = b"\xda\x00"
MEMORY_REPLY = b"\xda\x01"
MACHINE_STATUS = b"\x04\x00"
LASER_ON_TOTAL = b"\x04\x11"
STATUS_JOB_RUNNING = 0x01
_NAK_RETRIES = 2


# -- framing -------------------------------------------------------------------------------


def _swap_ends(b: int) -> int:
    # Exchanges bit 7 and bit 0 (the three-XOR swap the controllers use).
    b ^= (b >> 7) & 0xFF
    b ^= (b << 7) & 0xFF
    return b ^ ((b >> 7) & 0xFF)


def _tables(magic: int) -> tuple[bytes, bytes]:
    forward = bytes(((_swap_ends(b) ^ magic) + 1) & 0xFF for b in range(256))
    backward = bytearray(256)
    for plain, coded in enumerate(forward):
        backward[coded] = plain
    return forward, bytes(backward)


_TABLES: dict[int, tuple[bytes, bytes]] = {}


def _table(magic: int, index: int) -> bytes:
    if magic not in _TABLES:
        _TABLES[magic] = _tables(magic)
    return _TABLES[magic][index]


def swizzle(data: bytes, magic: int = 0x88) -> bytes:
    return data.translate(_table(magic, 0))


def unswizzle(data: bytes, magic: int = 0x88) -> bytes:
    return data.translate(_table(magic, 1))


def checksum(swizzled: bytes) -> int:
    return sum(swizzled) & 0xFFFF


def frame(command: bytes, magic: int = 0x88) -> bytes:
    """The datagram that carries `command` to the controller."""
    body = swizzle(command, magic)
    return checksum(body).to_bytes(2, "big") + body


def unframe(datagram: bytes, magic: int = 0x88) -> bytes | None:
    """The command inside a datagram to the controller, or None when the checksum is wrong."""
    if len(datagram) < 3:
        return None
    body = datagram[2:]
    if int.from_bytes(datagram[:2], "big") != checksum(body):
        return None
    return unswizzle(body, magic)


def encode_u35(value: int) -> bytes:
    return bytes((value >> shift) & 0x7F for shift in (28, 21, 14, 7, 0))


def decode_u35(data: bytes) -> int:
    value = 0
    for b in data[:5]:
        value = (value << 7) | (b & 0x7F)
    return value


def read_command(address: bytes) -> bytes:
    return READ_MEMORY + address


def memory_reply(address: bytes, value: int) -> bytes:
    return MEMORY_REPLY + address + encode_u35(value)


# -- the client ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuidaReading:
    status: int
    laser_on_s: int

    @property
    def job_running(self) -> bool:
        return bool(self.status & STATUS_JOB_RUNNING)


class RuidaClient:
    """Memory reads, one at a time, each bounded by `timeout_s`."""

    def __init__(
        self,
        host: str,
        port: int = 50200,
        *,
        source_port: int = 40200,
        magic: int = 0x88,
        timeout_s: float = 1.0,
    ) -> None:
        self.address = (host, port)
        self._ip: str | None = None
        self.magic = magic
        self.timeout_s = timeout_s
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("", source_port))

    def close(self) -> None:
        self._sock.close()

    def read(self, address: bytes) -> int:
        if self._ip is None:
            # Resolved at the first read, not at start: the agent starts without the laser.
            try:
                self._ip = socket.gethostbyname(self.address[0])
            except OSError as exc:
                raise RuidaError(f"cannot resolve {self.address[0]}: {exc}") from None
        self._drain()
        datagram = frame(read_command(address), self.magic)
        for _attempt in range(_NAK_RETRIES + 1):
            self._sock.sendto(datagram, (self._ip, self.address[1]))
            deadline = time.monotonic() + self.timeout_s
            answer = self._receive(deadline)
            if answer in (bytes([REFUSED]), bytes([NAK])):
                continue
            if answer != bytes([ACK]):
                # Some firmware sends the reply without an ACK first.
                return self._value(answer, address)
            return self._value(self._receive(deadline), address)
        raise RuidaError(
            f"the controller refused the read of {address.hex()} {_NAK_RETRIES + 1} times"
        )

    def reading(self) -> RuidaReading:
        return RuidaReading(status=self.read(MACHINE_STATUS), laser_on_s=self.read(LASER_ON_TOTAL))

    def _value(self, reply: bytes, address: bytes) -> int:
        if len(reply) < 9 or reply[:2] != MEMORY_REPLY or reply[2:4] != address:
            raise RuidaError(f"unexpected reply {reply.hex()} to the read of {address.hex()}")
        return decode_u35(reply[4:9])

    def _receive(self, deadline: float) -> bytes:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuidaError(f"no answer from {self.address[0]}:{self.address[1]}")
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                continue
            data, sender = self._sock.recvfrom(2048)
            if sender[0] == self._ip:  # anything else on the port is not our controller
                return unswizzle(data, self.magic)

    def _drain(self) -> None:
        # A late answer to an earlier read must not be taken for the answer to this one.
        while select.select([self._sock], [], [], 0)[0]:
            self._sock.recvfrom(2048)


# -- the watcher ---------------------------------------------------------------------------


class RuidaWatcher:
    """Polls one controller on its own thread; reports through callbacks that only enqueue."""

    source = SOURCE

    def __init__(
        self,
        options: RuidaOptions,
        *,
        emit_event: EmitEvent,
        emit_telemetry: EmitTelemetry,
        monotonic: Callable[[], float] = time.monotonic,
        client: RuidaClient | None = None,
    ) -> None:
        self.options = options
        self._report = BusyReport(SOURCE, emit_event, emit_telemetry)
        self._monotonic = monotonic
        self._client = client
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_answer = monotonic()
        self._job_started_at_s: int | None = None
        # The running job's beam seconds, or the last job's while idle (None: no job seen).
        self._job_beam_s: int | None = None
        self._last_telemetry: float | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._last_answer = self._monotonic()
        self._thread = threading.Thread(target=self._run, name="ruida-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("ruida poll failed; trying again next interval")
            self._stop.wait(self.options.poll_interval_s)

    def _connect(self) -> RuidaClient:
        if self._client is None:
            try:
                self._client = RuidaClient(
                    self.options.host,
                    self.options.port,
                    source_port=self.options.source_port,
                    magic=self.options.magic,
                    timeout_s=self.options.timeout_s,
                )
            except OSError as exc:
                # Reported like a silent controller: the agent runs on without it.
                raise RuidaError(
                    f"cannot listen on UDP port {self.options.source_port}: {exc.strerror}"
                ) from None
        return self._client

    def poll_once(self) -> None:
        now = self._monotonic()
        try:
            reading = self._connect().reading()
        except RuidaError as exc:
            silent = now - self._last_answer >= self.options.silent_after_s
            if silent and self._report.online is not False:
                self._report.set_online(False, f"Ruida controller not answering: {exc}")
                self._report.telemetry({"ruida_online": False, "job_running": None})
            return
        self._last_answer = now
        self._report.set_online(True, f"Ruida controller {self.options.host} answering")
        changed = reading.job_running != self._report.busy
        if reading.job_running and (changed or self._job_started_at_s is None):
            self._job_started_at_s = reading.laser_on_s
        if self._job_started_at_s is not None:
            self._job_beam_s = max(0, reading.laser_on_s - self._job_started_at_s)
        if not reading.job_running:
            self._job_started_at_s = None
        self._report.set_busy(reading.job_running)
        due = (
            changed
            or self._last_telemetry is None
            or now - self._last_telemetry >= self.options.telemetry_min_interval_s
        )
        if due:
            self._last_telemetry = now
            self._report.telemetry(
                {
                    "ruida_online": True,
                    "job_running": reading.job_running,
                    "beam_s_total": reading.laser_on_s,
                    "beam_s_job": self._job_beam_s,
                }
            )
