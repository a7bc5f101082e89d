"""The mfrc522 package's own code over a register-level chip model, and our reader on top."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.hardware.readers import BadgeRead, ReaderError
from tests.support.fake_rpi import FakeSpiBus, install_fake_spi
from tests.support.mfrc522_chip import T_MODE, TX_CONTROL, MifareClassic1K, crc_a

UID = bytes.fromhex("04A1B2C3")


@pytest.fixture
def spi(monkeypatch: pytest.MonkeyPatch) -> FakeSpiBus:
    return install_fake_spi(monkeypatch)


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
    assert chip.transfers - before <= 10


def test_an_unplugged_reader_is_down_with_one_log_line_and_back_fully_initialised(
    reader, spi, caplog: pytest.LogCaptureFixture
) -> None:
    chip = spi.chip()
    assert not reader.healthy  # opened, not polled yet
    assert reader.poll_once() == [] and reader.healthy
    chip.unplug()
    with caplog.at_level(logging.INFO, logger="edge.hardware.mfrc522_reader"):
        for _ in range(20):
            assert reader.poll_once() == []
        assert not reader.healthy
        chip.plug_in()  # power-on values: antenna off, timer stopped
        assert chip.regs[TX_CONTROL] & 0x03 == 0 and chip.regs[T_MODE] == 0
        chip.place(MifareClassic1K(uid=UID))
        assert reader.poll_once() == [BadgeRead(uid="04A1B2C3", present=True)]
    assert reader.healthy
    assert chip.regs[TX_CONTROL] & 0x03 == 0x03 and chip.regs[T_MODE] == 0x8D
    down = [r for r in caplog.records if "is down" in r.getMessage()]
    back = [r for r in caplog.records if "works" in r.getMessage()]
    assert len(down) == 1 and "stopped answering" in down[0].getMessage()
    assert len(back) == 1 and not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("reset", ["brown_out", "reset_line", "soft_reset"])
def test_a_reset_chip_is_initialised_again_before_its_poll_counts(
    reader, spi, reset: str, caplog: pytest.LogCaptureFixture
) -> None:
    chip = spi.chip()
    reader.poll_once()
    chip.place(MifareClassic1K(uid=UID))
    if reset == "brown_out":
        chip.brown_out()  # VersionReg still reads fine: only the polls tell
    elif reset == "reset_line":
        chip.reset_line = 0
        chip.reset_line = 1
    else:
        chip.transfer([(0x01 << 1) & 0x7E, 0x0F])  # SoftReset from a glitch on the bus
    assert chip.regs[T_MODE] == 0
    with caplog.at_level(logging.INFO, logger="edge.hardware.mfrc522_reader"):
        # Before, a reset chip polled "no card" for ever while reporting healthy.
        assert reader.poll_once() == [BadgeRead(uid="04A1B2C3", present=True)]
    assert reader.healthy and chip.regs[T_MODE] == 0x8D
    assert [r.getMessage() for r in caplog.records] == ["reader on SPI 0.0 initialised again"]


def test_reader_ok_is_false_while_the_chip_answers_but_cannot_poll(
    reader, spi, caplog: pytest.LogCaptureFixture
) -> None:
    chip = spi.chip()
    reader.poll_once()
    chip.oscillator_ok = False  # a dead 27.12 MHz crystal: SPI works, the RF side does not
    with caplog.at_level(logging.INFO, logger="edge.hardware.mfrc522_reader"):
        for _ in range(10):
            assert reader.poll_once() == []
        assert not reader.healthy
        chip.oscillator_ok = True
        reader.poll_once()
    assert reader.healthy
    messages = [r.getMessage() for r in caplog.records if "SPI 0.0 is down" in r.getMessage()]
    assert messages == [
        "reader on SPI 0.0 is down: the MFRC522 answers but its polls do not complete"
    ]


def test_a_failing_spi_device_logs_one_line_per_change(
    reader, spi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    polls = threading.Event()
    count = 0

    def broken(data: list[int]) -> list[int]:
        nonlocal count
        count += 1
        if count > 30:
            polls.set()
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(reader.chip.spi, "xfer2", broken)
    with caplog.at_level(logging.DEBUG, logger="edge.hardware.mfrc522_reader"):
        reader.start(lambda read: None)
        assert polls.wait(10)
        reader.stop()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "Input/output error" in warnings[0].getMessage()
    assert warnings[0].exc_info is None and not reader.healthy


@pytest.mark.parametrize(
    ("version", "named"),
    [
        (0x12, "counterfeit MFRC522"),
        (0x88, "Fudan FM17522"),
        (0x90, "MFRC522 v0.0"),
        (0xB2, "FM17522 variant"),
        (0x91, "NXP MFRC522 v1.0"),
        (0x92, "NXP MFRC522 v2.0"),
    ],
)
def test_clone_chips_work_and_the_log_names_them(
    spi: FakeSpiBus, version: int, named: str, caplog: pytest.LogCaptureFixture
) -> None:
    from edge.hardware.mfrc522_reader import MFRC522Reader

    chip = spi.chip()
    chip.version = version
    reader = MFRC522Reader()
    with caplog.at_level(logging.INFO, logger="edge.hardware.mfrc522_reader"):
        reader.open()
    chip.place(MifareClassic1K(uid=UID))
    assert reader.poll_once() == [BadgeRead(uid="04A1B2C3", present=True)]
    notice = [r for r in caplog.records if "reader chip" in r.getMessage()]
    assert len(notice) == 1 and named in notice[0].getMessage()
    assert f"0x{version:02X}" in notice[0].getMessage()
    assert notice[0].levelno == (logging.INFO if version in (0x91, 0x92) else logging.WARNING)


def _uids(size: int) -> st.SearchStrategy[bytes]:
    # ISO 14443-3: a single-size UID never starts with the cascade tag 0x88.
    return st.binary(min_size=size, max_size=size).filter(lambda b: b[0] != 0x88)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(uid=st.one_of(_uids(4), _uids(7), _uids(10)))
def test_every_uid_size_reads_whole_through_its_cascade_levels(reader, spi, uid: bytes) -> None:
    chip = spi.chip()
    card = MifareClassic1K(uid=uid)
    chip.place(card)
    reads = reader.poll_once()
    assert reads[-1] == BadgeRead(uid=uid.hex().upper(), present=True)
    assert card.state == "HALT"
    chip.remove()
    reader.poll_once(), reader.poll_once()


def test_seven_byte_cards_sharing_their_first_bytes_are_different_badges(reader, spi) -> None:
    chip = spi.chip()
    first = MifareClassic1K(uid=bytes.fromhex("04A1B2C3D4E5F6"), sak=0x00)  # an NTAG
    second = MifareClassic1K(uid=bytes.fromhex("04A1B2C3D4E5F7"), sak=0x00)
    chip.place(first)
    assert reader.poll_once() == [BadgeRead(uid="04A1B2C3D4E5F6", present=True)]
    chip.place(second)
    assert reader.poll_once() == [
        BadgeRead(uid="04A1B2C3D4E5F6", present=False),
        BadgeRead(uid="04A1B2C3D4E5F7", present=True),
    ]


def test_a_card_left_on_the_reader_is_halted_and_answers_every_poll(reader, spi) -> None:
    chip = spi.chip()
    card = MifareClassic1K(uid=UID)
    chip.place(card)
    assert reader.poll_once() == [BadgeRead(uid="04A1B2C3", present=True)]
    for _ in range(10):
        assert card.state == "HALT"  # the HLTA reached it
        woken_before = card.woken
        assert reader.poll_once() == []
        assert card.woken == woken_before + 1  # the WUPA found it each time, no missed poll
    assert reader._misses == 0


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


@pytest.mark.parametrize(
    ("card_uid", "as_the_hub_stores_it"),
    [(UID, "04:a1:b2:c3"), (bytes.fromhex("04A1B2C3D4E5F6"), "04 a1 b2 c3 d4 e5 f6")],
)
def test_the_agent_decides_from_a_real_read_offline(
    spi: FakeSpiBus, tmp_path: Path, card_uid: bytes, as_the_hub_stores_it: str
) -> None:
    from edge.agent import Agent
    from edge.config import parse_config
    from protocol.allowlist import AllowEntry, AllowList, public_key_b64, sign_allowlist
    from protocol.badges import normalise_uid
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
        entries=[AllowEntry(badge=normalise_uid(as_the_hub_stores_it), member="m-1")],
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
        spi.chip().place(MifareClassic1K(uid=card_uid))
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
