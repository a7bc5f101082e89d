"""Secure cards: each card's MIFARE Classic keys and secret, diversified from the site secret.

HKDF-SHA256 (RFC 5869) over the site secret, with the card UID in the `info`: one card's keys
tell nothing about another's, and only who holds the site secret can derive them. Written
with the standard library's hmac so the agent stays light; tests/unit/test_card_keys.py checks
it against the `cryptography` package's HKDF.

Layout on the card (two sectors, `secure_sector` and `tag_sector`):
- the secret sector: block 0 holds the card's 16-byte secret; key A and key B are the card's
  own; the access bits let only those keys read its blocks and only key B write them;
- the tag sector: block 0 holds the site tag ("ATELIER1" and 8 bytes derived from the site
  secret, the same on every card of a site), readable with NXP's public MAD key A0A1A2A3A4A5
  so a reader tells another site's card from a forged one; only the card's key B writes it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

SALT = b"atelier/mifare-classic/v1"
FACTORY_KEY = bytes.fromhex("FFFFFFFFFFFF")
PUBLIC_TAG_KEY = bytes.fromhex("A0A1A2A3A4A5")
TAG_MAGIC = b"ATELIER1"
MIN_SITE_SECRET = 16


class CardKeyError(ValueError):
    """A site secret that cannot protect cards; the message says what to do."""


def hkdf_sha256(secret: bytes, info: bytes, length: int, salt: bytes = SALT) -> bytes:
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def check_site_secret(secret: bytes) -> bytes:
    if len(secret) < MIN_SITE_SECRET:
        raise CardKeyError(
            f"the site secret has {len(secret)} bytes; give at least {MIN_SITE_SECRET} "
            "random bytes (e.g. `head -c 32 /dev/urandom | base64 > site-secret`)"
        )
    return secret


@dataclass(frozen=True, slots=True)
class CardKeys:
    key_a: bytes  # reads the secret sector
    key_b: bytes  # writes both sectors
    secret: bytes  # the secret block's 16 bytes


def card_keys(site_secret: bytes, uid_hex: str) -> CardKeys:
    uid = bytes.fromhex(uid_hex)
    check_site_secret(site_secret)
    return CardKeys(
        key_a=hkdf_sha256(site_secret, b"key-a:" + uid, 6),
        key_b=hkdf_sha256(site_secret, b"key-b:" + uid, 6),
        secret=hkdf_sha256(site_secret, b"secret:" + uid, 16),
    )


def site_tag(site_secret: bytes) -> bytes:
    return TAG_MAGIC + hkdf_sha256(check_site_secret(site_secret), b"site-tag", 8)


def access_bytes(conditions: list[tuple[int, int, int]]) -> bytes:
    """Trailer bytes 6..9 for the (C1, C2, C3) of blocks 0..3, with their inverted copies."""
    c1 = sum(c[0] << i for i, c in enumerate(conditions))
    c2 = sum(c[1] << i for i, c in enumerate(conditions))
    c3 = sum(c[2] << i for i, c in enumerate(conditions))
    byte6 = ((~c2 & 0x0F) << 4) | (~c1 & 0x0F)
    byte7 = (c1 << 4) | (~c3 & 0x0F)
    byte8 = (c3 << 4) | c2
    return bytes([byte6, byte7, byte8, 0x69])


# Data blocks: read with key A or B, written with key B only (100). Trailer: key B writes the
# keys and access bits, key A reads the access bits only, key B is never readable (011).
SECTOR_ACCESS = access_bytes([(1, 0, 0), (1, 0, 0), (1, 0, 0), (0, 1, 1)])
