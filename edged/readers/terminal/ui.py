"""The terminal's screen and OK / Cancel keys as `bifente.edged.readers.ui.TerminalUI`, and the F1
text."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from bifente.edged.readers.link import (
    MAX_IDENTITY,
    MAX_LINES,
    MAX_SECRET_S,
    MAX_TEXT,
    ConfirmOutcome,
)
from bifente.edged.readers.terminal.client import (
    TerminalError,
    TerminalLink,
    u8_seconds,
)
from bifente.edged.readers.ui import DISPLAY_COLUMNS, DISPLAY_LINES, Answer, fit_lines

log = logging.getLogger(__name__)

def _fit(lines: Sequence[str], rows: int) -> tuple[str, ...]:
    out: list[str] = []
    for line in lines:
        out += fit_lines(line, DISPLAY_COLUMNS, DISPLAY_LINES) or [""]
    if len(out) > rows:
        out = [*out[:rows - 1], out[rows - 1][:DISPLAY_COLUMNS - 3] + "..."]
    while out and len("\n".join(out)) > MAX_TEXT:  # 8 full rows + 7 LFs exceed 128 bytes
        if out[-1]:
            out[-1] = out[-1][:-1]
        else:
            out.pop()
    return tuple(line.rstrip() for line in out)


class TerminalUI:
    """The terminal's display and OK / Cancel keys (bifente.edged.readers.ui.TerminalUI)."""

    def __init__(self, link: TerminalLink) -> None:
        self.link = link

    async def show(self, lines: Sequence[str], *, secret_s: float = 0) -> None:
        """Show lines (folded to ASCII, wrapped to 16 columns, at most 8 rows).

        secret_s > 0 marks a code: the terminal clears it after that many seconds (capped
        at 60), on OK or on a card removal, and never shows it again after a prompt.
        """
        fitted = _fit(lines, min(DISPLAY_LINES, MAX_LINES))
        secret = 0 if secret_s <= 0 else max(1, min(MAX_SECRET_S, math.ceil(secret_s)))
        await asyncio.to_thread(self.link.display, fitted, secret)

    async def confirm(self, text: str, *, timeout: float) -> Answer:
        """Ask on the terminal; 'ok', 'cancel' or 'timeout' (the terminal times the prompt)."""
        body = "\n".join(_fit(text.split("\n"), DISPLAY_LINES - 1))  # + "OK / Annuler"
        future = asyncio.ensure_future(asyncio.to_thread(self.link.confirm, body or "?",
                                                         u8_seconds(timeout)))
        try:
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            # Nobody waits for the answer any more: end the prompt on the terminal too (its
            # request then fails with ABORTED, which is expected and dropped here).
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            await asyncio.to_thread(self._abort)
            raise
        return {ConfirmOutcome.OK: Answer.OK, ConfirmOutcome.CANCEL: Answer.CANCEL}.get(
            outcome, Answer.TIMEOUT)

    def _abort(self) -> None:
        try:
            self.link.abort()
        except TerminalError as exc:
            log.debug("abort: %s", exc)


def identity_text(fingerprint: str) -> str:
    """The fingerprint as the terminal shows it on F1: 4-digit groups, three per 16-column row."""
    hexdigits = "".join(c for c in fingerprint.lower() if c in "0123456789abcdef")
    groups = [hexdigits[i:i + 4] for i in range(0, len(hexdigits), 4)]
    rows = [" ".join(groups[i:i + 3]) for i in range(0, len(groups), 3)]
    return "\n".join(rows)[:MAX_IDENTITY] or "?"
