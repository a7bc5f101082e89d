"""Secure mode: a per-card secret (HMAC of the UID with the site key) kept in a MIFARE sector.

A cloned UID alone does not open a machine: the agent also reads the secret block, which only
the hub could write at enrolment, and compares it with what the site key says it must be.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

SECRET_LEN = 16


def card_secret(uid_hex: str, site_key: bytes) -> bytes:
    """The 16 bytes written into the card's secret block at enrolment."""
    return hmac.new(site_key, bytes.fromhex(uid_hex), hashlib.sha256).digest()[:SECRET_LEN]


def secret_block(sector: int) -> int:
    """The first data block of the sector (block 0 of sector 0 is the manufacturer's)."""
    return sector * 4 if sector else 1


def _select(chip: Any) -> list[int] | None:
    status, _ = chip.MFRC522_Request(chip.PICC_REQIDL)
    if status != chip.MI_OK:
        status, _ = chip.MFRC522_Request(chip.PICC_REQALL)
    if status != chip.MI_OK:
        return None
    status, uid = chip.MFRC522_Anticoll()
    if status != chip.MI_OK or chip.MFRC522_SelectTag(uid) == 0:
        return None
    return list(uid)


def read_secret(chip: Any, uid5: list[int], sector: int, key: bytes) -> bytes | None:
    """Read the secret block of a selected card with the mfrc522 package's own calls."""
    block = secret_block(sector)
    trailer = sector * 4 + 3
    try:
        if chip.MFRC522_Auth(chip.PICC_AUTHENT1A, trailer, list(key), uid5) != chip.MI_OK:
            return None
        data = chip.MFRC522_Read(block)
    finally:
        chip.MFRC522_StopCrypto1()
    return bytes(data) if data else None


def write_secret(chip: Any, uid_hex: str, site_key: bytes, sector: int, key: bytes) -> bool:
    """Enrolment: write the card's secret on the card now on the reader. True when done."""
    uid5 = _select(chip)
    if uid5 is None or bytes(uid5[:4]).hex().upper() != uid_hex:
        return False
    trailer = sector * 4 + 3
    try:
        if chip.MFRC522_Auth(chip.PICC_AUTHENT1A, trailer, list(key), uid5) != chip.MI_OK:
            return False
        chip.MFRC522_Write(secret_block(sector), list(card_secret(uid_hex, site_key)))
        written = chip.MFRC522_Read(secret_block(sector))
    finally:
        chip.MFRC522_StopCrypto1()
    return written is not None and bytes(written) == card_secret(uid_hex, site_key)
