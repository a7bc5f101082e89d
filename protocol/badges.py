"""Badge ids: the card UID as uppercase hex, whatever the reader reports."""

from __future__ import annotations

import re

_HEX = re.compile(r"^[0-9A-Fa-f]{8,20}$")


def normalise_uid(value: str) -> str:
    """'04:a1:b2:c3' or '04a1b2c3' -> '04A1B2C3'; raises ValueError naming the fix."""
    cleaned = value.strip().replace(":", "").replace("-", "").replace(" ", "")
    if not _HEX.match(cleaned) or len(cleaned) % 2:
        raise ValueError(
            f"badge uid {value!r} is not a card UID: give 4, 7 or 10 bytes as hex, e.g. 04A1B2C3"
        )
    return cleaned.upper()


def uid_from_mfrc522_id(card_id: int) -> str:
    """The mfrc522 package's integer id is the 4 UID bytes followed by the BCC byte."""
    raw = card_id.to_bytes(5, "big")
    uid, bcc = raw[:4], raw[4]
    if uid[0] ^ uid[1] ^ uid[2] ^ uid[3] != bcc:
        raise ValueError(f"card id {card_id} has a BCC byte that does not match its UID")
    return uid.hex().upper()
