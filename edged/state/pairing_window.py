"""A pairing window asked for on the daemon's machine: a request file in the state directory.

The headless counterpart of F1 on the terminal (docs/pairing.md, "The pairing window"):
`bifente admin open-pairing` writes the request, the running daemon takes it within a
second and opens the window. Only who can write the state directory (0700: root or the
service user, on the Pi itself) can ask, as for `bifente admin grant`; nothing on the
network can.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

__all__ = ["FRESH_S", "REQUEST_FILE", "request_window", "take_request"]

log = logging.getLogger(__name__)

REQUEST_FILE = "pairing-window.request"
# A request older than this is stale (the daemon was down when it was written): dropped, so
# a forgotten file cannot open a window at the next start.
FRESH_S = 10.0
_MAX_BYTES = 256


def request_window(state_dir: Path) -> Path:
    """Write a fresh request (0600, replacing any older one); its path."""
    path = state_dir / REQUEST_FILE
    tmp = path.with_name(f".{REQUEST_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps({"requested_at": time.time()}).encode("ascii"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def take_request(state_dir: Path, *, fresh_s: float = FRESH_S) -> bool:
    """True if a fresh request was waiting; the file is removed either way."""
    path = state_dir / REQUEST_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:  # a symbolic link, or unreadable: not a request we honour
        log.warning("ignoring %s: %s", path, exc)
        _remove(path)
        return False
    try:
        raw = os.read(fd, _MAX_BYTES)
    finally:
        os.close(fd)
        _remove(path)
    try:
        requested_at = float(json.loads(raw)["requested_at"])
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed pairing window request in %s", path)
        return False
    age = time.time() - requested_at
    if not -1.0 <= age <= fresh_s:  # a clock step back of a second is tolerated
        log.warning("ignoring a stale pairing window request (%.0f s old)", age)
        return False
    return True


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
