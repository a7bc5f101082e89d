"""A register-level model of the NXP MFRC522 and MIFARE Classic 1K cards, behind fake SPI.

Enough of the chip for the mfrc522 package's own code to run unmodified: the SPI address
byte, registers with their side effects (FIFO, FlushBuffer, Set1/Set2 IRQ semantics,
StartSend, RxLastBits), the Idle/Transceive/MFAuthent/CalcCRC/SoftReset commands, CRC_A, and
a timer that fires in *chip time* (wall time since start plus the time each SPI transfer
takes on the wire), so a poll with no card times out through TimerIRq exactly as on the chip.

The card speaks ISO 14443-3 type A: REQA/WUPA (7-bit frames), anticollision cascade level 1,
SELECT with CRC_A, HLTA, and MIFARE Classic READ/WRITE after authentication with key A or B.
Crypto1 itself is not modelled: authentication checks the key and records the sector.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Registers (datasheet section 9)
COMMAND, COMM_IEN, DIV_IEN, COMM_IRQ, DIV_IRQ, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
STATUS1, STATUS2, FIFO_DATA, FIFO_LEVEL, CONTROL, BIT_FRAMING = 0x07, 0x08, 0x09, 0x0A, 0x0C, 0x0D
MODE, TX_CONTROL, CRC_RESULT_M, CRC_RESULT_L = 0x11, 0x14, 0x21, 0x22
T_MODE, T_PRESCALER, T_RELOAD_H, T_RELOAD_L = 0x2A, 0x2B, 0x2C, 0x2D
VERSION = 0x37

# Commands
IDLE, CALC_CRC, TRANSCEIVE, MF_AUTHENT, SOFT_RESET = 0x00, 0x03, 0x0C, 0x0E, 0x0F

# CommIrqReg bits
TX_IRQ, RX_IRQ, IDLE_IRQ, ERR_IRQ, TIMER_IRQ = 0x40, 0x20, 0x10, 0x02, 0x01
CRC_IRQ = 0x04  # DivIrqReg
MF_CRYPTO1_ON = 0x08  # Status2Reg

RESET_VALUES = {
    COMMAND: 0x20,
    COMM_IEN: 0x80,
    FIFO_LEVEL: 0x00,
    CONTROL: 0x10,
    MODE: 0x3F,
    TX_CONTROL: 0x80,
    0x12: 0x00,
    0x13: 0x00,
    0x15: 0x00,
    0x24: 0x26,
    0x26: 0x48,
    T_MODE: 0x00,
    T_PRESCALER: 0x00,
    T_RELOAD_H: 0x00,
    T_RELOAD_L: 0x00,
    VERSION: 0x92,
}

DEFAULT_KEY = bytes([0xFF] * 6)
DEFAULT_ACCESS = bytes([0xFF, 0x07, 0x80, 0x69])


def crc_a(data: bytes | list[int]) -> tuple[int, int]:
    """ISO/IEC 14443-3 CRC_A (x^16 + x^12 + x^5 + 1, preset 0x6363), as (low, high)."""
    crc = 0x6363
    for byte in data:
        byte ^= crc & 0xFF
        byte ^= (byte << 4) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    return crc & 0xFF, (crc >> 8) & 0xFF


def _with_crc(data: list[int]) -> list[int]:
    low, high = crc_a(data)
    return [*data, low, high]


def _crc_ok(frame: list[int]) -> bool:
    return len(frame) >= 3 and list(crc_a(frame[:-2])) == frame[-2:]


@dataclass
class MifareClassic1K:
    """A card in the field. `blocks` is its memory: 16 sectors of 4 blocks of 16 bytes."""

    uid: bytes
    blocks: list[bytearray] = field(default_factory=list)
    state: str = "IDLE"  # IDLE, READY, ACTIVE, HALT
    authenticated_sector: int | None = None
    _pending_write: int | None = None
    _woken_from_halt: bool = False

    def __post_init__(self) -> None:
        assert len(self.uid) == 4
        if not self.blocks:
            bcc = self.uid[0] ^ self.uid[1] ^ self.uid[2] ^ self.uid[3]
            self.blocks = [bytearray(16) for _ in range(64)]
            self.blocks[0][:8] = bytes([*self.uid, bcc, 0x08, 0x04, 0x00])
            for sector in range(16):
                self.blocks[sector * 4 + 3][:] = DEFAULT_KEY + DEFAULT_ACCESS + DEFAULT_KEY

    @property
    def bcc(self) -> int:
        return self.uid[0] ^ self.uid[1] ^ self.uid[2] ^ self.uid[3]

    def set_keys(self, sector: int, key_a: bytes, key_b: bytes = DEFAULT_KEY) -> None:
        self.blocks[sector * 4 + 3][:] = key_a + DEFAULT_ACCESS + key_b

    def leave_field(self) -> None:
        self.state, self.authenticated_sector, self._pending_write = "IDLE", None, None

    def authenticate(self, mode: int, block: int, key: bytes, uid4: bytes) -> bool:
        if self.state != "ACTIVE" or uid4 != self.uid or not 0 <= block < 64:
            return False
        trailer = self.blocks[(block // 4) * 4 + 3]
        expected = bytes(trailer[:6]) if mode == 0x60 else bytes(trailer[10:16])
        if key != expected:
            self.state = "IDLE"  # a failed authentication drops the card out of ACTIVE
            self.authenticated_sector = None
            return False
        self.authenticated_sector = block // 4
        return True

    def receive(self, frame: list[int], last_bits: int) -> tuple[list[int], int] | None:
        """The card's answer (bytes, valid bits of the last byte, 0 = 8), or None for silence."""
        if last_bits == 7 and len(frame) == 1:
            command = frame[0]
            if (command == 0x26 and self.state == "IDLE") or (
                command == 0x52 and self.state in ("IDLE", "HALT")
            ):
                self._woken_from_halt = self.state == "HALT"
                self.state = "READY"
                return [0x04, 0x00], 0  # ATQA of a MIFARE Classic 1K
            self._unexpected()
            return None
        if self._pending_write is not None:
            block, self._pending_write = self._pending_write, None
            if len(frame) == 18 and _crc_ok(frame):
                self.blocks[block][:] = bytes(frame[:16])
                return [0x0A], 4
            return [0x04], 4  # NAK
        if self.state == "READY" and frame == [0x93, 0x20]:
            return [*self.uid, self.bcc], 0
        if self.state == "READY" and len(frame) == 9 and frame[:2] == [0x93, 0x70]:
            if _crc_ok(frame) and bytes(frame[2:6]) == self.uid and frame[6] == self.bcc:
                self.state = "ACTIVE"
                return _with_crc([0x08]), 0  # SAK: MIFARE Classic 1K
            return None
        if self.state == "ACTIVE" and len(frame) == 4 and _crc_ok(frame):
            command, block = frame[0], frame[1]
            if command == 0x50 and block == 0x00:  # HLTA
                self.state, self.authenticated_sector = "HALT", None
                return None
            if block >= 64 or self.authenticated_sector != block // 4:
                return [0x04], 4  # NAK: not authenticated for this sector
            if command == 0x30:
                return _with_crc(list(self.blocks[block])), 0
            if command == 0xA0:
                if block == 0:
                    return [0x04], 4  # the manufacturer block is read-only
                self._pending_write = block
                return [0x0A], 4
        if self.state == "READY":
            self._unexpected()
        return None

    def _unexpected(self) -> None:
        # ISO 14443-3: an unexpected frame sends a READY/ACTIVE card back to IDLE, or to
        # HALT when it was woken from HALT.
        if self.state in ("READY", "ACTIVE"):
            self.state = "HALT" if self._woken_from_halt else "IDLE"
            self.authenticated_sector = None


