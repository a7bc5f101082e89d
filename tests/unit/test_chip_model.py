"""The MFRC522 chip model on its own, at the SPI level: CRC_A, FIFO, IRQ bits, the chip-time
timer and the ISO 14443-3 card states the reader tests rely on."""

from __future__ import annotations

import pytest

from tests.support.mfrc522_chip import (
    BIT_FRAMING,
    COMM_IRQ,
    COMMAND,
    CONTROL,
    CRC_RESULT_L,
    CRC_RESULT_M,
    DIV_IRQ,
    FIFO_DATA,
    FIFO_LEVEL,
    STATUS2,
    T_MODE,
    T_PRESCALER,
    T_RELOAD_H,
    T_RELOAD_L,
    TX_CONTROL,
    VERSION,
    MFRC522Chip,
    MifareClassic1K,
    crc_a,
)

UID = bytes.fromhex("04A1B2C3")


class FrozenClock:
    """Wall time that moves only when the test says, so only wire time passes otherwise."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def write(chip: MFRC522Chip, register: int, value: int) -> None:
    chip.transfer([(register << 1) & 0x7E, value])


def read(chip: MFRC522Chip, register: int) -> int:
    return chip.transfer([((register << 1) & 0x7E) | 0x80, 0])[1]


def transceive(chip: MFRC522Chip, frame: list[int], last_bits: int = 0) -> list[int]:
    write(chip, COMM_IRQ, 0x7F)
    write(chip, FIFO_LEVEL, 0x80)
    for byte in frame:
        write(chip, FIFO_DATA, byte)
    write(chip, COMMAND, 0x0C)
    write(chip, BIT_FRAMING, 0x80 | last_bits)
    # Poll as the package does until the answer is in or the timer gave up (bounded).
    for _ in range(500):
        if read(chip, COMM_IRQ) & 0x21:
            break
    return [read(chip, FIFO_DATA) for _ in range(read(chip, FIFO_LEVEL))]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def chip(clock: FrozenClock) -> MFRC522Chip:
    c = MFRC522Chip(wall_clock=clock)
    # The package's own init: TAuto, prescaler 0xD3E (2 kHz), reload 30, antenna on.
    write(c, T_MODE, 0x8D)
    write(c, T_PRESCALER, 0x3E)
    write(c, T_RELOAD_H, 0)
    write(c, T_RELOAD_L, 30)
    write(c, TX_CONTROL, 0x83)
    return c


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ([0x50, 0x00], (0x57, 0xCD)),  # HLTA, ISO 14443-3
        ([0x30, 0x00], (0x02, 0xA8)),  # MIFARE READ block 0
        ([0xE0, 0x50], (0xBC, 0xA5)),  # RATS, ISO 14443-4
        ([0x00, 0x00], (0xA0, 0x1E)),  # ISO 14443-3 annex B example
        ([0x12, 0x34], (0x26, 0xCF)),  # ISO 14443-3 annex B example
    ],
)
def test_crc_a_known_vectors_in_software_and_through_calccrc(
    chip: MFRC522Chip, frame: list[int], expected: tuple[int, int]
) -> None:
    assert crc_a(frame) == expected
    write(chip, DIV_IRQ, 0x04)  # clear CRCIRq
    write(chip, FIFO_LEVEL, 0x80)
    for byte in frame:
        write(chip, FIFO_DATA, byte)
    write(chip, COMMAND, 0x03)  # CalcCRC
    assert read(chip, DIV_IRQ) & 0x04
    assert (read(chip, CRC_RESULT_L), read(chip, CRC_RESULT_M)) == expected


def test_fifo_level_flush_and_irq_set1_semantics(chip: MFRC522Chip) -> None:
    for byte in (1, 2, 3):
        write(chip, FIFO_DATA, byte)
    assert read(chip, FIFO_LEVEL) == 3
    assert read(chip, FIFO_DATA) == 1
    write(chip, FIFO_LEVEL, 0x80)
    assert read(chip, FIFO_LEVEL) == 0
    assert read(chip, COMM_IRQ) == 0x14  # reset value: IdleIRq and HiAlertIRq
    write(chip, COMM_IRQ, 0x7F)  # Set1 = 0: clear them all
    write(chip, COMM_IRQ, 0x80 | 0x21)  # Set1 = 1: set RxIRq and TimerIRq
    assert read(chip, COMM_IRQ) == 0x21
    write(chip, COMM_IRQ, 0x01)  # Set1 = 0: clear TimerIRq only
    assert read(chip, COMM_IRQ) == 0x20


def test_an_empty_field_times_out_in_chip_time_not_wall_time(
    chip: MFRC522Chip, clock: FrozenClock
) -> None:
    transceive(chip, [0x26], last_bits=7)
    irq = read(chip, COMM_IRQ)
    assert irq & 0x40 and not irq & 0x20  # sent, nothing received
    assert not irq & 0x01  # 31 ticks of 0.5 ms have not passed yet
    period = chip.timer_period()
    assert period == pytest.approx(31 * (2 * 0xD3E + 1) / 13.56e6)
    clock.t += period
    assert read(chip, COMM_IRQ) & 0x01
    # Wire time alone also moves chip time: 1,000 reads at 1 MHz are 16 ms > 15.5 ms.
    transceive(chip, [0x26], last_bits=7)
    for _ in range(1000):
        irq = read(chip, COMM_IRQ)
    assert irq & 0x01


def test_reqa_anticollision_select_and_halt(chip: MFRC522Chip) -> None:
    card = MifareClassic1K(uid=UID)
    chip.place(card)
    assert transceive(chip, [0x26], last_bits=7) == [0x04, 0x00]
    assert read(chip, CONTROL) & 0x07 == 0  # RxLastBits: whole last byte
    bcc = UID[0] ^ UID[1] ^ UID[2] ^ UID[3]
    assert transceive(chip, [0x93, 0x20]) == [*UID, bcc]
    select = [0x93, 0x70, *UID, bcc]
    assert transceive(chip, [*select, *crc_a(select)]) == [0x08, *crc_a([0x08])]
    assert card.state == "ACTIVE"
    assert transceive(chip, [0x50, 0x00, 0x57, 0xCD]) == []  # HLTA: no answer
    assert card.state == "HALT"
    assert transceive(chip, [0x26], last_bits=7) == []  # REQA ignores a halted card
    assert transceive(chip, [0x52], last_bits=7) == [0x04, 0x00]  # WUPA wakes it
    chip.remove()
    assert transceive(chip, [0x52], last_bits=7) == []


def test_a_wrong_select_crc_is_ignored(chip: MFRC522Chip) -> None:
    card = MifareClassic1K(uid=UID)
    chip.place(card)
    transceive(chip, [0x26], last_bits=7)
    bcc = UID[0] ^ UID[1] ^ UID[2] ^ UID[3]
    assert transceive(chip, [0x93, 0x70, *UID, bcc, 0x00, 0x00]) == []
    assert card.state != "ACTIVE"


def _select(chip: MFRC522Chip) -> None:
    transceive(chip, [0x26], last_bits=7)
    bcc = UID[0] ^ UID[1] ^ UID[2] ^ UID[3]
    select = [0x93, 0x70, *UID, bcc]
    transceive(chip, [*select, *crc_a(select)])


def _authenticate(chip: MFRC522Chip, block: int, key: bytes) -> bool:
    write(chip, COMM_IRQ, 0x7F)
    write(chip, FIFO_LEVEL, 0x80)
    for byte in [0x60, block, *key, *UID]:
        write(chip, FIFO_DATA, byte)
    write(chip, COMMAND, 0x0E)  # MFAuthent
    return bool(read(chip, STATUS2) & 0x08)


def test_authentication_read_and_write_need_the_sector_key(chip: MFRC522Chip) -> None:
    card = MifareClassic1K(uid=UID)
    card.set_keys(1, key_a=bytes.fromhex("A0A1A2A3A4A5"))
    chip.place(card)
    _select(chip)
    read_4 = [0x30, 4, *crc_a([0x30, 4])]
    assert transceive(chip, read_4) == [0x04]  # NAK: not authenticated
    _select(chip)
    assert not _authenticate(chip, 7, b"\xff" * 6)  # wrong key
    assert read(chip, COMM_IRQ) & 0x10 == 0  # no IdleIRq: only the timer ends the wait
    assert card.state == "IDLE"
    _select(chip)
    assert _authenticate(chip, 7, bytes.fromhex("A0A1A2A3A4A5"))
    data = list(range(16))
    assert transceive(chip, [0xA0, 4, *crc_a([0xA0, 4])]) == [0x0A]
    assert transceive(chip, [*data, *crc_a(data)]) == [0x0A]
    assert transceive(chip, read_4) == [*data, *crc_a(data)]
    assert transceive(chip, [0x30, 8, *crc_a([0x30, 8])]) == [0x04]  # other sector: NAK


def test_a_chip_that_stops_answering_reads_zero(chip: MFRC522Chip) -> None:
    assert read(chip, VERSION) == 0x92
    chip.answering = False
    assert read(chip, VERSION) == 0
    chip.answering = True
    chip.reset_line = 0  # held in reset by the RST pin
    assert read(chip, VERSION) == 0


def test_calccrc_runs_on_and_swallows_the_bytes_written_to_the_fifo(chip: MFRC522Chip) -> None:
    # Datasheet 10.3.1.4: CalcCRC is not stopped by an empty FIFO; only another command ends it.
    write(chip, FIFO_LEVEL, 0x80)
    for byte in (0x50, 0x00):
        write(chip, FIFO_DATA, byte)
    write(chip, COMMAND, 0x03)
    assert (read(chip, CRC_RESULT_L), read(chip, CRC_RESULT_M)) == (0x57, 0xCD)
    for byte in (0x50, 0x00, 0x57, 0xCD):  # a frame loaded while CalcCRC still runs
        write(chip, FIFO_DATA, byte)
    assert read(chip, FIFO_LEVEL) == 0
    assert (read(chip, CRC_RESULT_L), read(chip, CRC_RESULT_M)) == crc_a(
        [0x50, 0x00, 0x50, 0x00, 0x57, 0xCD]
    )
    write(chip, COMMAND, 0x00)  # Idle ends it: the FIFO keeps bytes again
    write(chip, FIFO_DATA, 0x50)
    assert read(chip, FIFO_LEVEL) == 1


def test_idle_written_before_a_frame_is_out_cuts_it(chip: MFRC522Chip) -> None:
    card = MifareClassic1K(uid=UID)
    chip.place(card)
    _select(chip)
    assert card.state == "ACTIVE"
    write(chip, COMM_IRQ, 0x7F)
    write(chip, FIFO_LEVEL, 0x80)
    for byte in (0x50, 0x00, 0x57, 0xCD):
        write(chip, FIFO_DATA, byte)
    write(chip, COMMAND, 0x0C)
    write(chip, BIT_FRAMING, 0x80)
    write(chip, COMMAND, 0x00)  # 16 us later: 38 bits at 106 kbit/s take 0.36 ms
    for _ in range(100):
        read(chip, COMM_IRQ)
    assert card.state == "ACTIVE"  # the HLTA never reached it
    # Sent whole (TxIRq) before Idle, it does.
    transceive(chip, [0x50, 0x00, 0x57, 0xCD])
    assert read(chip, COMM_IRQ) & 0x40 and card.state == "HALT"


def test_seven_byte_uid_cascade_levels_and_sak(chip: MFRC522Chip) -> None:
    uid = bytes.fromhex("04112233445566")
    card = MifareClassic1K(uid=uid)
    chip.place(card)
    assert transceive(chip, [0x52], last_bits=7) == [0x44, 0x00]  # ATQA: double-size UID
    cl1 = [0x88, 0x04, 0x11, 0x22]
    cl1.append(cl1[0] ^ cl1[1] ^ cl1[2] ^ cl1[3])
    assert transceive(chip, [0x93, 0x20]) == cl1
    select1 = [0x93, 0x70, *cl1]
    assert transceive(chip, [*select1, *crc_a(select1)]) == [0x04, *crc_a([0x04])]
    assert card.state == "READY"  # cascade bit: more UID follows
    assert transceive(chip, [0x93, 0x20]) == []  # level 1 is done: the card ignores it
    assert card.state == "IDLE"
    transceive(chip, [0x52], last_bits=7)
    transceive(chip, [*select1, *crc_a(select1)])
    cl2 = [0x33, 0x44, 0x55, 0x66, 0x33 ^ 0x44 ^ 0x55 ^ 0x66]
    assert transceive(chip, [0x95, 0x20]) == cl2
    select2 = [0x95, 0x70, *cl2]
    assert transceive(chip, [*select2, *crc_a(select2)]) == [0x08, *crc_a([0x08])]
    assert card.state == "ACTIVE"


def test_soft_reset_brings_back_the_reset_values(chip: MFRC522Chip) -> None:
    assert read(chip, T_MODE) == 0x8D and read(chip, TX_CONTROL) == 0x83
    write(chip, COMMAND, 0x0F)  # SoftReset
    assert read(chip, T_MODE) == 0 and read(chip, TX_CONTROL) == 0x80  # antenna off
    assert read(chip, COMMAND) == 0x20 and read(chip, COMM_IRQ) == 0x14
    assert (read(chip, CRC_RESULT_M), read(chip, CRC_RESULT_L)) == (0xFF, 0xFF)
    # Without TAuto the timer never runs: an empty-field transceive never ends.
    transceive(chip, [0x52], last_bits=7)
    assert read(chip, COMM_IRQ) & 0x21 == 0


def test_after_authentication_plain_frames_are_noise_to_the_card(chip: MFRC522Chip) -> None:
    card = MifareClassic1K(uid=UID)
    chip.place(card)
    _select(chip)
    assert _authenticate(chip, 7, b"\xff" * 6)
    write(chip, STATUS2, 0x00)  # Crypto1 off, then a plain HLTA
    transceive(chip, [0x50, 0x00, 0x57, 0xCD])
    assert card.state == "IDLE"
    _select(chip)
    assert _authenticate(chip, 7, b"\xff" * 6)
    transceive(chip, [0x50, 0x00, 0x57, 0xCD])  # Crypto1 still on: it is understood
    assert card.state == "HALT"
