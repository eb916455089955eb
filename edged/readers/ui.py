"""The terminal's display and keys as the daemon sees them (text out, OK / Cancel back)."""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["CODE_SCREEN_S", "PAIRING_SCREEN_S", "Answer", "TerminalUI", "fit_lines",
           "fold_ascii"]


class Answer(enum.StrEnum):
    """How a question on the terminal ended: OK, Cancel, or no key in time."""

    OK = "ok"
    CANCEL = "cancel"
    TIMEOUT = "timeout"


# The terminal's SSD1306 (128 x 64 px) with framebuf's 8 x 8 font: 16 columns, 8 rows, ASCII.
DISPLAY_COLUMNS = 16
DISPLAY_LINES = 8
# Review M3: a code (a patient's password or login code) leaves the shared screen after about
# 30 s, on OK or when the Vitale card is removed; a pairing code stays a little longer, since
# the operator types it on another machine. The terminal caps both at 60 s.
CODE_SCREEN_S = 30.0
PAIRING_SCREEN_S = 60.0
ELLIPSIS = "..."
_FOLD = {"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "ø": "o", "Ø": "O",
         "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "\u2026": "...", "«": '"', "»": '"',
         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'",
         "\u201a": "'", "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2212": "-",
         "€": "EUR", "°": "o", "\t": " "}


def fold_ascii(text: str) -> str:
    """Printable ASCII for the terminal's font: accents dropped (é -> e), others as '?'."""
    out = []
    for ch in text:
        if " " <= ch <= "~" or ch == "\n":
            out.append(ch)
            continue
        if ch in _FOLD:
            out.append(_FOLD[ch])
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch)
                       if not unicodedata.combining(c))
        if base and all(" " <= c <= "~" for c in base):
            out.append(base)
        elif unicodedata.category(ch).startswith("Z"):
            out.append(" ")  # no-break and other spaces
        elif unicodedata.category(ch)[0] == "C":
            continue  # control and format characters show nothing
        else:
            out.append("?")
    return "".join(out)


@runtime_checkable
class TerminalUI(Protocol):
    """What the terminal offers for prompts; the PIN itself never goes through here."""

    async def show(self, lines: Sequence[str], *, secret_s: float = 0) -> None:
        """Put lines of text on the display; secret_s > 0: a code, gone after that long."""
        ...

    async def confirm(self, text: str, *, timeout: float) -> Answer:
        """Show a question; wait for OK or Cancel (or the timeout)."""
        ...


def fit_lines(text: str, columns: int = DISPLAY_COLUMNS, lines: int = DISPLAY_LINES) -> list[str]:
    """Word-wrap text for the display as ASCII, capped (a peer controls it: STYLE.md habit 6)."""
    out: list[str] = []
    for paragraph in fold_ascii(text.replace("\r", "")).split("\n"):
        line = ""
        for word in paragraph.split():
            while len(word) > columns:
                if line:
                    out.append(line)
                    line = ""
                out.append(word[:columns])
                word = word[columns:]
            if len(line) + len(word) + (1 if line else 0) > columns:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        out.append(line)
    if len(out) > lines:
        out = [*out[:lines - 1], out[lines - 1][:columns - len(ELLIPSIS)] + ELLIPSIS]
    return out
