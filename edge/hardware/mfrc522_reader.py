"""MFRC522 badge reader over SPI, using the mfrc522 package's own code (imported lazily).

The package's `read()` spins forever and even its `read_id_no_block()` busy-reads the IRQ
register up to 2,000 times when no card answers, because its wait loop never honours the
timer interrupt. An empty poll here instead arms a short chip timer, sends one WUPA, sleeps
past the timeout and reads the IRQ register once: a handful of SPI transfers per poll.
A card that answers is then read with the package's anticollision (and, in secure mode,
select/authenticate/read), and halted so it answers the next poll's WUPA again.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from edge.hardware.readers import BadgeRead, OnBadge, ReaderError
from edge.hardware.secure_card import card_secret, read_secret
from protocol.badges import uid_from_mfrc522_id

log = logging.getLogger(__name__)

# Registers and bits used by the fast poll (datasheet section 9).
COMMAND, COMM_IRQ, FIFO_DATA, FIFO_LEVEL, BIT_FRAMING = 0x01, 0x04, 0x09, 0x0A, 0x0D
T_RELOAD_L, VERSION = 0x2D, 0x37
IDLE, TRANSCEIVE = 0x00, 0x0C
RX_IRQ = 0x20
WUPA = 0x52
KNOWN_VERSIONS = {0x88, 0x90, 0x91, 0x92, 0xB2}
# With the package's timer set-up (TPrescaler 0xD3E: 2 kHz) one reload tick is 0.5 ms; a
# card answers WUPA within 0.1 ms, so 2 ticks are plenty, and the host sleeps past them.
POLL_RELOAD_TICKS = 2
POLL_WAIT_S = 0.0015
INIT_RELOAD_TICKS = 30


class MFRC522Reader:
    kind = "mfrc522"

    def __init__(
        self,
        *,
        bus: int = 0,
        device: int = 0,
        rst_pin: int = 25,
        poll_interval_s: float = 0.1,
        misses_before_removed: int = 2,
        secure: bool = False,
        secure_sector: int = 1,
        site_key: bytes | None = None,
        sector_key: bytes = b"\xff" * 6,
    ) -> None:
        if secure and not site_key:
            raise ReaderError("secure mode needs the site key (reader.site_key_file)")
        self.bus, self.device, self.rst_pin = bus, device, rst_pin
        self.poll_interval_s = poll_interval_s
        self.misses_before_removed = max(1, misses_before_removed)
        self.secure, self.secure_sector = secure, secure_sector
        self.site_key, self.sector_key = site_key, sector_key
        self.chip: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy = False
        self._errors = 0
        self._present: str | None = None
        self._misses = 0

    @classmethod
    def from_config(cls, config: Any) -> MFRC522Reader:
        reader = config.reader
        site_key = Path(reader.site_key_file).read_bytes().strip() if reader.site_key_file else None
        return cls(
            bus=reader.bus,
            device=reader.device,
            rst_pin=reader.rst_pin,
            poll_interval_s=reader.poll_interval_s,
            secure=reader.secure,
            secure_sector=reader.secure_sector,
            site_key=site_key,
            sector_key=bytes.fromhex(reader.sector_key),
        )

    @property
    def healthy(self) -> bool:
        return self._healthy

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        try:
            from mfrc522 import MFRC522  # lazily: it imports RPi.GPIO and spidev
        except (ImportError, RuntimeError) as exc:
            raise ReaderError(
                f"the mfrc522 package cannot load ({exc}); install the `pi` extra "
                "and enable SPI (raspi-config nonint do_spi 0)"
            ) from exc
        try:
            self.chip = MFRC522(bus=self.bus, device=self.device, pin_mode=11, pin_rst=self.rst_pin)
        except (OSError, FileNotFoundError) as exc:
            raise ReaderError(f"SPI {self.bus}.{self.device} cannot be opened: {exc}") from exc
        self._check_version()

    def _check_version(self) -> None:
        version = self.chip.Read_MFRC522(VERSION)
        if version not in KNOWN_VERSIONS:
            self._healthy = False
            raise ReaderError(
                f"no MFRC522 answers on SPI {self.bus}.{self.device} "
                f"(VersionReg 0x{version:02X}); check the wiring and the 3.3 V supply"
            )
        self._healthy = True

    def start(self, on_badge: OnBadge) -> None:
        if self.chip is None:
            self.open()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(on_badge,), name="mfrc522", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(2.0, 3 * self.poll_interval_s))
            self._thread = None
        if self.chip is not None:
            try:
                self.chip.Close_MFRC522()
            except Exception:  # closing a dead bus must not stop the agent from exiting
                log.debug("closing the reader failed", exc_info=True)
            self.chip = None

    def _run(self, on_badge: OnBadge) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                for read in self.poll_once():
                    on_badge(read)
                self._errors = 0
            except Exception:
                self._errors += 1
                log.warning("reader poll failed (%d in a row)", self._errors, exc_info=True)
                if self._errors >= 5:
                    self._healthy = False

    # -- one poll --------------------------------------------------------------------------
    def poll_once(self) -> list[BadgeRead]:
        """Look for a card once; report a new card, or the previous one leaving."""
        if not self.card_in_field():
            if self._present is not None:
                self._misses += 1
                if self._misses >= self.misses_before_removed:
                    gone, self._present, self._misses = self._present, None, 0
                    return [BadgeRead(uid=gone, present=False)]
            return []
        self._misses = 0
        uid5, uid = self._identify()
        if uid is None:
            return []
        if uid == self._present:
            self._halt()
            return []
        secret_ok = self._check_secret(uid, uid5) if self.secure else None
        self._halt()
        previous, self._present = self._present, uid
        reads = [BadgeRead(uid=previous, present=False)] if previous else []
        return [*reads, BadgeRead(uid=uid, present=True, secret_ok=secret_ok)]

    def card_in_field(self) -> bool:
        """One WUPA with a short timer: about eight SPI transfers, no busy wait."""
        chip = self.chip
        if not self._healthy and chip.Read_MFRC522(VERSION) in KNOWN_VERSIONS:
            self._healthy = True
        chip.Write_MFRC522(T_RELOAD_L, POLL_RELOAD_TICKS)
        chip.Write_MFRC522(COMM_IRQ, 0x7F)  # Set1 = 0: clear every interrupt bit
        chip.Write_MFRC522(FIFO_LEVEL, 0x80)  # flush
        chip.Write_MFRC522(FIFO_DATA, WUPA)
        chip.Write_MFRC522(COMMAND, TRANSCEIVE)
        chip.Write_MFRC522(BIT_FRAMING, 0x87)  # StartSend, 7-bit frame
        time.sleep(POLL_WAIT_S)
        irq = chip.Read_MFRC522(COMM_IRQ)
        chip.Write_MFRC522(COMMAND, IDLE)
        chip.Write_MFRC522(BIT_FRAMING, 0x00)
        chip.Write_MFRC522(T_RELOAD_L, INIT_RELOAD_TICKS)
        if irq == 0 and chip.Read_MFRC522(VERSION) not in KNOWN_VERSIONS:
            self._healthy = False
            raise ReaderError("the MFRC522 stopped answering")
        return bool(irq & RX_IRQ)

    def _identify(self) -> tuple[list[int], str | None]:
        status, uid5 = self.chip.MFRC522_Anticoll()
        if status != self.chip.MI_OK or len(uid5) != 5:
            return [], None
        try:
            uid = uid_from_mfrc522_id(int.from_bytes(bytes(uid5), "big"))
        except ValueError:
            return [], None  # a garbled answer (BCC mismatch): try again next poll
        if self.chip.MFRC522_SelectTag(uid5) == 0:
            return [], None
        return list(uid5), uid

    def _check_secret(self, uid: str, uid5: list[int]) -> bool:
        assert self.site_key is not None
        found = read_secret(self.chip, uid5, self.secure_sector, self.sector_key)
        return found is not None and found == card_secret(uid, self.site_key)

    def _halt(self) -> None:
        """HLTA, so the card answers the next WUPA instead of staying selected."""
        chip = self.chip
        frame = [0x50, 0x00]
        frame += chip.CalulateCRC(frame)
        chip.Write_MFRC522(COMM_IRQ, 0x7F)
        chip.Write_MFRC522(FIFO_LEVEL, 0x80)
        for byte in frame:
            chip.Write_MFRC522(FIFO_DATA, byte)
        chip.Write_MFRC522(COMMAND, TRANSCEIVE)
        chip.Write_MFRC522(BIT_FRAMING, 0x80)
        chip.Write_MFRC522(COMMAND, IDLE)
        chip.Write_MFRC522(BIT_FRAMING, 0x00)
