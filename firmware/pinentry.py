"""PIN entry on the keypad (masked, CORR, CANCEL, timeout) and the PIN block for the APDU."""
# The digits live only in caller-owned, preallocated bytearrays that the caller wipes; they
# never reach the display (one '*' per digit), an exception message, a log or a link frame.

import time

from micropython import const

import keypad

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union

MAX_DIGITS = const(12)
DEFAULT_TIMEOUT_MS = const(30_000)
_ASCII_0 = const(0x30)


class PromptCancelled(Exception):
    """The holder pressed CANCEL."""


class PromptTimeout(Exception):
    """Nobody finished the prompt in time."""


class PromptAborted(Exception):
    """The host aborted the prompt (ABORT request)."""


def wipe(buf: "Union[bytearray, memoryview]") -> None:
    """Overwrite a secret buffer with zeros."""
    for i in range(len(buf)):
        buf[i] = 0


def same(a: "bytearray", an: int, b: "bytearray", bn: int) -> bool:
    """Constant-time equality of two zero-tailed PIN buffers (time depends on their size only)."""
    diff = an ^ bn ^ (len(a) ^ len(b))
    for i in range(min(len(a), len(b))):
        diff |= a[i] ^ b[i]
    return diff == 0


def _remaining(deadline: "Any") -> int:
    return time.ticks_diff(deadline, time.ticks_ms())


class PinPad:
    """Collects digits from a KeyQueue while showing a masked prompt on a TextDisplay."""

    def __init__(self, keys: "keypad.KeyQueue", display: "Any") -> None:
        self.keys = keys
        self.display = display

    async def enter(self, buf: bytearray, title: str, label: str, min_len: int, max_len: int,
                    timeout_ms: int = DEFAULT_TIMEOUT_MS) -> int:
        """Fill buf with ASCII digits; return their count. Raises Prompt{Cancelled,Timeout,Aborted}.

        OK is taken only when min_len <= count <= max_len; digits past max_len are ignored.
        The caller owns buf and wipes it; on any exception this method wipes it itself.
        """
        if max_len > len(buf) or max_len > MAX_DIGITS:
            max_len = min(len(buf), MAX_DIGITS)
        n = 0
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        self.keys.claim()
        try:
            while True:
                self._show(title, label, n, min_len, max_len)
                key = await self.keys.get(_remaining(deadline))
                if key is None:
                    raise PromptTimeout()
                if key == keypad.ABORT:
                    raise PromptAborted()
                if key == "CANCEL":
                    raise PromptCancelled()
                if key == "CORR":
                    if n:
                        n -= 1
                        buf[n] = 0
                elif key == "OK":
                    if min_len <= n <= max_len:
                        return n
                elif len(key) == 1 and "0" <= key <= "9":
                    if n < max_len:
                        buf[n] = ord(key)
                        n += 1
        except Exception:
            wipe(buf)
            raise
        finally:
            self.keys.release()

    def _show(self, title: str, label: str, n: int, min_len: int, max_len: int) -> None:
        lines = title.split("\n") if title else []
        lines.append(label)
        lines.append("*" * n)
        if n >= min_len:
            lines.append("OK=valider")
        elif min_len == max_len:
            lines.append("%d chiffres" % min_len)
        else:
            lines.append("%d a %d chiffres" % (min_len, max_len))
        self.display.show(lines)

    async def confirm(self, text: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> int:
        """Show text with OK/Annuler; 0 OK, 1 CANCEL, 2 TIMEOUT (link CONFIRM_*); Aborted."""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        lines = text.split("\n")
        lines.append("OK / Annuler")
        self.display.show(lines)
        self.keys.claim()
        try:
            while True:
                key = await self.keys.get(_remaining(deadline))
                if key is None:
                    return 2
                if key == keypad.ABORT:
                    raise PromptAborted()
                if key == "OK":
                    return 0
                if key == "CANCEL":
                    return 1
        finally:
            self.keys.release()


def block_len(field: "Any", digits: int) -> int:
    """Bytes a PIN of `digits` digits takes in the APDU under a link.PinField."""
    return field.block_len(digits)


def put_block(out: "Union[bytearray, memoryview]", off: int, digits: bytearray, n: int,
              field: "Any") -> int:
    """Write the PIN block (ASCII or BCD, padded per field) at out[off:]; return the new offset."""
    pad = field.pad
    if field.encoding == 0:  # link.PIN_ASCII
        for i in range(n):
            out[off + i] = digits[i]
        used = n
    else:  # link.PIN_BCD: high nibble first; an odd tail takes the pad's low nibble
        used = (n + 1) // 2
        for i in range(used):
            hi = digits[2 * i] - _ASCII_0
            lo = digits[2 * i + 1] - _ASCII_0 if 2 * i + 1 < n else pad & 0x0F
            out[off + i] = (hi << 4) | lo
    total = field.padded_len if field.padded_len else used
    for i in range(used, total):
        out[off + i] = pad
    return off + total
