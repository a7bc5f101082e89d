"""MFRC522 badge reader over SPI, using the mfrc522 package's own code (imported lazily).

The package's `read()` spins forever and even its `read_id_no_block()` busy-reads the IRQ
register up to 2,000 times when no card answers, because its wait loop never honours the
timer interrupt. An empty poll here instead sends one WUPA with a short chip timer, sleeps
past the timeout and reads the IRQ register once: eight SPI transfers per poll.

A card that answers is identified through every cascade level its SAK asks for (4-, 7- and
10-byte UIDs), checked in secure mode, and halted (HLTA) so it stays quiet until the next
poll's WUPA wakes it. The frames carry a CRC_A computed here (edge.hardware.iso14443), not by
the chip's coprocessor, and a frame is always fully sent before Idle is written: both were
why the HLTA never reached the card before.

A poll "works" only when the chip either received an answer or its timer expired: a chip
that lost its configuration (unplugged and plugged back, a brown-out, a reset) does neither,
and is then initialised again in full before the reader reports healthy. Health changes are
logged once each, never a traceback per poll.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from edge.hardware import iso14443
from edge.hardware.readers import BadgeRead, OnBadge, ReaderError
from edge.hardware.secure_card import CardEnrolError, check_card, enrol_card
from protocol.card_keys import CardKeyError, check_site_secret

log = logging.getLogger(__name__)

# Registers and bits (datasheet section 9).
COMMAND, COMM_IRQ, FIFO_DATA, FIFO_LEVEL, BIT_FRAMING = 0x01, 0x04, 0x09, 0x0A, 0x0D
T_RELOAD_H, T_RELOAD_L, VERSION = 0x2C, 0x2D, 0x37
IDLE, TRANSCEIVE = 0x00, 0x0C
TX_IRQ, RX_IRQ, TIMER_IRQ = 0x40, 0x20, 0x01
START_SEND = 0x80

# VersionReg values seen on modules sold as "RC522": NXP's own, and the clones that work.
CHIPS = {
    0x91: "NXP MFRC522 v1.0",
    0x92: "NXP MFRC522 v2.0",
    0x90: "MFRC522 v0.0 (an early or cloned chip)",
    0x88: "Fudan FM17522 (an MFRC522 clone)",
    0x89: "Fudan FM17522E (an MFRC522 clone)",
    0xB2: "FM17522 variant (an MFRC522 clone)",
    0x12: "counterfeit MFRC522 (common on cheap modules)",
}
GENUINE = {0x91, 0x92}
KNOWN_VERSIONS = set(CHIPS)

# With the package's timer set-up (TPrescaler 0xD3E: 2 kHz) one reload tick is 0.5 ms; the
# timer starts when a frame has been sent and bounds the wait for the start of an answer
# (a card starts within 0.1 ms). Reload 1 is 1 ms; the empty poll sleeps past it.
POLL_RELOAD_TICKS = 1
POLL_WAIT_S = 0.0015
# 106 kbit/s: 128 carrier cycles per bit, 9 bits per byte on the air; FDT about 86 us.
BIT_S = 128 / 13.56e6
FDT_S = 1172 / 13.56e6
MAX_WAITS = 6


def _air_time(sent: int, answer: int) -> float:
    """Time for a frame of `sent` bytes and an answer of `answer` bytes, with a margin."""
    return (sent * 9 + answer * 9 + 4) * BIT_S + FDT_S + 0.0002


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
        tag_sector: int = 2,
        site_key: bytes | None = None,
        transport_key: bytes = b"\xff" * 6,
    ) -> None:
        if secure:
            if not site_key:
                raise ReaderError("secure mode needs the site secret (reader.site_key_file)")
            try:
                check_site_secret(site_key)
            except CardKeyError as exc:
                raise ReaderError(f"reader.site_key_file: {exc}") from None
        self.bus, self.device, self.rst_pin = bus, device, rst_pin
        self.poll_interval_s = poll_interval_s
        self.misses_before_removed = max(1, misses_before_removed)
        self.secure, self.secure_sector, self.tag_sector = secure, secure_sector, tag_sector
        self.site_key, self.transport_key = site_key, transport_key
        self.chip: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Whether the last poll completed; None until the first, so that first outcome is
        # logged too (a reader dead from the start says so once).
        self._healthy: bool | None = None
        self._health_note = "not polled yet"
        self._configured = False
        self._present: str | None = None
        self._auth_uid: list[int] = []
        self._misses = 0
        self._enrol_until = 0.0
        self._checking: str | None = None  # the UID a secure check is about
        self.enrol_error: str | None = None  # why the last enrolment refused its card

    @classmethod
    def from_config(cls, config: Any) -> MFRC522Reader:
        reader = config.reader
        site_key = None
        if reader.site_key_file:
            try:
                site_key = Path(reader.site_key_file).read_bytes().strip()
            except OSError as exc:
                raise ReaderError(
                    f"reader.site_key_file: cannot read {reader.site_key_file} ({exc.strerror})"
                ) from None
        return cls(
            bus=reader.bus,
            device=reader.device,
            rst_pin=reader.rst_pin,
            poll_interval_s=reader.poll_interval_s,
            secure=reader.secure,
            secure_sector=reader.secure_sector,
            tag_sector=reader.tag_sector,
            site_key=site_key,
            transport_key=bytes.fromhex(reader.sector_key),
        )

    def start_enrolment(self, window_s: float) -> None:
        """In secure mode, the next new card within the window gets this site's keys."""
        self._enrol_until = time.monotonic() + window_s

    @property
    def healthy(self) -> bool:
        return bool(self._healthy)

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
        # The package adds a stderr handler per instance and logs every failed authentication
        # as an error; secure mode fails some on purpose (to tell a clone from a blank card)
        # and reports its own outcome.
        package_log = self.chip.logger
        for handler in list(package_log.handlers):
            package_log.removeHandler(handler)
        package_log.setLevel(logging.CRITICAL)
        version = self.chip.Read_MFRC522(VERSION)
        if version not in KNOWN_VERSIONS:
            raise ReaderError(
                f"no MFRC522 answers on SPI {self.bus}.{self.device} "
                f"(VersionReg 0x{version:02X}); check the wiring and the 3.3 V supply"
            )
        if version in GENUINE:
            log.info("reader chip: %s (VersionReg 0x%02X)", CHIPS[version], version)
        else:
            log.warning(
                "reader chip: %s (VersionReg 0x%02X); it works like an MFRC522, but its range "
                "is often shorter",
                CHIPS[version],
                version,
            )
        self._configure()

    def _configure(self) -> None:
        """The package's full initialisation (soft reset, timer, CRC preset, antenna on),
        then the short reload the polls use."""
        self.chip.MFRC522_Init()
        self.chip.Write_MFRC522(T_RELOAD_H, 0)
        self.chip.Write_MFRC522(T_RELOAD_L, POLL_RELOAD_TICKS)
        self._configured = True

    def _set_health(self, healthy: bool, note: str) -> None:
        """One log line per change of health, whatever the number of polls in between."""
        if healthy != self._healthy:
            if healthy:
                log.info("reader on SPI %d.%d works: %s", self.bus, self.device, note)
            else:
                log.warning("reader on SPI %d.%d is down: %s", self.bus, self.device, note)
        self._healthy, self._health_note = healthy, note

    def _reinitialise(self) -> bool:
        """After an unplug, a brown-out or a reset: initialise again in full if it answers."""
        self._configured = False
        version = self.chip.Read_MFRC522(VERSION)
        if version not in KNOWN_VERSIONS:
            self._set_health(False, f"the MFRC522 stopped answering (VersionReg 0x{version:02X})")
            return False
        self._configure()
        if self._healthy:  # while down, only the way back up is logged
            log.info("reader on SPI %d.%d initialised again", self.bus, self.device)
        return True

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
                reads = self.poll_once()
            except Exception as exc:  # the SPI device itself failing (an OSError, mostly)
                log.debug("reader poll failed", exc_info=True)
                self._configured = False  # whatever state the chip is in, start again
                self._set_health(False, f"the poll failed: {exc}")
                continue
            for read in reads:
                on_badge(read)

    # -- one poll --------------------------------------------------------------------------
    def poll_once(self) -> list[BadgeRead]:
        """Look for a card once; report a new card, or the previous one leaving."""
        if not self._configured and not self._reinitialise():
            return []
        irq = self._wupa()
        if not irq & (RX_IRQ | TIMER_IRQ):
            # Neither an answer nor the timer: the chip lost its set-up (or is gone).
            if not self._reinitialise():
                return []
            irq = self._wupa()
            if not irq & (RX_IRQ | TIMER_IRQ):
                self._configured = False  # initialised again on the next poll
                self._set_health(False, "the MFRC522 answers but its polls do not complete")
                return []
        self._set_health(True, "its polls complete")
        if not irq & RX_IRQ:
            return self._missed()
        identity = self._identify(known=self._present)
        if identity is None:
            return self._missed()  # a garbled or interrupted answer: as if nobody answered
        uid, _sak = identity
        self._misses = 0
        if uid == self._present:
            self._halt()
            return []
        read = self._secure_read(uid) if self.secure else BadgeRead(uid=uid, present=True)
        # Halted while still authenticated (Crypto1 on): a card that authenticated
        # understands only encrypted frames, the HLTA included.
        self._halt()
        if self.secure:
            self.chip.MFRC522_StopCrypto1()
        previous, self._present = self._present, uid
        reads = [BadgeRead(uid=previous, present=False)] if previous else []
        return [*reads, read]

    def _secure_read(self, uid: str) -> BadgeRead:
        assert self.site_key is not None
        self._checking = uid
        where: dict[str, Any] = {
            "uid_hex": uid,
            "auth_uid": self._auth_uid,
            "site_secret": self.site_key,
            "sector": self.secure_sector,
            "tag_sector": self.tag_sector,
        }
        if time.monotonic() < self._enrol_until:
            self._enrol_until = 0.0  # one card per enrolment
            try:
                done = enrol_card(
                    self.chip, self._reselect, transport_key=self.transport_key, **where
                )
            except CardEnrolError as exc:
                self.enrol_error = str(exc)
                log.warning("enrolment refused: %s", exc)
                return BadgeRead(uid, True, secret_ok=False, refusal=exc.reason, card="refused")
            log.info("card %s enrolled as a secure card of this site (%s)", uid, done)
            return BadgeRead(uid, True, secret_ok=True, card=done)
        refusal = check_card(self.chip, self._reselect, **where)
        if refusal is None:
            return BadgeRead(uid, True, secret_ok=True)
        return BadgeRead(uid, True, secret_ok=False, refusal=refusal.value)

    def _reselect(self) -> list[int] | None:
        """Wake and select the card again (after a failed authentication): its auth UID, or
        None when it has gone or another card answers (swapped in the middle of a check)."""
        for _ in range(2):
            if self._wupa() & RX_IRQ:
                identity = self._identify()
                if identity is not None:
                    return list(self._auth_uid) if identity[0] == self._checking else None
        return None

    def _missed(self) -> list[BadgeRead]:
        if self._present is not None:
            self._misses += 1
            if self._misses >= self.misses_before_removed:
                gone, self._present, self._misses = self._present, None, 0
                return [BadgeRead(uid=gone, present=False)]
        return []

    def card_in_field(self) -> bool:
        """One WUPA: whether a card answered."""
        return bool(self._wupa() & RX_IRQ)

    def _wupa(self) -> int:
        """Send WUPA (wakes idle and halted cards); the IRQ bits once the timer is past."""
        return self._send([iso14443.WUPA], last_bits=7, wait_s=POLL_WAIT_S)

    def _send(
        self,
        frame: list[int],
        *,
        last_bits: int = 0,
        wait_s: float,
        until: int = RX_IRQ | TIMER_IRQ,
    ) -> int:
        """Send a frame and wait for its answer or the timer; returns CommIrqReg.

        Idle first, so no command still running (CalcCRC above all) takes the bytes meant
        for the FIFO; the frame goes in with one burst write."""
        chip = self.chip
        chip.Write_MFRC522(COMMAND, IDLE)
        chip.Write_MFRC522(COMM_IRQ, 0x7F)  # Set1 = 0: clear every interrupt bit
        chip.Write_MFRC522(FIFO_LEVEL, 0x80)  # flush
        chip.spi.xfer2([(FIFO_DATA << 1) & 0x7E, *frame])
        chip.Write_MFRC522(COMMAND, TRANSCEIVE)
        chip.Write_MFRC522(BIT_FRAMING, START_SEND | last_bits)
        irq = 0
        for _ in range(MAX_WAITS):
            time.sleep(wait_s)
            irq = int(chip.Read_MFRC522(COMM_IRQ))
            if irq & until or irq == 0:
                break
            wait_s = POLL_WAIT_S / 3
        chip.Write_MFRC522(BIT_FRAMING, 0x00)
        return irq

    def _transceive(self, frame: list[int], answer_len: int) -> list[int] | None:
        """Send a whole-byte frame; the answer's bytes, or None when nobody answered."""
        irq = self._send(frame, wait_s=_air_time(len(frame), answer_len))
        if not irq & RX_IRQ:
            return None
        level = int(self.chip.Read_MFRC522(FIFO_LEVEL))
        if level == 0:
            return []
        address = ((FIFO_DATA << 1) & 0x7E) | 0x80
        return list(self.chip.spi.xfer2([address] * level + [0])[1:])

    def _identify(self, known: str | None = None) -> tuple[str, int] | None:
        """Anticollision and SELECT at each cascade level the SAK asks for: (UID hex, SAK).

        The card still on the reader (`known`) is recognised by its last anticollision answer
        and not selected: woken from HALT (READY*), the HLTA that follows is a frame it does
        not expect there, which sends it straight back to HALT (ISO 14443-3, 6.3)."""
        uid: list[int] = []
        for level in (1, 2, 3):
            uid_cln = self._transceive(iso14443.anticollision(level), 5)
            if uid_cln is None or not iso14443.bcc_ok(uid_cln):
                return None  # a collision or a garbled answer: try again next poll
            if known is not None and bytes(uid + uid_cln[:4]).hex().upper() == known:
                return known, -1
            answer = self._transceive(iso14443.select(level, uid_cln), 3)
            if answer is None or len(answer) != 3 or not iso14443.crc_ok(answer):
                return None
            sak = answer[0]
            try:
                uid += iso14443.uid_part(uid_cln, sak)
            except ValueError:
                return None
            if not sak & iso14443.SAK_UID_NOT_COMPLETE:
                # MIFARE authentication takes the last cascade level's four bytes.
                self._auth_uid = uid_cln[:4]
                return bytes(uid).hex().upper(), sak
        return None

    def _halt(self) -> None:
        """HLTA, so the card stays quiet until the next poll's WUPA.

        Sent whole before Idle is written: the wait ends on TxIRq, once the frame is out."""
        self._send(iso14443.HLTA, wait_s=_air_time(len(iso14443.HLTA), 0), until=TX_IRQ)
