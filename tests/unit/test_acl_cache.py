"""The allow-list cache: which offered list is taken, and what a restart trusts on disk."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.acl_cache import AllowListCache, Refusal
from protocol import lite
from protocol.allowlist import (
    AllowEntry,
    AllowList,
    load_public_key,
    public_key_b64,
    sign_allowlist,
)

HUB = Ed25519PrivateKey.generate()
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
versions = st.integers(min_value=1, max_value=2**53)


def signed(version: int, machine: str = "laser-1", key: Ed25519PrivateKey = HUB) -> bytes:
    return sign_allowlist(
        AllowList(
            site="lab",
            machine=machine,
            machine_type="laser",
            version=version,
            issued_at=NOW,
            expires_at=NOW + timedelta(days=1),
            entries=[AllowEntry(badge="04A1B2C3", member="m-1")],
        ),
        key,
    )


def cache(tmp_path: Path) -> AllowListCache:
    public = load_public_key(public_key_b64(HUB.public_key()))
    return AllowListCache(tmp_path / "allowlist.json", public, "laser-1")


@settings(max_examples=30, deadline=None)
@given(current=versions, offered=versions)
def test_only_a_newer_list_is_taken_and_the_same_one_again_is_no_news(
    current: int, offered: int
) -> None:
    acl = cache(Path("/nonexistent"))  # offers never touch the file
    in_force = acl.offer(signed(current), now=NOW, current=None)
    assert isinstance(in_force, lite.AllowList)  # the agent's side of the contract
    result = acl.offer(signed(offered), now=NOW, current=in_force)
    if offered > current:
        assert isinstance(result, lite.AllowList) and result.version == offered
    elif offered == current:
        assert result is None  # retained, delivered again on each reconnect
    else:
        assert isinstance(result, Refusal) and (result.reason, result.offered) == ("stale", offered)


def test_a_list_for_another_machine_or_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    acl = cache(tmp_path)
    other = acl.offer(signed(2, machine="laser-2"), now=NOW, current=None)
    assert isinstance(other, Refusal) and (other.reason, other.offered) == ("wrong_machine", 2)
    forged = acl.offer(signed(3, key=Ed25519PrivateKey.generate()), now=NOW, current=None)
    assert isinstance(forged, Refusal) and forged.reason == "bad_signature"
    expired = acl.offer(signed(4), now=NOW + timedelta(days=2), current=None)
    assert isinstance(expired, Refusal) and (expired.reason, expired.offered) == ("expired", 4)


@settings(max_examples=20, deadline=None)
@given(garbage=st.binary(max_size=512))
def test_a_restart_trusts_only_a_signed_file(garbage: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        acl = cache(Path(tmp))
        assert acl.load() is None  # nothing kept yet
        acl.path.write_bytes(garbage)
        assert acl.load() is None  # damaged or forged: ignored, said in the log
        acl.save(signed(7))
        kept = acl.load()
        assert kept is not None and kept.version == 7  # an expired one too: checked per decision
        assert not acl.path.with_suffix(".tmp").exists()
