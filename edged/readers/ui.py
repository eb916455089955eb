"""The terminal's display and keys as the daemon sees them (text out, OK / Cancel back)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

__all__ = ["Answer", "TerminalUI", "fit_lines"]

Answer = Literal["ok", "cancel", "timeout"]
DISPLAY_COLUMNS = 21  # 128 px / 6 px font on the SSD1306
DISPLAY_LINES = 8


@runtime_checkable
class TerminalUI(Protocol):
    """What the terminal offers for prompts; the PIN itself never goes through here."""

    async def show(self, lines: Sequence[str]) -> None:
        """Put lines of text on the display."""
        ...

    async def confirm(self, text: str, *, timeout: float) -> Answer:
        """Show a question; wait for OK or Cancel (or the timeout)."""
        ...


def fit_lines(text: str, columns: int = DISPLAY_COLUMNS, lines: int = DISPLAY_LINES) -> list[str]:
    """Word-wrap text for the display, capped (a peer controls this text: STYLE.md habit 6)."""
    out: list[str] = []
    for paragraph in text.replace("\r", "").split("\n"):
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
        out = [*out[:lines - 1], out[lines - 1][:columns - 1] + "…"]
    return out
