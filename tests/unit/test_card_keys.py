"""The secure cards' key derivation and access bits, against independent references."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.card_keys import (
    SALT,
    SECTOR_ACCESS,
    CardKeyError,
    access_bytes,
    card_keys,
    hkdf_sha256,
    site_tag,
)
from tests.support.mfrc522_chip import DEFAULT_ACCESS, access_conditions

secrets = st.binary(min_size=16, max_size=4096)
uids = st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@settings(max_examples=60, deadline=None)
@given(secret=st.binary(max_size=4096), info=st.binary(max_size=300), length=st.integers(1, 255))
def test_hkdf_matches_the_cryptography_package(secret: bytes, info: bytes, length: int) -> None:
    reference = HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=info)
    assert hkdf_sha256(secret, info, length) == reference.derive(secret)


@settings(max_examples=40, deadline=None)
@given(secret=secrets, first=uids, second=uids)
def test_each_card_and_each_site_gets_its_own_keys(
    secret: bytes, first: bytes, second: bytes
) -> None:
    a, b = card_keys(secret, first.hex()), card_keys(secret, second.hex())
    assert (len(a.key_a), len(a.key_b), len(a.secret)) == (6, 6, 16)
    assert a.key_a != a.key_b
    assert (a == b) == (first == second)
    other_site = card_keys(secret + b"\x00", first.hex())
    assert other_site.key_a != a.key_a and site_tag(secret) != site_tag(secret + b"\x00")


@given(secret=st.binary(max_size=15))
@settings(max_examples=20)
def test_a_short_site_secret_is_refused_with_the_fix(secret: bytes) -> None:
    with pytest.raises(CardKeyError, match="at least 16 random bytes"):
        card_keys(secret, "04A1B2C3")


bits = st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 1))


@settings(max_examples=60)
@given(conditions=st.lists(bits, min_size=4, max_size=4))
def test_access_bytes_decode_back_to_their_conditions(
    conditions: list[tuple[int, int, int]],
) -> None:
    encoded = access_bytes(conditions)
    assert access_conditions(encoded) == conditions
    # Each inverted copy is the bitwise complement the card checks.
    assert encoded[0] & 0x0F == ~(encoded[1] >> 4) & 0x0F
    assert encoded[0] >> 4 == ~encoded[2] & 0x0F
    assert encoded[1] & 0x0F == ~(encoded[2] >> 4) & 0x0F


def test_the_transport_and_secure_access_bytes() -> None:
    assert access_bytes([(0, 0, 0)] * 3 + [(0, 0, 1)]) == DEFAULT_ACCESS  # FF 07 80 69
    assert bytes.fromhex("78778869") == SECTOR_ACCESS  # the usual "key B writes" set-up
