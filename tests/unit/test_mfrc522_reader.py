"""The mfrc522 package's own code over a register-level chip model, and our reader on top."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.hardware.readers import BadgeRead, ReaderError
from tests.support.fake_rpi import FakeSpiBus
from tests.support.mfrc522_chip import MifareClassic1K, crc_a

UID = bytes.fromhex("04A1B2C3")
SITE_KEY = b"site-key-of-the-lab"


@pytest.fixture
def spi(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSpiBus]:
    bus = FakeSpiBus()
    for name, module in bus.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    # The package binds spidev/RPi.GPIO at import: import it afresh over the fakes.
    for name in [n for n in sys.modules if n == "mfrc522" or n.startswith("mfrc522.")]:
        monkeypatch.delitem(sys.modules, name)
    yield bus


@pytest.fixture
def reader(spi: FakeSpiBus) -> Iterator[object]:
    from edge.hardware.mfrc522_reader import MFRC522Reader

    r = MFRC522Reader(poll_interval_s=0.02)
    r.open()
    yield r
    r.stop()


def test_crc_a_matches_the_iso_14443_examples() -> None:
    assert crc_a([0x00, 0x00]) == (0xA0, 0x1E)
    assert crc_a([0x12, 0x34]) == (0x26, 0xCF)


def test_package_code_reads_and_writes_a_block_over_the_model(spi: FakeSpiBus) -> None:
    from mfrc522 import MFRC522

    chip = MFRC522(pin_mode=11, pin_rst=25)
    card = MifareClassic1K(uid=UID)
    spi.chip().place(card)
    status, atqa_bits = chip.MFRC522_Request(chip.PICC_REQIDL)
    assert status == chip.MI_OK and atqa_bits == 16
    status, uid5 = chip.MFRC522_Anticoll()
    assert status == chip.MI_OK and bytes(uid5[:4]) == UID
    assert chip.MFRC522_SelectTag(uid5) == 0x08  # SAK of a Classic 1K
    assert chip.MFRC522_Auth(chip.PICC_AUTHENT1A, 7, [0xFF] * 6, uid5) == chip.MI_OK
    chip.MFRC522_Write(4, list(range(16)))
    assert chip.MFRC522_Read(4) == list(range(16))
    assert bytes(card.blocks[4]) == bytes(range(16))
    chip.MFRC522_StopCrypto1()


def test_authentication_with_the_wrong_key_fails(spi: FakeSpiBus) -> None:
    from mfrc522 import MFRC522

    chip = MFRC522(pin_mode=11, pin_rst=25)
    card = MifareClassic1K(uid=UID)
    card.set_keys(1, key_a=bytes.fromhex("A0A1A2A3A4A5"))
    spi.chip().place(card)
    chip.MFRC522_Request(chip.PICC_REQIDL)
    _, uid5 = chip.MFRC522_Anticoll()
    chip.MFRC522_SelectTag(uid5)
    assert chip.MFRC522_Auth(chip.PICC_AUTHENT1A, 7, [0xFF] * 6, uid5) == chip.MI_ERR
    assert card.authenticated_sector is None


def test_a_card_is_reported_once_while_present_then_its_removal(reader, spi) -> None:
    chip = spi.chip()
    assert reader.poll_once() == []
    chip.place(MifareClassic1K(uid=UID))
    assert reader.poll_once() == [BadgeRead(uid="04A1B2C3", present=True)]
    assert reader.poll_once() == []  # still there: no repeat
    chip.remove()
    assert reader.poll_once() == []  # one miss is not yet a removal (debounce)
    assert reader.poll_once() == [BadgeRead(uid="04A1B2C3", present=False)]
    other = bytes.fromhex("11223344")
    chip.place(MifareClassic1K(uid=other))
    assert reader.poll_once() == [BadgeRead(uid="11223344", present=True)]


def test_the_same_card_placed_twice_is_two_reads_and_matches_the_package_id(reader, spi) -> None:
    from mfrc522 import SimpleMFRC522

    from protocol.badges import uid_from_mfrc522_id

    chip = spi.chip()
    chip.place(MifareClassic1K(uid=UID))
    package_id = SimpleMFRC522().read_id_no_block()
    assert package_id == int.from_bytes(UID + bytes([UID[0] ^ UID[1] ^ UID[2] ^ UID[3]]), "big")
    chip.remove()
    chip.place(MifareClassic1K(uid=UID))
    first = reader.poll_once()
    assert first == [BadgeRead(uid=uid_from_mfrc522_id(package_id), present=True)]
    chip.remove()
    reader.poll_once(), reader.poll_once()
    chip.place(MifareClassic1K(uid=UID))
    assert reader.poll_once() == first


def test_a_card_swapped_between_two_polls_reports_both(reader, spi) -> None:
    chip = spi.chip()
    chip.place(MifareClassic1K(uid=UID))
    reader.poll_once()
    chip.place(MifareClassic1K(uid=bytes.fromhex("11223344")))
    assert reader.poll_once() == [
        BadgeRead(uid="04A1B2C3", present=False),
        BadgeRead(uid="11223344", present=True),
    ]


def test_an_empty_poll_costs_a_handful_of_transfers(reader, spi) -> None:
    chip = spi.chip()
    before = chip.transfers
    reader.poll_once()
    assert chip.transfers - before <= 12


def test_health_follows_the_chip(reader, spi) -> None:
    chip = spi.chip()
    assert reader.healthy
    chip.answering = False
    with pytest.raises(ReaderError, match="stopped answering"):
        reader.poll_once()
    assert not reader.healthy
    chip.answering = True
    reader.poll_once()
    assert reader.healthy


def test_opening_a_reader_that_does_not_answer_says_what_to_check(spi: FakeSpiBus) -> None:
    from edge.hardware.mfrc522_reader import MFRC522Reader

    spi.chip().answering = False
    with pytest.raises(ReaderError, match="check the wiring"):
        MFRC522Reader().open()


def test_the_polling_thread_reports_and_stops_promptly(reader, spi) -> None:
    reads: list[BadgeRead] = []
    got = threading.Event()
    reader.start(lambda read: (reads.append(read), got.set()))
    spi.chip().place(MifareClassic1K(uid=UID))
    assert got.wait(5)
    started = time.monotonic()
    reader.stop()
    assert time.monotonic() - started < 1.0
    assert reads[0] == BadgeRead(uid="04A1B2C3", present=True)


def test_secure_mode_accepts_the_enrolled_card_and_refuses_a_clone(spi: FakeSpiBus) -> None:
    from mfrc522 import MFRC522

    from edge.hardware.mfrc522_reader import MFRC522Reader
    from edge.hardware.secure_card import write_secret

    chip = spi.chip()
    enrolled = MifareClassic1K(uid=UID)
    chip.place(enrolled)
    writer = MFRC522(pin_mode=11, pin_rst=25)
    assert write_secret(writer, "04A1B2C3", SITE_KEY, sector=2, key=b"\xff" * 6)
    chip.remove()

    secure = MFRC522Reader(secure=True, secure_sector=2, site_key=SITE_KEY)
    secure.open()
    chip.place(enrolled)
    assert secure.poll_once() == [BadgeRead(uid="04A1B2C3", present=True, secret_ok=True)]
    chip.remove()
    secure.poll_once(), secure.poll_once()
    chip.place(MifareClassic1K(uid=UID))  # same UID, no secret: a clone
    assert secure.poll_once() == [BadgeRead(uid="04A1B2C3", present=True, secret_ok=False)]
    chip.remove()
    secure.poll_once(), secure.poll_once()
    other_lab = MFRC522Reader(secure=True, secure_sector=2, site_key=b"another lab")
    other_lab.chip = secure.chip
    other_lab._healthy = True
    chip.place(enrolled)
    assert other_lab.poll_once()[0].secret_ok is False


def test_the_agent_decides_from_a_real_read_offline(spi: FakeSpiBus, tmp_path: Path) -> None:
    from edge.agent import Agent
    from edge.config import parse_config
    from protocol.allowlist import AllowEntry, AllowList, public_key_b64, sign_allowlist
    from tests.support.mosquitto import free_port

    key = Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    allowlist = AllowList(
        site="lab",
        machine="laser-1",
        machine_type="laser",
        version=3,
        issued_at=now,
        expires_at=now + timedelta(days=1),
        entries=[AllowEntry(badge="04A1B2C3", member="m-1")],
    )
    (state_dir / "allowlist.json").write_bytes(sign_allowlist(allowlist, key))
    config = parse_config(
        {
            "agent": {
                "site": "lab",
                "machine": "laser-1",
                "state_dir": str(state_dir),
                "hub_public_key": public_key_b64(key.public_key()),
            },
            "mqtt": {"port": free_port()},  # nobody listens: the agent is offline
            "gpio": {"pin_factory": "mock"},
            "relay": {"pin": 17},
            "reader": {"type": "mfrc522", "poll_interval_s": 0.02},
            "session": {"card_present": True},
        }
    )
    agent = Agent(config)
    agent.start()
    try:
        assert agent.state()["acl_version"] == 3
        spi.chip().place(MifareClassic1K(uid=UID))
        deadline = time.monotonic() + 5
        while agent.state()["relay_pin"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert agent.state()["session"]["member"] == "m-1"
        spi.chip().remove()  # card-present mode: taking the card off ends the session
        deadline = time.monotonic() + 5
        while agent.state()["relay_pin"] != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert agent.state()["session"] is None and agent.state()["backlog"] >= 4
    finally:
        agent.stop()
