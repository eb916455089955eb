"""A simulated PIN-pad reader with a small display: keys typed by tests or demos.

It stands for a class-3 PC/SC reader (PIN pad + display) at the transport seam: the host
sends a VERIFY template, the reader collects the digits from its own keys, builds the APDU,
and returns only the status word. The firmware-based virtual terminal is the full-fidelity
path; this one is for daemon tests and for PC/SC setups without the terminal. Like the
firmware's display it speaks French, in the firmware's own words (firmware/pinentry.py,
firmware/terminal.py `_pin_screen`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Sequence

from bifente.apdu.errors import PinCancelled
from bifente.apdu.transport import Transport

__all__ = ["ANSWER_SCREENS", "CONFIRM_KEYS", "Keypad", "PinPadTransport", "SimulatedDisplay",
           "pin_screen"]

KEYS = frozenset("0123456789") | {"OK", "CANCEL", "CORR"}
CONFIRM_KEYS = "OK / Annuler"  # the last line of a question, as firmware/pinentry.py shows it
ANSWER_SCREENS = {"ok": "Accepte", "cancel": "Refuse", "timeout": "Sans reponse"}


def pin_screen(sw: int) -> list[str]:
    """What the display says after a PIN was presented (firmware/terminal.py `_pin_screen`)."""
    if sw == 0x9000:
        return ["Code correct"]
    if sw & 0xFFF0 == 0x63C0:  # ISO 7816-4 §10.1.3: x = tries left
        left = sw & 0x0F
        if left == 0:
            return ["Code incorrect", "Carte bloquee"]
        return ["Code incorrect", f"Reste {left} essai{'s' if left > 1 else ''}"]
    if sw == 0x6983:  # authentication method blocked
        return ["Code bloque"]
    return ["Erreur carte", f"{sw:04X}"]


class Keypad:
    """Keys pressed by a person (or a test), consumed by the reader in order."""

    def __init__(self) -> None:
        self._keys: queue.Queue[str] = queue.Queue()

    def press(self, *keys: str) -> None:
        """Press keys: digits, OK, CANCEL, CORR (a string of digits presses each digit)."""
        for key in keys:
            parts = list(key) if key.isdigit() else [key.upper()]
            for part in parts:
                if part not in KEYS:
                    raise ValueError(f"no key {part!r} on the keypad")
                self._keys.put(part)

    def next_key(self, deadline: float) -> str | None:
        """The next key before the deadline (monotonic), else None."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return self._keys.get(timeout=remaining)
        except queue.Empty:
            return None

    def clear(self) -> None:
        """Forget keys pressed before a prompt."""
        while not self._keys.empty():
            self._keys.get_nowait()


class SimulatedDisplay:
    """The reader's display and OK / Cancel keys, as the daemon's TerminalUI."""

    def __init__(self, keypad: Keypad) -> None:
        self.keypad = keypad
        self.lines: list[str] = []
        self.history: list[list[str]] = []
        self.secret_s: float = 0
        self._lock = threading.Lock()

    def screen(self) -> str:
        """What the display shows now."""
        with self._lock:
            return "\n".join(self.lines)

    def _set(self, lines: Sequence[str]) -> None:
        with self._lock:
            self.lines = list(lines)
            self.history.append(list(lines))

    async def show(self, lines: Sequence[str], *, secret_s: float = 0) -> None:
        """Display lines of text (secret_s: how long a code may stay; recorded only)."""
        self.secret_s = secret_s
        self._set(lines)

    async def confirm(self, text: str, *, timeout: float) -> str:
        """Show a question and wait for OK or CANCEL."""
        self._set([*text.split("\n"), CONFIRM_KEYS])
        deadline = time.monotonic() + timeout

        def wait() -> str:
            while True:
                key = self.keypad.next_key(deadline)
                if key is None:
                    return "timeout"
                if key in ("OK", "CANCEL"):
                    return key.lower()

        answer = await asyncio.to_thread(wait)
        self._set([ANSWER_SCREENS[answer]])
        return answer


class PinPadTransport:
    """A transport whose reader has a PIN pad: secure_verify collects digits locally."""

    def __init__(self, inner: Transport, keypad: Keypad,
                 display: SimulatedDisplay | None = None) -> None:
        self.inner = inner
        self.keypad = keypad
        self.display = display
        self.verify_commands = 0

    @property
    def atr(self) -> bytes:
        """The card's ATR."""
        return self.inner.atr

    def transmit(self, command: bytes) -> bytes:
        """Pass an APDU through."""
        return self.inner.transmit(command)

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()

    def secure_verify(self, template: bytes, *, min_length: int, max_length: int,
                      pad_to: int, pad_byte: int, prompt: str, timeout: float) -> int:
        """Prompt, collect digits (CORR erases, CANCEL aborts), present them, return SW."""
        digits = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.display is not None:
                    self.display._set([prompt[:21], "*" * len(digits)])
                key = self.keypad.next_key(deadline)
                if key is None or key == "CANCEL":
                    raise PinCancelled("PIN entry cancelled" if key else "PIN entry timed out")
                if key == "CORR":
                    if digits:
                        digits.pop()
                elif key == "OK":
                    if min_length <= len(digits) <= max_length:
                        break
                elif len(digits) < max_length:
                    digits.append(ord(key))
            body = digits + bytes([pad_byte]) * (pad_to - len(digits))
            apdu = bytearray(template[:4]) + bytes([len(body)]) + body
            self.verify_commands += 1
            response = self.inner.transmit(bytes(apdu))
            for buf in (apdu, body):
                buf[:] = bytes(len(buf))
            sw = int.from_bytes(response[-2:], "big")
            if self.display is not None:
                self.display._set(pin_screen(sw))
            return sw
        finally:
            digits[:] = bytes(len(digits))
