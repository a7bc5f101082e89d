"""USB keyboard-wedge readers: real evdev events and key codes, a fake device file."""

from __future__ import annotations

import os
import threading

import pytest

evdev = pytest.importorskip("evdev")
from evdev import InputEvent, ecodes  # noqa: E402

from edge.hardware.keyboard_reader import KeyboardReader, uid_from_typed  # noqa: E402
from edge.hardware.readers import BadgeRead, ReaderError  # noqa: E402


class FakeDevice:
    """An input device whose fd is a real pipe, so the reader's select() works."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self.fd = self._r
        self.events: list[InputEvent] = []
        self.grabbed = False
        self.lock = threading.Lock()

    def type(self, text: str) -> None:
        with self.lock:
            for char in text:
                code = ecodes.KEY_ENTER if char == "\n" else getattr(ecodes, f"KEY_{char}")
                self.events += [
                    InputEvent(0, 0, ecodes.EV_KEY, code, 1),
                    InputEvent(0, 0, ecodes.EV_KEY, code, 0),
                    InputEvent(0, 0, ecodes.EV_SYN, 0, 0),
                ]
        os.write(self._w, b"x")

    def read(self) -> list[InputEvent]:
        os.read(self._r, 4096)
        with self.lock:
            events, self.events = self.events, []
        return events

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def feed_text(reader: KeyboardReader, text: str) -> list[BadgeRead]:
    out = []
    for char in text:
        code = ecodes.KEY_ENTER if char == "\n" else getattr(ecodes, f"KEY_{char}")
        for value in (1, 0):
            read = reader.feed(ecodes.EV_KEY, code, value)
            if read:
                out.append(read)
    return out


def test_formats() -> None:
    assert uid_from_typed("04A1B2C3", "hex") == "04A1B2C3"
    # 0xC3B2A104 typed as decimal by a little-endian reader is UID 04 A1 B2 C3.
    assert uid_from_typed(str(0xC3B2A104), "decimal10") == "04A1B2C3"
    for bad in ("12345678901", "99999999999", "12AB"):
        with pytest.raises(ValueError):
            uid_from_typed(bad, "decimal10")


def test_typed_numbers_become_badges_and_repeats_are_ignored() -> None:
    now = [100.0]
    reader = KeyboardReader("/dev/null", "decimal10", clock=lambda: now[0])
    reader._load_keymap()
    assert feed_text(reader, f"{0xC3B2A104}\n") == [BadgeRead(uid="04A1B2C3")]
    now[0] += 0.3
    assert feed_text(reader, f"{0xC3B2A104}\n") == []  # the reader repeating itself
    now[0] += 2
    assert feed_text(reader, f"{0xC3B2A104}\n") == [BadgeRead(uid="04A1B2C3")]
    assert feed_text(reader, "\n") == []  # Enter alone
    assert feed_text(reader, "12AB\n") == []  # garbage is logged, not reported


def test_the_reader_thread_grabs_the_device_and_reports(monkeypatch) -> None:
    device = FakeDevice()
    reader = KeyboardReader("/dev/input/event7", "hex", open_device=lambda path: device)
    reads: list[BadgeRead] = []
    got = threading.Event()
    reader.start(lambda r: (reads.append(r), got.set()))
    try:
        assert device.grabbed and reader.healthy
        device.type("04A1B2C3\n")
        assert got.wait(5)
        assert reads == [BadgeRead(uid="04A1B2C3")]
    finally:
        reader.stop()
    assert not reader.healthy or reader._device is None


def test_a_missing_device_is_a_clear_error() -> None:
    def missing(path: str) -> None:
        raise FileNotFoundError(2, "No such file or directory", path)

    reader = KeyboardReader("/dev/input/by-id/nothing", "hex", open_device=missing)
    with pytest.raises(ReaderError, match="input` group"):
        reader.start(lambda r: None)
