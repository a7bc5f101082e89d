"""A register-level model of the NXP MFRC522 and MIFARE Classic 1K cards, behind fake SPI.

Enough of the chip for the mfrc522 package's own code to run unmodified: the SPI address
byte, registers with their side effects (FIFO, FlushBuffer, Set1/Set2 IRQ semantics,
StartSend, RxLastBits), the Idle/Transceive/MFAuthent/CalcCRC/SoftReset commands, CRC_A, and
a timer that fires in *chip time* (wall time since start plus the time each SPI transfer
takes on the wire), so a poll with no card times out through TimerIRq exactly as on the chip.

Like the chip, it takes time on the air: a frame sent with StartSend reaches the card only
once its bits are out (106 kbit/s, 9 bits per byte), and the answer lands in the FIFO a frame
delay later; writing a command (Idle) before the frame is out cuts it, so the card never hears
it. CalcCRC keeps running until another command is written and swallows every byte then put
in the FIFO (datasheet 10.3.1.4). SoftReset, a power-on (`plug_in`), a brown-out and the NRSTPD
line bring back the reset values: antenna off, timer stopped.

The card speaks ISO 14443-3 type A: REQA/WUPA (7-bit frames), anticollision and SELECT at every
cascade level its UID needs (4 bytes: one, 7 bytes: two, 10 bytes: three; the SAK's bit 2 says
"UID not complete"), HLTA, the IDLE/READY/ACTIVE/HALT states (READY* and ACTIVE* when woken from
HALT), and MIFARE Classic READ/WRITE after authentication with key A or B, with the sector
trailer's access bits deciding which key may read or write which block. Crypto1 itself is not
modelled: authentication checks the key and records the sector and key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Registers (datasheet section 9)
COMMAND, COMM_IEN, DIV_IEN, COMM_IRQ, DIV_IRQ, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
STATUS1, STATUS2, FIFO_DATA, FIFO_LEVEL, CONTROL, BIT_FRAMING = 0x07, 0x08, 0x09, 0x0A, 0x0C, 0x0D
WATER_LEVEL, MODE, TX_MODE, RX_MODE, TX_CONTROL, TX_ASK = 0x0B, 0x11, 0x12, 0x13, 0x14, 0x15
CRC_RESULT_M, CRC_RESULT_L = 0x21, 0x22
T_MODE, T_PRESCALER, T_RELOAD_H, T_RELOAD_L = 0x2A, 0x2B, 0x2C, 0x2D
VERSION = 0x37

# Commands
IDLE, CALC_CRC, TRANSCEIVE, MF_AUTHENT, SOFT_RESET = 0x00, 0x03, 0x0C, 0x0E, 0x0F

# CommIrqReg bits
TX_IRQ, RX_IRQ, IDLE_IRQ, ERR_IRQ, TIMER_IRQ = 0x40, 0x20, 0x10, 0x02, 0x01
CRC_IRQ = 0x04  # DivIrqReg
MF_CRYPTO1_ON = 0x08  # Status2Reg

# Datasheet table 20 ("reset value" column); registers not listed reset to 0x00.
RESET_VALUES = {
    COMMAND: 0x20,
    COMM_IEN: 0x80,
    COMM_IRQ: 0x14,
    STATUS1: 0x21,
    WATER_LEVEL: 0x08,
    CONTROL: 0x10,
    MODE: 0x3F,
    TX_CONTROL: 0x80,
    0x16: 0x10,  # TxSelReg
    0x17: 0x84,  # RxSelReg
    0x18: 0x84,  # RxThresholdReg
    0x19: 0x4D,  # DemodReg
    0x1C: 0x62,  # MfTxReg
    0x1F: 0xEB,  # SerialSpeedReg
    CRC_RESULT_M: 0xFF,
    CRC_RESULT_L: 0xFF,
    0x24: 0x26,  # ModWidthReg
    0x26: 0x48,  # RFCfgReg
    0x27: 0x88,  # GsNReg
    0x28: 0x20,  # CWGsPReg
    0x29: 0x20,  # ModGsPReg
    T_MODE: 0x00,
    T_PRESCALER: 0x00,
    T_RELOAD_H: 0x00,
    T_RELOAD_L: 0x00,
}

# 106 kbit/s: one bit is 128 carrier cycles; a byte is 8 bits and its parity bit.
BIT_S = 128 / 13.56e6
# The card answers one frame delay time after the end of the reader's frame (ISO 14443-3,
# FDT = 1172/fc for an answer whose last bit is 1): about 86 us.
FDT_S = 1172 / 13.56e6
CASCADE_TAG = 0x88
SEL = {1: 0x93, 2: 0x95, 3: 0x97}

DEFAULT_KEY = bytes([0xFF] * 6)
DEFAULT_ACCESS = bytes([0xFF, 0x07, 0x80, 0x69])  # transport configuration: key A does all


def frame_air_time(n_bits: int) -> float:
    return n_bits * BIT_S


def access_conditions(access: bytes) -> list[tuple[int, int, int]]:
    """(C1, C2, C3) of blocks 0..3 of a sector, from trailer bytes 6..8 (MIFARE Classic)."""
    b7, b8 = access[1], access[2]
    return [((b7 >> (4 + i)) & 1, (b8 >> i) & 1, (b8 >> (4 + i)) & 1) for i in range(4)]


def data_block_allows(conditions: tuple[int, int, int], key: str, write: bool) -> bool:
    """Whether key 'A' or 'B' may read (or write) a data block under access bits C1 C2 C3.

    MIFARE Classic 1K datasheet, table 8; key B counts as readable (not usable) when the
    trailer's own conditions let key A read it: 000, 010 and 001 for the trailer."""
    table: dict[tuple[int, int, int], tuple[str, str]] = {
        (0, 0, 0): ("AB", "AB"),
        (0, 1, 0): ("AB", ""),
        (1, 0, 0): ("AB", "B"),
        (1, 1, 0): ("AB", "B"),
        (0, 0, 1): ("AB", ""),
        (0, 1, 1): ("B", "B"),
        (1, 0, 1): ("B", ""),
        (1, 1, 1): ("", ""),
    }
    read_keys, write_keys = table[conditions]
    return key in (write_keys if write else read_keys)


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
    """A card in the field. `blocks` is its memory: 16 sectors of 4 blocks of 16 bytes.

    `uid` has 4 bytes (single size), 7 (double: MIFARE Classic EV1 7B, NTAG, most phones) or
    10 (triple). `sak` is the final SAK: 0x08 for a Classic 1K; 0x00 for an NTAG/Ultralight,
    which has no sectors to authenticate to (the model then refuses every authentication).
    """

    uid: bytes
    blocks: list[bytearray] = field(default_factory=list)
    sak: int = 0x08
    state: str = "IDLE"  # IDLE, READY, ACTIVE, HALT (READY* and ACTIVE*: woken from HALT)
    authenticated_sector: int | None = None
    authenticated_key: str | None = None
    level: int = 1  # the cascade level the card is at while READY
    woken: int = 0  # how many REQA/WUPA it answered
    _pending_write: int | None = None
    _woken_from_halt: bool = False

    def __post_init__(self) -> None:
        assert len(self.uid) in (4, 7, 10), "a UID has 4, 7 or 10 bytes"
        if not self.blocks:
            self.blocks = [bytearray(16) for _ in range(64)]
            if len(self.uid) == 4:
                self.blocks[0][:8] = bytes([*self.uid, self.bcc, self.sak, 0x04, 0x00])
            else:
                self.blocks[0][: len(self.uid) + 3] = bytes([*self.uid, self.sak, *self.atqa])
            for sector in range(16):
                self.blocks[sector * 4 + 3][:] = DEFAULT_KEY + DEFAULT_ACCESS + DEFAULT_KEY

    @property
    def bcc(self) -> int:
        return self.uid[0] ^ self.uid[1] ^ self.uid[2] ^ self.uid[3]

    @property
    def levels(self) -> int:
        return {4: 1, 7: 2, 10: 3}[len(self.uid)]

    @property
    def atqa(self) -> list[int]:
        # Bits 7-6 of the first byte give the UID size: 00 single, 01 double, 10 triple.
        return [0x04 | ((self.levels - 1) << 6), 0x00]

    @property
    def auth_uid(self) -> bytes:
        """The 4 UID bytes MFAuthent takes: the last cascade level's (NXP AN10927)."""
        return self.uid[-4:]

    def cascade(self, level: int) -> list[int]:
        """The 4 UID bytes sent at a cascade level, a cascade tag first when more follow."""
        if level < self.levels:
            part = [CASCADE_TAG, *self.uid[(level - 1) * 3 : level * 3]]
        else:
            part = list(self.uid[(level - 1) * 3 :])
        return [*part, part[0] ^ part[1] ^ part[2] ^ part[3]]

    def set_keys(
        self,
        sector: int,
        key_a: bytes,
        key_b: bytes = DEFAULT_KEY,
        access: bytes = DEFAULT_ACCESS,
    ) -> None:
        self.blocks[sector * 4 + 3][:] = key_a + access + key_b

    def leave_field(self) -> None:
        """Out of the field or unpowered: the card forgets everything but its memory."""
        self.state, self.level, self._woken_from_halt = "IDLE", 1, False
        self.authenticated_sector = self.authenticated_key = self._pending_write = None

    def authenticate(self, mode: int, block: int, key: bytes, uid4: bytes) -> bool:
        if (
            self.state != "ACTIVE"
            or self.sak & 0x18 == 0
            or uid4 != self.auth_uid
            or not 0 <= block < 64
        ):
            self._drop()
            return False
        trailer = self.blocks[(block // 4) * 4 + 3]
        expected = bytes(trailer[:6]) if mode == 0x60 else bytes(trailer[10:16])
        if key != expected:
            self._drop()  # a failed authentication drops the card out of ACTIVE
            return False
        self.authenticated_sector = block // 4
        self.authenticated_key = "A" if mode == 0x60 else "B"
        return True

    def _drop(self) -> None:
        self.state = "HALT" if self._woken_from_halt else "IDLE"
        self.authenticated_sector = self.authenticated_key = None

    def _allowed(self, block: int, write: bool) -> bool:
        sector = block // 4
        if self.authenticated_sector != sector or self.authenticated_key is None:
            return False
        conditions = access_conditions(bytes(self.blocks[sector * 4 + 3][6:9]))
        if block % 4 == 3:
            # The trailer: the transport configuration (001) lets key A write it all, 011
            # lets key B; the other conditions are modelled as not writable.
            if not write:
                return True
            c = conditions[3]
            return (c == (0, 0, 1) and self.authenticated_key == "A") or (
                c == (0, 1, 1) and self.authenticated_key == "B"
            )
        return data_block_allows(conditions[block % 4], self.authenticated_key, write)

    def _read_block(self, block: int) -> list[int]:
        data = list(self.blocks[block])
        if block % 4 == 3:
            data[:6] = [0] * 6  # key A is never readable
            c = access_conditions(bytes(self.blocks[block][6:9]))[3]
            if c not in ((0, 0, 0), (0, 1, 0), (0, 0, 1)):
                data[10:16] = [0] * 6  # key B is readable only where it is not a key
        return data

    def receive(
        self, frame: list[int], last_bits: int, encrypted: bool = False
    ) -> tuple[list[int], int] | None:
        """The card's answer (bytes, valid bits of the last byte, 0 = 8), or None for silence.

        `encrypted` says whether the reader's Crypto1 unit was on: once authenticated, the
        card understands only encrypted frames (HLTA included)."""
        if last_bits == 7 and len(frame) == 1:
            command = frame[0]
            if (command == 0x26 and self.state == "IDLE") or (
                command == 0x52 and self.state in ("IDLE", "HALT")
            ):
                self._woken_from_halt = self.state == "HALT"
                self.state, self.level = "READY", 1
                self.woken += 1
                return self.atqa, 0
            self._unexpected()
            return None
        if self.authenticated_sector is not None and not encrypted:
            self._unexpected()  # plain bytes after authentication: noise to the card
            return None
        if self._pending_write is not None:
            block, self._pending_write = self._pending_write, None
            if len(frame) == 18 and _crc_ok(frame):
                self.blocks[block][:] = bytes(frame[:16])
                return [0x0A], 4
            return [0x04], 4  # NAK
        sel = SEL.get(self.level)
        if self.state == "READY" and frame == [sel, 0x20]:
            return self.cascade(self.level), 0
        if self.state == "READY" and len(frame) == 9 and frame[:2] == [sel, 0x70]:
            if _crc_ok(frame) and frame[2:7] == self.cascade(self.level):
                if self.level < self.levels:
                    self.level += 1
                    return _with_crc([0x04]), 0  # SAK: cascade bit, UID not complete
                self.state = "ACTIVE"
                return _with_crc([self.sak]), 0
            return None
        if self.state == "ACTIVE" and len(frame) == 4 and _crc_ok(frame):
            command, block = frame[0], frame[1]
            if command == 0x50 and block == 0x00:  # HLTA
                self.state = "HALT"
                self.authenticated_sector = self.authenticated_key = None
                return None
            if command not in (0x30, 0xA0) or block >= 64:
                self._unexpected()
                return None
            if not self._allowed(block, write=command == 0xA0):
                return [0x04], 4  # NAK: not authenticated, or the access bits forbid it
            if command == 0x30:
                return _with_crc(self._read_block(block)), 0
            if block == 0:
                return [0x04], 4  # the manufacturer block is read-only
            self._pending_write = block
            return [0x0A], 4
        self._unexpected()
        return None

    def _unexpected(self) -> None:
        # ISO 14443-3: an unexpected frame sends a READY/ACTIVE card back to IDLE, or to
        # HALT when it was woken from HALT.
        if self.state in ("READY", "ACTIVE"):
            self._drop()
            self.level = 1


class MFRC522Chip:
    """The reader IC. `transfer` is what a fake `spidev.SpiDev.xfer2` calls.

    `version` is what VersionReg reads: 0x91/0x92 for NXP's MFRC522 v1/v2, or a clone's
    (0x88 and 0xB2 for Fudan FM17522, 0x12 for the counterfeit chips on cheap modules)."""

    def __init__(
        self,
        *,
        spi_hz: int = 1_000_000,
        wall_clock: Callable[[], float] = time.monotonic,
        version: int = 0x92,
    ) -> None:
        self.spi_hz = spi_hz
        self.version = version
        self._wall = wall_clock
        self._wall0 = wall_clock()
        self._wire_time = 0.0
        self.transfers = 0
        self.card: MifareClassic1K | None = None
        self.answering = True  # False: unplugged, or a loose wire
        self.oscillator_ok = True  # False: a dead crystal; SPI answers, nothing is sent or timed
        self._reset_line = 1
        self.resets = 0
        self._power_on_reset()

    # -- the field ---------------------------------------------------------------------
    def place(self, card: MifareClassic1K) -> None:
        if self.card is not None and self.card is not card:
            self.card.leave_field()
        self.card = card
        card.leave_field()

    def remove(self) -> None:
        if self.card is not None:
            self.card.leave_field()
        self.card = None

    # -- power ---------------------------------------------------------------------------
    def unplug(self) -> None:
        """The module is pulled off its header: nothing answers, the field goes down."""
        self.answering = False
        if self.card is not None:
            self.card.leave_field()

    def plug_in(self) -> None:
        """Plugged back: the chip powers up with its reset values (antenna off, no timer)."""
        self.answering = True
        self._power_on_reset()

    def brown_out(self) -> None:
        """The 3.3 V dipped: the chip reset itself and still answers, but is unconfigured."""
        self._power_on_reset()

    @property
    def reset_line(self) -> int:
        return self._reset_line

    @reset_line.setter
    def reset_line(self, value: int) -> None:
        # NRSTPD low is a hard power-down; its rising edge resets the chip.
        rising = self._reset_line == 0 and value
        self._reset_line = int(bool(value))
        if not value and self.card is not None:
            self.card.leave_field()
        if rising:
            self._power_on_reset()

    def _power_on_reset(self) -> None:
        self.resets += 1
        self._soft_reset()

    # -- time ----------------------------------------------------------------------------
    def now(self) -> float:
        return self._wall() - self._wall0 + self._wire_time

    def timer_period(self) -> float:
        prescaler = ((self.regs[T_MODE] & 0x0F) << 8) | self.regs[T_PRESCALER]
        reload = (self.regs[T_RELOAD_H] << 8) | self.regs[T_RELOAD_L]
        return (reload + 1) * (2 * prescaler + 1) / 13.56e6

    def _start_timer(self, at: float) -> None:
        if self.regs[T_MODE] & 0x80:  # TAuto: starts at the end of a transmission
            self._timer_deadline = at + self.timer_period()

    def _advance(self) -> None:
        """Apply what happened on the air and in the timer up to chip time now."""
        if not self.oscillator_ok:
            return
        now = self.now()
        if self._air is not None and now >= self._air[0]:
            tx_end, frame, last_bits = self._air
            self._air = None
            self.regs[COMM_IRQ] |= TX_IRQ
            antenna_on = self.regs[TX_CONTROL] & 0x03 == 0x03
            encrypted = bool(self.regs[STATUS2] & MF_CRYPTO1_ON)
            # An empty FIFO sends no frame at all: the card hears nothing.
            answer = (
                self.card.receive(frame, last_bits, encrypted)
                if self.card is not None and antenna_on and frame
                else None
            )
            if answer is None:
                self._start_timer(tx_end)
            else:
                data, bits = answer
                n_bits = (len(data) - 1) * 9 + (bits or 8) + 2
                self._rx = (tx_end + FDT_S + frame_air_time(n_bits), data, bits)
        if self._rx is not None and now >= self._rx[0]:
            _, data, bits = self._rx
            self._rx = None
            self.fifo = list(data)
            self.rx_last_bits = bits
            self.regs[COMM_IRQ] |= RX_IRQ
        if self._timer_deadline is not None and now >= self._timer_deadline:
            self._timer_deadline = None
            self.regs[COMM_IRQ] |= TIMER_IRQ

    # -- SPI -----------------------------------------------------------------------------
    def transfer(self, data: list[int]) -> list[int]:
        self.transfers += 1
        self._wire_time += len(data) * 8 / self.spi_hz
        if not self.answering or self._reset_line == 0:
            return [0] * len(data)
        self._advance()
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
        if register == FIFO_DATA:
            return self.fifo.pop(0) if self.fifo else 0
        if register == FIFO_LEVEL:
            return min(len(self.fifo), 64)
        if register == CONTROL:
            return (self.regs[CONTROL] & 0xF8) | (self.rx_last_bits & 0x07)
        if register == VERSION:
            return self.version
        return self.regs.get(register, 0)

    def _write(self, register: int, value: int) -> None:
        if register == FIFO_DATA:
            if self._crc_data is not None:
                # CalcCRC still runs: the byte goes to the coprocessor, not to the FIFO.
                self._crc_data.append(value)
                self._store_crc()
            elif len(self.fifo) < 64:
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
            if value & 0x0F != SOFT_RESET:
                self.regs[COMMAND] = (self.regs[COMMAND] & 0xF0) | (value & 0x0F)
            return
        if register == VERSION:
            return  # read-only
        self.regs[register] = value
        if register == TX_CONTROL and value & 0x03 != 0x03 and self.card is not None:
            self.card.leave_field()  # no carrier: the card loses power
        if register == BIT_FRAMING and value & 0x80 and self.regs[COMMAND] & 0x0F == TRANSCEIVE:
            self._transmit()

    def _soft_reset(self) -> None:
        self.regs: dict[int, int] = {r: 0 for r in range(0x40)}
        self.regs.update(RESET_VALUES)
        self.fifo: list[int] = []
        self.rx_last_bits = 0
        self._timer_deadline: float | None = None
        self._air: tuple[float, list[int], int] | None = None
        self._rx: tuple[float, list[int], int] | None = None
        self._crc_data: list[int] | None = None
        if self.card is not None:
            self.card.leave_field()  # the antenna is off after a reset

    def _store_crc(self) -> None:
        assert self._crc_data is not None
        low, high = crc_a(self._crc_data)
        self.regs[CRC_RESULT_L], self.regs[CRC_RESULT_M] = low, high
        self.regs[DIV_IRQ] |= CRC_IRQ

    def _command(self, command: int) -> None:
        self.regs[ERROR] = 0
        # Any command ends the one running: a frame still on the air is cut (the card never
        # hears it), an answer still arriving is lost, CalcCRC stops.
        self._air = self._rx = None
        self._crc_data = None
        if command == SOFT_RESET:
            self._soft_reset()
        elif command == IDLE:
            self._timer_deadline = None
        elif command == CALC_CRC:
            self._crc_data, self.fifo = list(self.fifo), []
            self._store_crc()
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
                self._start_timer(self.now())  # the card never answers: only the timer ends it

    def _transmit(self) -> None:
        frame, self.fifo = self.fifo, []
        last_bits = self.regs[BIT_FRAMING] & 0x07
        n_bits = (len(frame) - 1) * 9 + (last_bits or 8) + 2  # SOF and EOF
        self._air = (self.now() + frame_air_time(n_bits), frame, last_bits)
