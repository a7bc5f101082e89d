"""USB keyboard-wedge badge readers (the common cheap ones) read through evdev.

Such a reader "types" the card number and presses Enter. We grab the input device so the
digits never reach a console, collect key presses until Enter, and turn them into the card
UID as hex: `format = "hex"` for readers that type the UID in hex, `"decimal10"` for those
that type the 4-byte UID as a 10-digit decimal number (little-endian, the usual convention).
A wedge reader cannot tell when a card is taken off, so it never reports removals.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.hardware.readers import BadgeRead, OnBadge, ReaderError
from protocol.badges import normalise_uid

log = logging.getLogger(__name__)

REPEAT_WINDOW_S = 1.0  # many readers type the same card again while it stays on them


def uid_from_typed(text: str, fmt: str) -> str:
    """What the reader typed -> card UID as uppercase hex; ValueError when it is not a UID."""
    if fmt == "decimal10":
        if not text.isdigit() or len(text) > 10 or int(text) > 0xFFFFFFFF:
            raise ValueError(f"{text!r} is not a 10-digit decimal card number")
        return int(text).to_bytes(4, "little").hex().upper()
    return normalise_uid(text)


class KeyboardReader:
    kind = "keyboard"

    def __init__(
        self,
        device: Path | str,
        fmt: str = "hex",
        *,
        open_device: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_path = str(device)
        self.fmt = fmt
        self._open_device = open_device
        self._clock = clock
        self._device: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy = False
        self._typed: list[str] = []
        self._last: tuple[str, float] | None = None
        self._keymap: dict[int, str] = {}
        self._enter: set[int] = set()

    @classmethod
    def from_config(cls, config: Any) -> KeyboardReader:
        if config.reader.input_device is None:
            raise ReaderError(
                "reader.input_device is required for a keyboard reader (see ls /dev/input/by-id/)"
            )
        return cls(config.reader.input_device, config.reader.format)

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _load_keymap(self) -> None:
        from evdev import ecodes  # lazily: only Pis with a wedge reader need evdev

        digits = {getattr(ecodes, f"KEY_{d}"): str(d) for d in range(10)}
        digits.update({getattr(ecodes, f"KEY_KP{d}"): str(d) for d in range(10)})
        letters = {getattr(ecodes, f"KEY_{c}"): c for c in "ABCDEF"}
        self._keymap = {**digits, **letters}
        self._enter = {ecodes.KEY_ENTER, ecodes.KEY_KPENTER}
        self._ev_key = ecodes.EV_KEY

    def _open(self) -> None:
        opener = self._open_device
        if opener is None:
            from evdev import InputDevice

            opener = InputDevice
        try:
            self._device = opener(self.device_path)
            self._device.grab()  # keep the typed digits away from any console
        except OSError as exc:
            self._healthy = False
            raise ReaderError(
                f"cannot open the badge reader {self.device_path}: {exc} "
                "(is the user in the `input` group?)"
            ) from exc
        self._healthy = True

    def start(self, on_badge: OnBadge) -> None:
        try:
            self._load_keymap()
        except ImportError as exc:
            raise ReaderError("evdev is not installed: install the `pi` extra") from exc
        self._open()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(on_badge,), name="keyboard-reader", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._device is not None:
            try:
                self._device.ungrab()
                self._device.close()
            except OSError:
                pass
            self._device = None

    def _run(self, on_badge: OnBadge) -> None:
        while not self._stop.is_set():
            if self._device is None:
                try:
                    self._open()
                except ReaderError as exc:
                    log.warning("%s; retrying", exc)
                    self._stop.wait(2)
                    continue
            try:
                ready, _, _ = select.select([self._device.fd], [], [], 0.2)
                if not ready:
                    continue
                for event in self._device.read():
                    read = self.feed(event.type, event.code, event.value)
                    if read is not None:
                        on_badge(read)
            except OSError:
                log.warning("the badge reader %s went away; reopening", self.device_path)
                self._healthy = False
                self._device = None

    def feed(self, ev_type: int, code: int, value: int) -> BadgeRead | None:
        """One input event; a BadgeRead when Enter completes a card number."""
        if ev_type != self._ev_key or value != 1:  # key presses only, not releases/repeats
            return None
        if code in self._enter:
            text, self._typed = "".join(self._typed), []
            if not text:
                return None
            try:
                uid = uid_from_typed(text, self.fmt)
            except ValueError as exc:
                log.warning("the badge reader typed something that is not a card: %s", exc)
                return None
            now = self._clock()
            if self._last and self._last[0] == uid and now - self._last[1] < REPEAT_WINDOW_S:
                self._last = (uid, now)
                return None
            self._last = (uid, now)
            return BadgeRead(uid=uid, present=True)
        char = self._keymap.get(code)
        if char is not None and len(self._typed) < 32:
            self._typed.append(char)
        return None
