"""Secure cards over the chip model: diversified keys written at enrolment, a genuine card
granted, and each kind of copy or stranger refused with its own reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.hardware.readers import BadgeRead
from protocol.card_keys import FACTORY_KEY, PUBLIC_TAG_KEY, SECTOR_ACCESS, card_keys, site_tag
from tests.support.fake_rpi import FakeSpiBus, install_fake_spi
from tests.support.mfrc522_chip import MifareClassic1K

UID = bytes.fromhex("04A1B2C3")
UID7 = bytes.fromhex("04A1B2C3D4E5F6")
SITE = b"fablab-site-secret-0123456789abcdef"
OTHER_SITE = b"another-lab-secret-0123456789abcdef"


@pytest.fixture
def spi(monkeypatch: pytest.MonkeyPatch) -> FakeSpiBus:
    return install_fake_spi(monkeypatch)


def secure_reader(spi: FakeSpiBus, secret: bytes = SITE):  # type: ignore[no-untyped-def]
    from edge.hardware.mfrc522_reader import MFRC522Reader

    reader = MFRC522Reader(secure=True, secure_sector=1, tag_sector=2, site_key=secret)
    reader.open()
    return reader


def show(reader, spi: FakeSpiBus, card: MifareClassic1K) -> BadgeRead:  # type: ignore[no-untyped-def]
    """Place the card, take the read, then take it off and let the reader see it go."""
    chip = spi.chip()
    chip.place(card)
    reads = [r for r in reader.poll_once() if r.present]
    chip.remove()
    reader.poll_once(), reader.poll_once()
    assert len(reads) == 1
    return reads[0]


def enrolled(reader, spi: FakeSpiBus, uid: bytes = UID) -> MifareClassic1K:  # type: ignore[no-untyped-def]
    card = MifareClassic1K(uid=uid)
    reader.start_enrolment(10)
    read = show(reader, spi, card)
    assert read.card == "written" and read.secret_ok is True
    return card


@pytest.mark.parametrize("uid", [UID, UID7], ids=["4-byte", "7-byte"])
def test_an_enrolled_card_is_granted_and_its_secret_needs_its_own_key(spi, uid: bytes) -> None:
    reader = secure_reader(spi)
    card = enrolled(reader, spi, uid)
    keys = card_keys(SITE, uid.hex().upper())
    assert bytes(card.blocks[4]) == keys.secret
    assert bytes(card.blocks[7]) == keys.key_a + SECTOR_ACCESS + keys.key_b
    assert bytes(card.blocks[8]) == site_tag(SITE)
    spi.chip().place(card)
    assert reader.poll_once() == [BadgeRead(uid=uid.hex().upper(), present=True, secret_ok=True)]
    assert card.state == "HALT"  # halted while authenticated: the encrypted HLTA reached it

    # Nothing but the card's own keys reads the secret: not the factory key, not the public
    # tag key, not another card's keys.
    from mfrc522 import MFRC522

    package = MFRC522(pin_mode=11, pin_rst=25)
    chip = spi.chip()
    other = card_keys(SITE, "11223344")
    for key in (FACTORY_KEY, PUBLIC_TAG_KEY, other.key_a, other.key_b):
        chip.place(card)
        card.state = "ACTIVE"  # selected, as after SELECT
        assert package.MFRC522_Auth(package.PICC_AUTHENT1A, 7, list(key), list(uid[-4:])) != 0
    chip.place(card)
    card.state = "ACTIVE"
    assert package.MFRC522_Auth(package.PICC_AUTHENT1A, 7, list(keys.key_a), list(uid[-4:])) == 0
    assert bytes(package.MFRC522_Read(4)) == keys.secret
    package.MFRC522_Write(4, [0] * 16)  # key A cannot write it (access bits 100)
    assert bytes(card.blocks[4]) == keys.secret


def test_copies_and_strangers_are_refused_each_with_its_reason(spi: FakeSpiBus) -> None:
    reader = secure_reader(spi)
    genuine = enrolled(reader, spi)
    tag_block = bytes(genuine.blocks[8])  # public: anyone can read it off the genuine card

    # A UID-writable card with the genuine UID and tag, and keys the copier chose.
    uid_clone = MifareClassic1K(uid=UID)
    uid_clone.blocks[8][:] = tag_block
    uid_clone.set_keys(2, key_a=PUBLIC_TAG_KEY)
    uid_clone.set_keys(1, key_a=bytes.fromhex("0123456789AB"), key_b=bytes.fromhex("BA9876543210"))
    uid_clone.blocks[4][:] = bytes(range(16))
    # The same, left on the factory key.
    factory_clone = MifareClassic1K(uid=UID)
    factory_clone.blocks[8][:] = tag_block
    factory_clone.set_keys(2, key_a=PUBLIC_TAG_KEY)
    blank = MifareClassic1K(uid=UID)
    other_reader = secure_reader(spi, OTHER_SITE)
    other_site = enrolled(other_reader, spi)

    reasons = {
        name: show(reader, spi, card)
        for name, card in {
            "uid clone": uid_clone,
            "factory-key clone": factory_clone,
            "blank": blank,
            "other site": other_site,
        }.items()
    }
    assert {name: (r.secret_ok, r.refusal) for name, r in reasons.items()} == {
        "uid clone": (False, "card_uid_clone"),
        "factory-key clone": (False, "card_factory_key"),
        "blank": (False, "card_blank"),
        "other site": (False, "card_other_site"),
    }
    assert show(reader, spi, genuine).secret_ok is True  # the genuine card still opens


def test_enrolment_refuses_another_sites_card_and_keeps_it_intact(spi: FakeSpiBus) -> None:
    other_reader = secure_reader(spi, OTHER_SITE)
    card = enrolled(other_reader, spi)
    before = [bytes(b) for b in card.blocks]
    reader = secure_reader(spi)
    reader.start_enrolment(10)
    read = show(reader, spi, card)
    assert (read.card, read.refusal) == ("refused", "card_other_site")
    assert reader.enrol_error is not None and "another site" in reader.enrol_error
    assert [bytes(b) for b in card.blocks] == before
    assert show(other_reader, spi, card).secret_ok is True  # still a card of its own site
    assert show(reader, spi, card).card is None  # the enrolment window took one card only


def test_the_agent_refuses_with_the_readers_reason(spi: FakeSpiBus) -> None:
    from datetime import UTC, datetime, timedelta

    from edge.domain.access import decide
    from protocol.allowlist import AllowEntry, AllowList
    from protocol.envelope import DenyReason

    now = datetime.now(UTC)
    allowlist = AllowList(
        site="lab",
        machine="laser-1",
        machine_type="laser",
        version=1,
        issued_at=now,
        expires_at=now + timedelta(days=1),
        entries=[AllowEntry(badge="04A1B2C3", member="m-1")],
    )
    for reason in (
        DenyReason.CARD_UID_CLONE,
        DenyReason.CARD_FACTORY_KEY,
        DenyReason.CARD_BLANK,
        DenyReason.CARD_OTHER_SITE,
    ):
        decision = decide("04A1B2C3", allowlist, now, secret_ok=False, card_refusal=reason.value)
        assert not decision.granted and decision.reason is reason
    assert decide("04A1B2C3", allowlist, now, secret_ok=True).granted


def _desk_config(tmp_path: Path, secret: bytes, **reader: object) -> Path:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.allowlist import public_key_b64

    (tmp_path / "site-secret").write_bytes(secret + b"\n")
    options = {"secure": True, "site_key_file": str(tmp_path / "site-secret")} | reader
    rendered = "\n".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in options.items()
    ).replace("'", '"')
    key = public_key_b64(Ed25519PrivateKey.generate().public_key())
    path = tmp_path / "desk.toml"
    path.write_text(
        f'[agent]\nsite = "lab"\nmachine = "desk"\nstate_dir = "{tmp_path}"\n'
        f'hub_public_key = "{key}"\n[gpio]\npin_factory = "mock"\n[relay]\npin = 17\n'
        f'[reader]\ntype = "mfrc522"\npoll_interval_s = 0.02\n{rendered}\n'
    )
    return path


def test_enrol_card_command_writes_a_desk_card_and_says_why_it_refuses(
    spi: FakeSpiBus, tmp_path: Path
) -> None:
    from edge.cli import app

    runner = CliRunner()
    config = _desk_config(tmp_path, SITE)
    card = MifareClassic1K(uid=UID7)
    spi.chip().place(card)
    result = runner.invoke(app, ["enrol-card", "--config", str(config), "--wait", "5"])
    assert result.exit_code == 0, result.output
    assert "04A1B2C3D4E5F6: keys written" in result.stdout
    assert bytes(card.blocks[4]) == card_keys(SITE, "04A1B2C3D4E5F6").secret
    result = runner.invoke(app, ["enrol-card", "--config", str(config), "--wait", "5"])
    assert result.exit_code == 0 and "already a secure card of this site" in result.stdout

    (tmp_path / "other").mkdir()
    other = _desk_config(tmp_path / "other", OTHER_SITE)
    result = runner.invoke(app, ["enrol-card", "--config", str(other), "--wait", "5"])
    assert result.exit_code == 2
    assert "belongs to another site" in result.stderr and "Traceback" not in result.output

    spi.chip().remove()
    result = runner.invoke(app, ["enrol-card", "--config", str(config), "--wait", "1"])
    assert result.exit_code == 2 and "no card was shown within 1 s" in result.stderr


def test_enrol_card_command_needs_a_secure_reader_and_a_real_secret(
    spi: FakeSpiBus, tmp_path: Path
) -> None:
    from edge.cli import app

    runner = CliRunner()
    plain = _desk_config(tmp_path, SITE, secure=False)
    result = runner.invoke(app, ["enrol-card", "--config", str(plain)])
    assert result.exit_code == 2 and "reader.secure = true" in result.stderr
    short = _desk_config(tmp_path, b"short")
    result = runner.invoke(app, ["enrol-card", "--config", str(short)])
    assert result.exit_code == 2
    assert "reader.site_key_file" in result.stderr and "at least 16" in result.stderr


def test_a_card_swapped_during_the_check_is_not_judged_by_the_other(spi: FakeSpiBus) -> None:
    from edge.hardware.secure_card import check_card

    reader = secure_reader(spi)
    genuine = enrolled(reader, spi)
    chip = spi.chip()
    chip.place(MifareClassic1K(uid=bytes.fromhex("0A0B0C0D")))  # a blank card, another UID
    reader._checking = "04A1B2C3"
    # As if the genuine card's first authentication had failed and the reader now looked
    # again: the blank card that answers is not taken for a blank copy of the genuine one.
    assert reader._reselect() is None
    chip.place(genuine)
    assert reader._reselect() is not None
    assert (
        check_card(
            reader.chip,
            reader._reselect,
            uid_hex="04A1B2C3",
            auth_uid=list(UID),
            site_secret=SITE,
            sector=1,
            tag_sector=2,
        )
        is None
    )
