"""The low-disk guard: new durable work is refused before it is written, never half written.

A full file system is how a daemon loses what it stores: SQLite cannot commit, a queue row or
an audit record is cut, and the next start finds a damaged file. So when the state
directory's file system is nearly full, edged refuses *new* durable work (mail to queue, DMP
feeds to queue, uploads) with a typed error before anything is written, and keeps the room
that remains for what must still be written: the audit trail, the state of queued items being
delivered (which frees space). docs/edged.md, "Disk space".

The reserve is the larger of `min_free_mb` ([state], default 64 MiB) and 5 % of the file
system: enough for SQLite's journal and checkpoint of the daemon's databases, and the share
ext4 keeps for root would not save a daemon running as its own user.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["DEFAULT_MIN_FREE_MB", "MIN_FREE_RATIO", "DiskFull", "SpaceGuard"]

log = logging.getLogger(__name__)

DEFAULT_MIN_FREE_MB = 64
MIN_FREE_RATIO = 0.05


class DiskFull(Exception):
    """Not enough free space for new durable work; nothing was written."""

    def __init__(self, what: str, free: int, needed: int, reserve: int) -> None:
        super().__init__(f"the terminal's disk is nearly full ({free // (1 << 20)} MiB free, "
                         f"{reserve // (1 << 20)} MiB kept in reserve): {what} refused, "
                         "nothing was written")
        self.what, self.free, self.needed, self.reserve = what, free, needed, reserve


class SpaceGuard:
    """Checks the free space of one directory's file system before durable work."""

    def __init__(self, directory: Path, min_free_mb: int = DEFAULT_MIN_FREE_MB, *,
                 statvfs: Callable[[str], os.statvfs_result] = os.statvfs) -> None:
        self.directory = Path(directory)
        self.min_free = min_free_mb << 20
        self._statvfs = statvfs  # the seam a test fills the disk through
        self._lock = threading.Lock()
        self._low = False  # one log line when it runs low, one when it recovers

    def free(self) -> tuple[int, int]:
        """(bytes free for an unprivileged writer, bytes kept in reserve)."""
        st = self._statvfs(str(self.directory))
        total = st.f_blocks * st.f_frsize
        return st.f_bavail * st.f_frsize, max(self.min_free, int(total * MIN_FREE_RATIO))

    def check(self, what: str, needed: int = 0) -> None:
        """Raise DiskFull unless `needed` bytes fit above the reserve."""
        free, reserve = self.free()
        low = free - needed < reserve
        with self._lock:
            changed, self._low = low != self._low, low
        if changed and low:
            log.warning("disk nearly full under %s: %d MiB free, %d MiB kept in reserve; new "
                        "mail, DMP feeds and uploads are refused until space is freed",
                        self.directory, free >> 20, reserve >> 20)
        elif changed:
            log.warning("disk space back under %s: %d MiB free; new durable work accepted",
                        self.directory, free >> 20)
        if low:
            raise DiskFull(what, free, needed, reserve)
