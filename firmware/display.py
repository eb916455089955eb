"""Display: a text screen whose lines can be read back, and an SSD1306 128x64 I2C renderer."""
# framebuf's built-in 8x8 font gives 16 columns x 8 rows on 128x64. Text is printable ASCII
# (the link enforces it); anything else is shown as '?'.

import time

from micropython import const

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

COLS = const(16)
ROWS = const(8)


def _ascii(s: str) -> str:
    out = ""
    for ch in s:
        out += ch if " " <= ch <= "~" else "?"
    return out


def wrap(text: str, cols: int = COLS, rows: int = ROWS) -> list:
    """Split on LF, wrap words at cols, cut words longer than a line, keep at most rows lines."""
    lines = []  # type: list
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            while len(word) > cols:
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:cols])
                word = word[cols:]
            if not line:
                line = word
            elif len(line) + 1 + len(word) <= cols:
                line += " " + word
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines[:rows]


class SSD1306:
    """Minimal SSD1306 driver (horizontal addressing) over an injected machine.I2C."""

    def __init__(self, i2c: "Any", addr: int = 0x3C, width: int = 128, height: int = 64) -> None:
        import framebuf

        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self._buf = bytearray(1 + width * height // 8)  # control byte 0x40 + GDDRAM image
        self._buf[0] = 0x40
        self._fb = framebuf.FrameBuffer(memoryview(self._buf)[1:], width, height,
                                        framebuf.MONO_VLSB)
        self._cmd = bytearray(2)
        self._cmd[0] = 0x80  # Co = 1, D/C# = 0: one command byte follows
        self.init()

    def command(self, c: int) -> None:
        """Send one command byte."""
        self._cmd[1] = c
        self.i2c.writeto(self.addr, self._cmd)

    def init(self) -> None:
        """Power-up sequence from the SSD1306 data sheet (charge pump on, 128x64)."""
        for c in (0xAE, 0x20, 0x00, 0x40, 0xA1, 0xA8, self.height - 1, 0xC8, 0xD3, 0x00,
                  0xDA, 0x12 if self.height == 64 else 0x02, 0xD5, 0x80, 0xD9, 0xF1, 0xDB,
                  0x30, 0x81, 0xFF, 0xA4, 0xA6, 0x8D, 0x14, 0xAF):
            self.command(c)

    def render(self, lines: list) -> None:
        """Draw the lines with the 8x8 font and push the whole frame."""
        fb = self._fb
        fb.fill(0)
        for i in range(len(lines)):
            fb.text(lines[i], 0, i * 8, 1)
        for c in (0x21, 0, self.width - 1, 0x22, 0, self.height // 8 - 1):
            self.command(c)
        self.i2c.writeto(self.addr, self._buf)


class TextDisplay:
    """The screen as up to 8 lines of 16 characters; lines() reads back what is shown.

    A screen can be timed (it leaves after ttl_ms: expire() clears it) and secret (a code:
    never saved for restoring after a prompt). Any later show() ends both.
    """

    def __init__(self, driver: "Optional[Any]" = None) -> None:
        self.driver = driver  # anything with render(lines); None for a headless terminal
        self._lines = []  # type: list
        self.generation = 0  # counts show() calls: "is my screen still up?" without a copy
        self.secret = False
        self._timed = False
        self._until = time.ticks_ms()  # deadline of a timed screen (ticks), when _timed

    def show(self, lines: list, secret: bool = False, ttl_ms: int = 0) -> None:
        """Replace the screen with these lines (each wrapped to 16 columns, 8 rows at most)."""
        out = []  # type: list
        for line in lines:
            for part in wrap(_ascii(line)):
                if len(out) < ROWS:
                    out.append(part)
        self._lines = out
        self.generation += 1
        self.secret = secret
        self._timed = ttl_ms > 0
        self._until = time.ticks_add(time.ticks_ms(), ttl_ms if ttl_ms > 0 else 0)
        if self.driver is not None:
            self.driver.render(out)

    @property
    def timed(self) -> bool:
        """True while a screen with a lifetime (a code, the fingerprint) is shown."""
        return self._timed

    def expire(self) -> bool:
        """Clear a timed screen whose lifetime is over; True if it was cleared."""
        if self._timed and time.ticks_diff(time.ticks_ms(), self._until) >= 0:
            self.clear()
            return True
        return False

    def saved(self) -> list:
        """What a prompt may restore when it ends: the lines, or none for a timed screen."""
        return [] if self._timed or self.secret else list(self._lines)

    def show_text(self, text: str) -> None:
        """Replace the screen with LF-separated text, wrapped."""
        self.show(text.split("\n"))

    def clear(self) -> None:
        """Blank the screen."""
        self.show([])

    def lines(self) -> list:
        """The lines currently shown."""
        return list(self._lines)

    def text(self) -> str:
        """The screen as LF-joined text."""
        return "\n".join(self._lines)