class MFRC522Chip:
    """The reader IC. `transfer` is what a fake `spidev.SpiDev.xfer2` calls."""

    def __init__(
        self, *, spi_hz: int = 1_000_000, wall_clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spi_hz = spi_hz
        self._wall = wall_clock
        self._wall0 = wall_clock()
        self._wire_time = 0.0
        self.transfers = 0
        self.card: MifareClassic1K | None = None
        self.answering = True  # False: the chip stopped answering (a loose wire)
        self.reset_line = 1
        self._soft_reset()

    # -- the field ---------------------------------------------------------------------
    def place(self, card: MifareClassic1K) -> None:
        self.card = card
        card.leave_field()

    def remove(self) -> None:
        if self.card is not None:
            self.card.leave_field()
        self.card = None

    # -- time ----------------------------------------------------------------------------
    def now(self) -> float:
        return self._wall() - self._wall0 + self._wire_time

    def timer_period(self) -> float:
        prescaler = ((self.regs[T_MODE] & 0x0F) << 8) | self.regs[T_PRESCALER]
        reload = (self.regs[T_RELOAD_H] << 8) | self.regs[T_RELOAD_L]
        return (reload + 1) * (2 * prescaler + 1) / 13.56e6

    def _start_timer(self) -> None:
        if self.regs[T_MODE] & 0x80:  # TAuto: starts at the end of a transmission
            self._timer_deadline: float | None = self.now() + self.timer_period()

    def _update_timer(self) -> None:
        if self._timer_deadline is not None and self.now() >= self._timer_deadline:
            self._timer_deadline = None
            self.regs[COMM_IRQ] |= TIMER_IRQ

    # -- SPI -----------------------------------------------------------------------------
    def transfer(self, data: list[int]) -> list[int]:
        self.transfers += 1
        self._wire_time += len(data) * 8 / self.spi_hz
        if not self.answering or self.reset_line == 0:
            return [0] * len(data)
        out = [0] * len(data)
        address = data[0]
        register = (address >> 1) & 0x3F
        if address & 0x80:  # read: each following byte is the next address (or 0)
            for i in range(1, len(data)):
                out[i] = self._read(register)
                register = (data[i] >> 1) & 0x3F
        else:
            for value in data[1:]:
                self._write(register, value & 0xFF)
        return out

    def _read(self, register: int) -> int:
        self._update_timer()
        if register == FIFO_DATA:
            return self.fifo.pop(0) if self.fifo else 0
        if register == FIFO_LEVEL:
            return min(len(self.fifo), 64)
        if register == CONTROL:
            return (self.regs[CONTROL] & 0xF8) | (self.rx_last_bits & 0x07)
        return self.regs.get(register, 0)

    def _write(self, register: int, value: int) -> None:
        if register == FIFO_DATA:
            if len(self.fifo) < 64:
                self.fifo.append(value)
            return
        if register == FIFO_LEVEL:
            if value & 0x80:
                self.fifo.clear()
            return
        if register in (COMM_IRQ, DIV_IRQ):
            bits = value & 0x7F
            if value & 0x80:
                self.regs[register] |= bits
            else:
                self.regs[register] &= ~bits & 0x7F
            return
        if register == STATUS2:
            # Only MFCrypto1On is writable, and only to clear it.
            if not value & MF_CRYPTO1_ON:
                self.regs[STATUS2] &= ~MF_CRYPTO1_ON
            return
        if register == COMMAND:
            self._command(value & 0x0F)
            self.regs[COMMAND] = (self.regs[COMMAND] & 0xF0) | (value & 0x0F)
            return
        self.regs[register] = value
        if register == BIT_FRAMING and value & 0x80 and self.regs[COMMAND] & 0x0F == TRANSCEIVE:
            self._transmit()

    def _soft_reset(self) -> None:
        self.regs: dict[int, int] = {r: 0 for r in range(0x40)}
        self.regs.update(RESET_VALUES)
        self.fifo: list[int] = []
        self.rx_last_bits = 0
        self._timer_deadline = None

    def _command(self, command: int) -> None:
        self.regs[ERROR] = 0
        if command == SOFT_RESET:
            self._soft_reset()
        elif command == IDLE:
            self._timer_deadline = None
        elif command == CALC_CRC:
            low, high = crc_a(self.fifo)
            self.regs[CRC_RESULT_L], self.regs[CRC_RESULT_M] = low, high
            self.regs[DIV_IRQ] |= CRC_IRQ
        elif command == MF_AUTHENT:
            frame, self.fifo = self.fifo, []
            ok = (
                self.card is not None
                and len(frame) == 12
                and self.card.authenticate(
                    frame[0], frame[1], bytes(frame[2:8]), bytes(frame[8:12])
                )
            )
            if ok:
                self.regs[STATUS2] |= MF_CRYPTO1_ON
                self.regs[COMM_IRQ] |= IDLE_IRQ
            else:
                self._start_timer()  # the card never answers: only the timer ends the wait

    def _transmit(self) -> None:
        frame, self.fifo = self.fifo, []
        last_bits = self.regs[BIT_FRAMING] & 0x07
        self.regs[COMM_IRQ] |= TX_IRQ
        antenna_on = self.regs[TX_CONTROL] & 0x03 == 0x03
        answer = self.card.receive(frame, last_bits) if self.card and antenna_on else None
        if answer is None:
            self._start_timer()
            return
        data, bits = answer
        self.fifo = list(data)
        self.rx_last_bits = bits
        self.regs[COMM_IRQ] |= RX_IRQ
