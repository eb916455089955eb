"""`--json` for every command (`bifente --json COMMAND ...` or `COMMAND --json`).

Commands with a JSON form of their own print it. The others print JSON Lines on stdout:
each line of their text as {"line": ...}, then {"result": ...} for every answer the terminal
gave them, and on failure {"error": {"message", "exit_code", "reason"}}; the exit code is
the same as without --json (README.md).
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any, TextIO

__all__ = ["JsonLines", "emit", "error_object"]


def emit(obj: dict[str, Any], stream: TextIO | None = None) -> None:
    """One JSON object on one line."""
    out = stream or sys.stdout
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


class JsonLines(io.TextIOBase):
    """A stdout that turns each text line into {"line": ...} as it is written."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target
        self._partial = ""

    def writable(self) -> bool:
        """Always."""
        return True

    def write(self, text: str) -> int:
        """Emit every complete line; keep the rest for later."""
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            emit({"line": line}, self._target)
        return len(text)

    def flush(self) -> None:
        """Emit an unterminated last line."""
        if self._partial:
            emit({"line": self._partial}, self._target)
            self._partial = ""
        self._target.flush()


def error_object(message: str, code: int, exc: BaseException) -> dict[str, Any]:
    """The JSON form of a failure."""
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return {"error": {"message": message, "exit_code": code, "reason": reason}}
