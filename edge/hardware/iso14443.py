"""ISO/IEC 14443-3 type A framing the reader needs: CRC_A, cascade levels, SAK and HLTA.

Pure functions over bytes, so the MFRC522 reader computes its frames without the chip's CRC
coprocessor (one SPI round trip fewer per frame, and no coprocessor left running to swallow
the next frame's bytes).
"""

from __future__ import annotations

REQA, WUPA = 0x26, 0x52
SEL_CODES = (0x93, 0x95, 0x97)  # cascade levels 1, 2 and 3
NVB_ANTICOLLISION, NVB_SELECT = 0x20, 0x70
CASCADE_TAG = 0x88
SAK_UID_NOT_COMPLETE = 0x04


def crc_a(data: bytes | list[int]) -> tuple[int, int]:
    """CRC_A (x^16 + x^12 + x^5 + 1, preset 0x6363), as (low byte, high byte)."""
    crc = 0x6363
    for byte in data:
        byte ^= crc & 0xFF
        byte ^= (byte << 4) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    return crc & 0xFF, (crc >> 8) & 0xFF


def with_crc(frame: list[int]) -> list[int]:
    return [*frame, *crc_a(frame)]


def crc_ok(frame: list[int]) -> bool:
    return len(frame) >= 3 and list(crc_a(frame[:-2])) == frame[-2:]


HLTA = with_crc([0x50, 0x00])


def anticollision(level: int) -> list[int]:
    """The anticollision frame of cascade level 1..3 (no UID bits known yet)."""
    return [SEL_CODES[level - 1], NVB_ANTICOLLISION]


def select(level: int, uid_cln: list[int]) -> list[int]:
    """SELECT at a cascade level: the four bytes and BCC the anticollision returned."""
    return with_crc([SEL_CODES[level - 1], NVB_SELECT, *uid_cln])


def bcc_ok(uid_cln: list[int]) -> bool:
    return len(uid_cln) == 5 and uid_cln[0] ^ uid_cln[1] ^ uid_cln[2] ^ uid_cln[3] == uid_cln[4]


def uid_part(uid_cln: list[int], sak: int) -> list[int]:
    """The UID bytes a cascade level gave: without the cascade tag when more levels follow."""
    if sak & SAK_UID_NOT_COMPLETE:
        if uid_cln[0] != CASCADE_TAG:
            raise ValueError("the SAK says more UID follows but the cascade tag is missing")
        return uid_cln[1:4]
    return uid_cln[:4]
