"""Secure mode on MIFARE Classic: check a card's diversified keys and secret, or write them.

A card passes only when its secret sector opens with the key derived for its UID and holds the
secret derived for it (protocol.card_keys). Which way a card fails is told apart, so the hub
and the member see why: another site's tag (`card_other_site`), a sector still on the factory
key, empty (`card_blank`) or holding data (`card_factory_key`), a sector that opens with no key
we know (`card_uid_clone`: a UID-writable card made to look like one of ours), or the right
key with the wrong secret (`card_secret_mismatch`).

The functions take the mfrc522 package's object (its Auth/Read/Write/StopCrypto1) and a
`reselect` callback: a failed authentication sends the card out of ACTIVE, and the reader
must wake and select it again before the next try.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocol.card_keys import (
    FACTORY_KEY,
    PUBLIC_TAG_KEY,
    SECTOR_ACCESS,
    TAG_MAGIC,
    card_keys,
    site_tag,
)
from protocol.vocab import DenyReason

# Called after a failed authentication: wakes and selects the card again; its auth UID
# (the last cascade level's 4 bytes), or None when the card has gone.
Reselect = Callable[[], list[int] | None]


class CardEnrolError(Exception):
    """The card on the reader cannot be made a secure card of this site; `reason` says why."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def _block(sector: int, index: int = 0) -> int:
    return sector * 4 + index


def _read(chip: Any, auth_uid: list[int], sector: int, key: bytes, key_b: bool = False) -> Any:
    """Authenticate to a sector and read its block 0: the 16 bytes, or None."""
    mode = chip.PICC_AUTHENT1B if key_b else chip.PICC_AUTHENT1A
    if chip.MFRC522_Auth(mode, _block(sector, 3), list(key), auth_uid) != chip.MI_OK:
        return None
    data = chip.MFRC522_Read(_block(sector))
    return bytes(data) if data else b""


def check_card(
    chip: Any,
    reselect: Reselect,
    *,
    uid_hex: str,
    auth_uid: list[int],
    site_secret: bytes,
    sector: int,
    tag_sector: int,
) -> DenyReason | None:
    """None for a genuine card of this site (left authenticated: the caller halts it, then
    stops Crypto1), else the reason to refuse it. The card is selected on entry."""
    keys = card_keys(site_secret, uid_hex)
    secret = _read(chip, auth_uid, sector, keys.key_a)
    if secret is not None:
        return None if secret == keys.secret else DenyReason.CARD_SECRET_MISMATCH
    tag = _after_reselect(chip, reselect, lambda uid: _read(chip, uid, tag_sector, PUBLIC_TAG_KEY))
    if tag and tag.startswith(TAG_MAGIC) and tag != site_tag(site_secret):
        return DenyReason.CARD_OTHER_SITE
    factory = _after_reselect(chip, reselect, lambda uid: _read(chip, uid, sector, FACTORY_KEY))
    if factory is None:
        return DenyReason.CARD_UID_CLONE
    if not any(factory) and not tag:
        return DenyReason.CARD_BLANK
    return DenyReason.CARD_FACTORY_KEY


def _after_reselect(chip: Any, reselect: Reselect, attempt: Callable[[list[int]], Any]) -> Any:
    chip.MFRC522_StopCrypto1()
    auth_uid = reselect()
    return None if auth_uid is None else attempt(auth_uid)


def _write(chip: Any, block: int, data: bytes) -> None:
    chip.MFRC522_Write(block, list(data))


def enrol_card(
    chip: Any,
    reselect: Reselect,
    *,
    uid_hex: str,
    auth_uid: list[int],
    site_secret: bytes,
    sector: int,
    tag_sector: int,
    transport_key: bytes = FACTORY_KEY,
) -> str:
    """Make the card on the reader a secure card of this site: "written", or "already" when
    it was one. Raises CardEnrolError when the card cannot be (another site's, unknown keys)."""
    refusal = check_card(
        chip,
        reselect,
        uid_hex=uid_hex,
        auth_uid=auth_uid,
        site_secret=site_secret,
        sector=sector,
        tag_sector=tag_sector,
    )
    if refusal is None:
        return "already"
    if refusal is DenyReason.CARD_OTHER_SITE:
        raise CardEnrolError(
            refusal.value,
            f"card {uid_hex} belongs to another site (its tag sector {tag_sector} says so): "
            "use a blank card, or have that site release it",
        )
    keys = card_keys(site_secret, uid_hex)
    trailer = keys.key_a + SECTOR_ACCESS + keys.key_b
    uid = _reauth(chip, reselect, sector, transport_key)
    if uid is None:
        raise CardEnrolError(
            DenyReason.CARD_UID_CLONE.value,
            f"card {uid_hex}: sector {sector} does not open with the transport key "
            f"{transport_key.hex().upper()}, so it was set up elsewhere: use a blank card",
        )
    _write(chip, _block(sector), keys.secret)
    _write(chip, _block(sector, 3), trailer)
    # The tag sector: blank (transport key), or ours from an enrolment cut short (key B).
    uid = _reauth(chip, reselect, tag_sector, transport_key)
    if uid is None:
        uid = _reauth(chip, reselect, tag_sector, keys.key_b, key_b=True)
    if uid is None:
        raise CardEnrolError(
            DenyReason.CARD_UID_CLONE.value,
            f"card {uid_hex}: sector {tag_sector} does not open with the transport key: "
            "use a blank card",
        )
    _write(chip, _block(tag_sector), site_tag(site_secret))
    _write(chip, _block(tag_sector, 3), PUBLIC_TAG_KEY + SECTOR_ACCESS + keys.key_b)
    chip.MFRC522_StopCrypto1()
    uid = reselect()
    check = (
        check_card(
            chip,
            reselect,
            uid_hex=uid_hex,
            auth_uid=uid,
            site_secret=site_secret,
            sector=sector,
            tag_sector=tag_sector,
        )
        if uid is not None
        else DenyReason.UNKNOWN_BADGE
    )
    if check is not None:
        raise CardEnrolError(
            check.value,
            f"card {uid_hex}: the keys did not read back ({check.value}); keep the card "
            "still on the reader and try again",
        )
    return "written"


def _reauth(
    chip: Any, reselect: Reselect, sector: int, key: bytes, key_b: bool = False
) -> list[int] | None:
    chip.MFRC522_StopCrypto1()
    uid = reselect()
    if uid is None:
        return None
    mode = chip.PICC_AUTHENT1B if key_b else chip.PICC_AUTHENT1A
    if chip.MFRC522_Auth(mode, _block(sector, 3), list(key), uid) != chip.MI_OK:
        return None
    return uid
